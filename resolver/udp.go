package resolver

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP serving without a goroutine per packet.
//
// miekg/dns starts a goroutine for every UDP packet; the chain's stack
// outgrows a new goroutine's initial stack, so every query paid for stack
// growth (about a fifth of the CPU time of a cache hit). Here each reader
// goroutine reads a packet and answers it itself, keeping its grown stack
// and its buffers. While every reader is busy (slow upstreams), one more is
// started, up to maxReaders; readers beyond the minimum leave again once
// no reader has been short for shrinkAfter (checked every few packets, so
// an idle server keeps its readers parked, which costs only their stacks).

const (
	udpReadBuf = 4096 // queries are small; larger packets are malformed for us
	maxReaders = 8192
	// shrinkAfter is how long after the last moment every reader was busy
	// the extra readers leave.
	shrinkAfter = 30 * time.Second
	// watchTick is how often the pool checks whether every reader is stuck.
	watchTick = time.Millisecond
)

type udpLoop struct {
	s        *Server
	conn     *net.UDPConn
	local    net.Addr
	wildcard bool // bound to 0.0.0.0/::: replies need the query's destination as source
	readers  atomic.Int32
	busy     atomic.Int32
	pressure atomic.Int64 // unix nanos of the last time every reader was busy
	served   atomic.Uint64
	min      int32
	stop     chan struct{}
}

func newUDPLoop(s *Server, conn *net.UDPConn) *udpLoop {
	l := &udpLoop{s: s, conn: conn, local: conn.LocalAddr(), min: int32(runtime.GOMAXPROCS(0)), stop: make(chan struct{})}
	growReadBuffer(conn)
	if ua, ok := conn.LocalAddr().(*net.UDPAddr); ok && ua.IP.IsUnspecified() {
		// Ask for the destination address of each packet, to answer from it.
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		l.wildcard = err4 == nil || err6 == nil
	}
	return l
}

func (l *udpLoop) start() {
	for range l.min {
		l.readers.Add(1)
		go l.reader()
	}
	go l.watch()
}

// watch adds a reader when every reader has been busy for a whole tick
// without finishing a packet (slow upstreams), so the socket keeps being
// read. It does not react to readers that are merely busy with fast
// answers: an extra reader there only contends for the socket's read lock
// and adds a scheduler wake-up per packet.
func (l *udpLoop) watch() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	last := l.served.Load()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		served := l.served.Load()
		if r := l.readers.Load(); l.busy.Load() >= r && served == last && r < maxReaders {
			l.pressure.Store(time.Now().UnixNano())
			if l.readers.CompareAndSwap(r, r+1) {
				go l.reader()
			}
		}
		last = served
	}
}

func (l *udpLoop) reader() {
	w := &udpWriter{conn: l.conn, local: l.local, buf: make([]byte, 0, 4096)}
	buf := make([]byte, udpReadBuf)
	var oob []byte
	handled := 0
	if l.wildcard {
		oob = make([]byte, 128)
	}
	for {
		var n int
		var from netip.AddrPort
		var err error
		w.oob = nil
		if l.wildcard {
			var oobn int
			n, oobn, _, from, err = l.conn.ReadMsgUDPAddrPort(buf, oob)
			if err == nil {
				w.oob = replyOOB(oob[:oobn])
			}
		} else {
			n, from, err = l.conn.ReadFromUDPAddrPort(buf)
		}
		if err != nil {
			if errors.Is(err, net.ErrClosed) || l.s.stopping.Load() {
				l.readers.Add(-1)
				return
			}
			continue
		}
		l.busy.Add(1)
		w.remote = netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
		w.client = w.remote
		data := buf[:n]
		if l.s.cfg.ProxyProtocol && n > 16 && data[0] == '\r' && containsAddr(l.s.cfg.TrustedForwarders, w.remote.Addr()) {
			src, hl, err := parseProxyV2(data)
			if err != nil {
				l.s.metrics.malformed("proxy")
				l.busy.Add(-1)
				continue
			}
			if src.IsValid() {
				w.client = src
			}
			data = data[hl:]
		}
		l.s.servePacket(w, data)
		l.served.Add(1)
		// A reader beyond the minimum leaves once the pool has not been
		// short for a while (checked every 64 packets: the clock is cheap
		// but not free).
		l.busy.Add(-1)
		if handled++; handled&63 == 0 {
			if r := l.readers.Load(); r > l.min && time.Now().UnixNano()-l.pressure.Load() > int64(shrinkAfter) &&
				l.readers.CompareAndSwap(r, r-1) {
				return
			}
		}
	}
}

