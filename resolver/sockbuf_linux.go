package resolver

import (
	"net"
	"syscall"
)

// udpSocketBuffer is the receive buffer asked for on UDP listeners: a few
// thousand queries' worth, so bursts and GC pauses don't overflow the
// kernel's default (about 200 KB) and drop queries, as Unbound's so-rcvbuf.
const udpSocketBuffer = 8 << 20

// growReadBuffer raises conn's receive buffer to udpSocketBuffer:
// SO_RCVBUFFORCE when the process may (CAP_NET_ADMIN), else SO_RCVBUF,
// which the kernel caps at net.core.rmem_max. Best effort.
func growReadBuffer(conn *net.UDPConn) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return
	}
	forced := false
	_ = rc.Control(func(fd uintptr) {
		forced = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUFFORCE, udpSocketBuffer) == nil
	})
	if !forced {
		_ = conn.SetReadBuffer(udpSocketBuffer)
	}
}
