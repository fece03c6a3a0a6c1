//go:build !linux

package resolver

import (
	"net"
	"net/netip"
)

// mmsgBatch without recvmmsg/sendmmsg: one packet per read, replies sent
// one by one. See mmsg_linux.go.
type mmsgBatch struct {
	conn *net.UDPConn
	bufs [][]byte
	oobs [][]byte
	lens []int
	oobn []int
	from []netip.AddrPort
	n    int
}

func newMmsgBatch(conn *net.UDPConn, slots, bufSize, oobSize int) (*mmsgBatch, error) {
	b := &mmsgBatch{conn: conn, bufs: make([][]byte, slots), oobs: make([][]byte, slots),
		lens: make([]int, slots), oobn: make([]int, slots), from: make([]netip.AddrPort, slots)}
	for i := range slots {
		b.bufs[i] = make([]byte, bufSize)
		if oobSize > 0 {
			b.oobs[i] = make([]byte, oobSize)
		}
	}
	return b, nil
}

func (b *mmsgBatch) recv() error {
	n, oobn, _, from, err := b.conn.ReadMsgUDPAddrPort(b.bufs[0], b.oobs[0])
	if err != nil {
		return err
	}
	b.lens[0], b.oobn[0], b.n = n, oobn, 1
	b.from[0] = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
	return nil
}

func (b *mmsgBatch) packet(i int) ([]byte, netip.AddrPort, []byte) {
	var oob []byte
	if b.oobs[i] != nil {
		oob = b.oobs[i][:b.oobn[i]]
	}
	return b.bufs[i][:b.lens[i]], b.from[i], oob
}

func (b *mmsgBatch) add(p []byte, to netip.AddrPort, oob []byte) bool {
	if b.n == len(b.bufs) || len(p) > len(b.bufs[b.n]) {
		return false
	}
	i := b.n
	b.lens[i] = copy(b.bufs[i], p)
	b.from[i] = to
	b.oobn[i] = 0
	if len(oob) > 0 && b.oobs[i] != nil && len(oob) <= len(b.oobs[i]) {
		b.oobn[i] = copy(b.oobs[i], oob)
	}
	b.n++
	return true
}

func (b *mmsgBatch) send() (dropped int) {
	for i := range b.n {
		var oob []byte
		if b.oobn[i] > 0 {
			oob = b.oobs[i][:b.oobn[i]]
		}
		if _, _, err := b.conn.WriteMsgUDPAddrPort(b.bufs[i][:b.lens[i]], oob, b.from[i]); err != nil {
			dropped++
		}
	}
	b.n = 0
	return dropped
}

// batchedSends: send writes the replies one by one here (see mmsg_linux.go).
const batchedSends = false
