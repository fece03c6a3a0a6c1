//go:build unix

package upstream

import (
	"errors"
	"net"
	"syscall"
)

// drainQueued reads and discards, without blocking, the datagrams queued
// on c, and returns how many there were and how many of them carried an
// ID other than late (a late duplicate of the last reply is expected).
func drainQueued(c *net.UDPConn, buf []byte, late uint16) (n, foreign int, err error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return 0, 0, err
	}
	var rerr error
	err = rc.Read(func(fd uintptr) bool {
		for {
			m, _, e := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
			switch {
			case e == nil:
				n++
				if m < 2 || uint16(buf[0])<<8|uint16(buf[1]) != late {
					foreign++
				}
			case errors.Is(e, syscall.EINTR):
			case errors.Is(e, syscall.EAGAIN), errors.Is(e, syscall.EWOULDBLOCK):
				return true
			default:
				rerr = e
				return true
			}
		}
	})
	if err == nil {
		err = rerr
	}
	return n, foreign, err
}
