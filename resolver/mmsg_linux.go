package resolver

import (
	"encoding/binary"
	"net"
	"net/netip"
	"syscall"

	"golang.org/x/sys/unix"
	"unsafe"
)

// Batched UDP I/O with recvmmsg(2) and sendmmsg(2).
//
// On loopback and in VMs most of the CPU time of a cached answer is the
// kernel's: the send syscall carries the packet through the whole stack
// to the receiving socket and wakes its reader. Reading every packet that
// is waiting in one syscall and sending the replies of a batch in one
// more cuts the per-packet syscall overhead, and the client is woken once
// per batch rather than once per reply.

// mmsghdr is struct mmsghdr of <sys/socket.h>; Go's alignment gives it
// C's size on 32- and 64-bit platforms alike (checked in a test).
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
}

// mmsgBatch is a set of message slots for one recvmmsg or sendmmsg call,
// with the buffers, addresses and control messages they point to. It is
// reused call after call, so batched I/O allocates nothing.
type mmsgBatch struct {
	hdrs  []mmsghdr
	iovs  []unix.Iovec
	names []syscall.RawSockaddrInet6 // large enough for IPv4 too
	bufs  [][]byte                   // each slot's buffer, at full capacity
	oobs  [][]byte                   // nil when no control messages are used
	n     int                        // slots in use (received, or queued to send)
	rc    syscall.RawConn
	v6    bool // the socket is IPv6: IPv4 peers are written as v4-mapped
	// busy says the last recv found more than one packet waiting: the
	// socket is under load, so the next one polls a little before parking.
	busy bool
	// recvFn and sendFn are the raw calls, made once: a closure made per
	// call would escape to the heap (RawConn takes a func) on every batch.
	// They work on the fields below.
	recvFn, sendFn func(fd uintptr) bool
	polls          int           // recv: empty recvmmsg calls still allowed
	sendOff        int           // send: first slot of this sendmmsg
	done           int           // slots the last call received or sent
	errno          syscall.Errno // the last call's error
}

// recvPolls is how many times recv tries again on an empty socket, while
// it is under load, before it parks on the runtime's poller: a few µs of
// empty recvmmsg calls, less than a park and wake-up through the poller
// costs (on a VM, the idle CPU's halt and the wake-up interrupt), so at
// high but not full load the next packet is often taken without one. In
// interleaved dnsperf runs at 80% of the maximum, 16 gave a lower p99 than
// none, 8, 32 or 64.
const recvPolls = 16

// newMmsgBatch returns a batch of slots buffers of bufSize bytes (and
// oobSize bytes of control space each) for I/O on conn.
func newMmsgBatch(conn *net.UDPConn, slots, bufSize, oobSize int) (*mmsgBatch, error) {
	rc, err := conn.SyscallConn()
	if err != nil {
		return nil, err
	}
	b := &mmsgBatch{
		rc:    rc,
		v6:    isIPv6Socket(conn),
		hdrs:  make([]mmsghdr, slots),
		iovs:  make([]unix.Iovec, slots),
		names: make([]syscall.RawSockaddrInet6, slots),
		bufs:  make([][]byte, slots),
	}
	b.recvFn, b.sendFn = b.rawRecv, b.rawSend
	if oobSize > 0 {
		b.oobs = make([][]byte, slots)
	}
	for i := range slots {
		b.bufs[i] = make([]byte, bufSize)
		if oobSize > 0 {
			b.oobs[i] = make([]byte, oobSize)
		}
	}
	return b, nil
}

// isIPv6Socket reports whether conn is an AF_INET6 socket.
func isIPv6Socket(conn *net.UDPConn) bool {
	ua, ok := conn.LocalAddr().(*net.UDPAddr)
	return ok && ua.IP.To4() == nil
}

// prepRecv points every slot at its full buffer, address and control space.
func (b *mmsgBatch) prepRecv() {
	for i := range b.hdrs {
		h := &b.hdrs[i]
		b.iovs[i].Base = &b.bufs[i][0]
		b.iovs[i].SetLen(len(b.bufs[i]))
		h.hdr.Iov = &b.iovs[i]
		h.hdr.SetIovlen(1)
		h.hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
		h.hdr.Namelen = uint32(unsafe.Sizeof(b.names[i]))
		h.hdr.Control, h.hdr.Controllen = nil, 0
		if b.oobs != nil {
			h.hdr.Control = &b.oobs[i][0]
			h.hdr.SetControllen(len(b.oobs[i]))
		}
		h.hdr.Flags = 0
		h.n = 0
	}
}

// Raw system calls: recvmmsg and sendmmsg run as raw system calls. The
// socket is non-blocking (the runtime's poller does the waiting), so the
// calls never block; but a sendmmsg of a batch of replies takes 20-50 µs
// on loopback, longer than sysmon lets a P sit in a system call it was
// told about. With one P (a pinned server) sysmon then hands the P to
// another thread, which finds nothing to do, and the reader has to get it
// back when the call returns: at 48k qps of cache hits that was 16k
// context switches a second and a fifth of the CPU time. A raw call keeps
// the P: other goroutines wait at most one send, or one receive with its
// polls (recvPolls+1 calls, some tens of µs), as they would for a
// goroutine computing for that long.