// replyOOB turns the control message of a received packet into the one
// that makes the reply leave from the address the query was sent to.
func replyOOB(oob []byte) []byte {
	var cm4 ipv4.ControlMessage
	if cm4.Parse(oob) == nil && cm4.Dst != nil && cm4.Dst.To4() != nil {
		return (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal()
	}
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		return (&ipv6.ControlMessage{Src: cm6.Dst}).Marshal()
	}
	return nil
}

// servePacket does for one UDP packet what miekg/dns's server does before
// calling the handler: header checks and unpacking, with the same policy
// as accept. Malformed packets get at most a header-only FORMERR, which is
// never larger than what was sent.
func (s *Server) servePacket(w *udpWriter, data []byte) {
	if len(data) < 12 {
		s.metrics.malformed("unpack")
		return
	}
	var dh dns.Header
	dh.Id = binary.BigEndian.Uint16(data[0:])
	dh.Bits = binary.BigEndian.Uint16(data[2:])
	dh.Qdcount = binary.BigEndian.Uint16(data[4:])
	dh.Ancount = binary.BigEndian.Uint16(data[6:])
	dh.Nscount = binary.BigEndian.Uint16(data[8:])
	dh.Arcount = binary.BigEndian.Uint16(data[10:])
	switch s.accept(dh) {
	case dns.MsgIgnore:
		return
	case dns.MsgReject:
		w.writeHeaderOnly(dh, dns.RcodeFormatError)
		return
	}
	m := new(dns.Msg)
	if err := m.Unpack(data); err != nil {
		s.invalid(data, err)
		w.writeHeaderOnly(dh, dns.RcodeFormatError)
		return
	}
	s.ServeDNS(w, m)
}

// udpWriter is the dns.ResponseWriter of a UDP reader: it packs into a
// buffer it keeps and writes to the query's source.
type udpWriter struct {
	conn   *net.UDPConn
	local  net.Addr
	remote netip.AddrPort // where the packet came from and the reply goes
	client netip.AddrPort // who asked: remote, or the PROXY header's source
	oob    []byte
	buf    []byte
}

var _ dns.ResponseWriter = (*udpWriter)(nil)

func (w *udpWriter) LocalAddr() net.Addr  { return w.local }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.remote) }

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.PackBuffer(w.buf[:cap(w.buf)])
	if err != nil {
		return err
	}
	if cap(b) <= 65535 {
		w.buf = b[:0]
	}
	_, err = w.Write(b)
	return err
}

func (w *udpWriter) Write(b []byte) (int, error) {
	if w.oob != nil {
		n, _, err := w.conn.WriteMsgUDPAddrPort(b, w.oob, w.remote)
		return n, err
	}
	return w.conn.WriteToUDPAddrPort(b, w.remote)
}

// writeHeaderOnly answers with just a header: the query's ID and opcode,
// QR set, no sections.
func (w *udpWriter) writeHeaderOnly(dh dns.Header, rcode int) {
	var h [12]byte
	binary.BigEndian.PutUint16(h[0:], dh.Id)
	bits := dh.Bits&(0xF<<11|1<<8) | 1<<15 | uint16(rcode&0xF) // keep opcode and RD, set QR
	binary.BigEndian.PutUint16(h[2:], bits)
	_, _ = w.Write(h[:])
}

func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}