// recv reads up to len(b.hdrs) waiting packets with one recvmmsg, parking
// on the runtime's poller while there is none. It sets b.n.
func (b *mmsgBatch) recv() error {
	b.prepRecv()
	b.polls = 0
	if b.busy {
		b.polls = recvPolls
	}
	if err := b.rc.Read(b.recvFn); err != nil {
		return err
	}
	if b.errno != 0 {
		return b.errno
	}
	b.n = b.done
	b.busy = b.done > 1
	return nil
}

// rawRecv is recv's call, run by RawConn.Read: false means "nothing
// waiting, park until the socket is readable".
func (b *mmsgBatch) rawRecv(fd uintptr) bool {
	// Raw: the socket is non-blocking, so this never blocks, and
	// telling the scheduler about the syscall costs more than it
	// saves (see "Raw system calls" above).
	var r uintptr
	var e syscall.Errno
	for {
		r, _, e = syscall.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[0])), uintptr(len(b.hdrs)), 0, 0, 0)
		if e != syscall.EAGAIN || b.polls == 0 {
			break
		}
		b.polls--
	}
	if e == syscall.EAGAIN || e == syscall.EINTR {
		return false
	}
	b.done, b.errno = int(r), e
	return true
}

// packet returns slot i's received data, source (an IPv4 peer of an IPv6
// socket unmapped) and control message.
func (b *mmsgBatch) packet(i int) (data []byte, from netip.AddrPort, oob []byte) {
	h := &b.hdrs[i]
	data = b.bufs[i][:h.n]
	from = sockaddrToAddrPort(&b.names[i], h.hdr.Namelen)
	if b.oobs != nil {
		oob = b.oobs[i][:h.hdr.Controllen]
	}
	return data, from, oob
}

// add queues a reply to send: p is copied into the next slot. It reports
// false when the batch is full (flush first) or p does not fit.
func (b *mmsgBatch) add(p []byte, to netip.AddrPort, oob []byte) bool {
	if b.n == len(b.hdrs) {
		return false
	}
	i := b.n
	if len(p) > len(b.bufs[i]) {
		return false
	}
	copy(b.bufs[i], p)
	h := &b.hdrs[i]
	b.iovs[i].Base = &b.bufs[i][0]
	b.iovs[i].SetLen(len(p))
	h.hdr.Iov = &b.iovs[i]
	h.hdr.SetIovlen(1)
	h.hdr.Name = (*byte)(unsafe.Pointer(&b.names[i]))
	h.hdr.Namelen = addrPortToSockaddr(to, &b.names[i], b.v6)
	h.hdr.Control, h.hdr.Controllen = nil, 0
	if len(oob) > 0 && b.oobs != nil && len(oob) <= len(b.oobs[i]) {
		copy(b.oobs[i], oob)
		h.hdr.Control = &b.oobs[i][0]
		h.hdr.SetControllen(len(oob))
	}
	h.hdr.Flags = 0
	b.n++
	return true
}

// send writes the queued replies with as few sendmmsg calls as the kernel
// allows and empties the batch. A reply the kernel refuses (an
// unreachable destination) is skipped, as a lone sendto's error would be.
func (b *mmsgBatch) send() (dropped int) {
	b.sendOff = 0
	for b.sendOff < b.n {
		err := b.rc.Write(b.sendFn)
		switch {
		case err != nil:
			dropped += b.n - b.sendOff
			b.sendOff = b.n
		case b.errno != 0 || b.done <= 0:
			// sendmmsg reports the error of the first message that failed
			// only when none was sent: skip that one.
			dropped++
			b.sendOff++
		default:
			b.sendOff += b.done
		}
	}
	b.n = 0
	return dropped
}

// rawSend is send's call, run by RawConn.Write, for the slots from
// b.sendOff on.
func (b *mmsgBatch) rawSend(fd uintptr) bool {
	r, _, e := syscall.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&b.hdrs[b.sendOff])), uintptr(b.n-b.sendOff), 0, 0, 0)
	if e == syscall.EAGAIN || e == syscall.EINTR {
		return false
	}
	b.done, b.errno = int(r), e
	return true
}

func sockaddrToAddrPort(sa *syscall.RawSockaddrInet6, n uint32) netip.AddrPort {
	switch sa.Family {
	case syscall.AF_INET:
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa4.Addr), port)
	case syscall.AF_INET6:
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), port)
	}
	return netip.AddrPort{}
}

// addrPortToSockaddr writes ap into sa in the family of the socket:
// sockaddr_in on an IPv4 socket, sockaddr_in6 (IPv4 peers v4-mapped) on an
// IPv6 one.
func addrPortToSockaddr(ap netip.AddrPort, sa *syscall.RawSockaddrInet6, v6 bool) uint32 {
	*sa = syscall.RawSockaddrInet6{}
	if !v6 && ap.Addr().Is4() {
		sa4 := (*syscall.RawSockaddrInet4)(unsafe.Pointer(sa))
		sa4.Family = syscall.AF_INET
		binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa4.Port))[:], ap.Port())
		sa4.Addr = ap.Addr().As4()
		return syscall.SizeofSockaddrInet4
	}
	sa.Family = syscall.AF_INET6
	binary.BigEndian.PutUint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:], ap.Port())
	sa.Addr = ap.Addr().As16()
	return syscall.SizeofSockaddrInet6
}

// batchedSends says mmsgBatch.send is one sendmmsg call for many replies
// (on other systems it is a write per reply, so batching replies that
// could leave at once only delays them).
const batchedSends = true
