package resolver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/dnsvalve/dnsvalve/resolver/query"
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
	// handoff passes batch remainders to idle workers (unbuffered: a send
	// succeeds only when a worker is waiting).
	handoff chan []udpPacket
	workers atomic.Int32
}

func newUDPLoop(s *Server, conn *net.UDPConn) *udpLoop {
	l := &udpLoop{s: s, conn: conn, local: conn.LocalAddr(), min: int32(runtime.GOMAXPROCS(0)), stop: make(chan struct{}),
		handoff: make(chan []udpPacket)}
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

// udpBatch is how many packets a reader takes from the socket in one
// recvmmsg, and how many replies it sends in one sendmmsg.
const udpBatch = 32

// udpFlushEvery is how many replies a reader holds back at most before
// sending them: a batch amortises the send syscall, but the first reply of
// a batch waits for the others to be answered (about 10 µs each).
const udpFlushEvery = 8

// udpReplySlot is the size of a reply slot of a send batch; larger replies
// (big EDNS answers) are sent on their own.
const udpReplySlot = 1500

// udpPacket is one received datagram waiting to be served.
type udpPacket struct {
	data []byte
	from netip.AddrPort
	oob  []byte
}

func (l *udpLoop) reader() {
	oobSize := 0
	if l.wildcard {
		oobSize = 128
	}
	in, err := newMmsgBatch(l.conn, udpBatch, udpReadBuf, oobSize)
	if err != nil {
		l.s.logger.Error("udp reader", "addr", l.local.String(), "error", err)
		l.readers.Add(-1)
		return
	}
	out, err := newMmsgBatch(l.conn, udpBatch, udpReplySlot, oobSize)
	if err != nil {
		l.s.logger.Error("udp reader", "addr", l.local.String(), "error", err)
		l.readers.Add(-1)
		return
	}
	w := l.newWriter(out)
	pkts := make([]udpPacket, 0, udpBatch)
	handled := 0
	for {
		if err := in.recv(); err != nil {
			if errors.Is(err, net.ErrClosed) || l.s.stopping.Load() {
				l.readers.Add(-1)
				return
			}
			continue
		}
		pkts = pkts[:0]
		for i := range in.n {
			data, from, oob := in.packet(i)
			pkts = append(pkts, udpPacket{data, from, oob})
		}
		l.busy.Add(1)
		w.queue, w.borrowed = pkts, true
		l.drain(w)
		w.flush()
		l.served.Add(uint64(len(pkts)))
		l.busy.Add(-1)
		// A reader beyond the minimum leaves once the pool has not been
		// short for a while (checked every 64 batches: the clock is cheap
		// but not free).
		if handled++; handled&63 == 0 {
			if r := l.readers.Load(); r > l.min && time.Now().UnixNano()-l.pressure.Load() > int64(shrinkAfter) &&
				l.readers.CompareAndSwap(r, r-1) {
				return
			}
		}
	}
}

// newWriter returns a writer for this listener; out, when set, is where
// it queues replies to send in batches.
func (l *udpLoop) newWriter(out *mmsgBatch) *udpWriter {
	w := &udpWriter{conn: l.conn, local: l.local, loop: l, out: out, buf: make([]byte, 0, 4096)}
	w.ctx = query.WithBeforeWait(context.Background(), w.beforeWait)
	return w
}

// drain serves the packets queued on w, in order. A handler that is about
// to wait on an upstream hands the rest of the queue to a new goroutine
// (beforeWait), so a cache miss never delays the hits read with it.
func (l *udpLoop) drain(w *udpWriter) {
	for len(w.queue) > 0 {
		p := w.queue[0]
		w.queue = w.queue[1:]
		w.oob = nil
		if l.wildcard && len(p.oob) > 0 {
			w.oob = replyOOB(p.oob)
		}
		w.remote = netip.AddrPortFrom(p.from.Addr().Unmap(), p.from.Port())
		w.client = w.remote
		data := p.data
		if l.s.cfg.ProxyProtocol && len(data) > 16 && data[0] == '\r' && containsAddr(l.s.cfg.TrustedForwarders, w.remote.Addr()) {
			src, hl, err := parseProxyV2(data)
			if err != nil {
				l.s.metrics.malformed("proxy")
				continue
			}
			if src.IsValid() {
				w.client = src
			}
			data = data[hl:]
		}
		l.s.servePacket(w, data)
	}
}

// handOff gives pkts, the unserved rest of a batch whose reader is about
// to wait on an upstream, to an idle worker, or to a new one. Workers keep
// their goroutine (and so its grown stack) for workerIdle after their last
// hand-off: a goroutine per miss spent more growing its stack than on the
// miss. At maxReaders workers, the reader waits for one to be free.
func (l *udpLoop) handOff(pkts []udpPacket) {
	select {
	case l.handoff <- pkts:
		return
	default:
	}
	if l.workers.Add(1) <= maxReaders {
		go l.worker(pkts)
		return
	}
	l.workers.Add(-1)
	l.handoff <- pkts
}

// workerIdle is how long a hand-off worker waits for more work.
const workerIdle = 10 * time.Second

// worker serves handed-off packets, replying one by one, until it has been
// idle for workerIdle or the listener stops.
func (l *udpLoop) worker(pkts []udpPacket) {
	defer l.workers.Add(-1)
	w := l.newWriter(nil)
	idle := time.NewTimer(workerIdle)
	defer idle.Stop()
	for {
		w.queue = pkts
		l.drain(w)
		idle.Reset(workerIdle)
		select {
		case pkts = <-l.handoff:
		case <-idle.C:
			return
		case <-l.stop:
			return
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
// buffer it keeps and writes to the query's source, or queues the reply
// on the reader's send batch.
type udpWriter struct {
	conn   *net.UDPConn
	local  net.Addr
	loop   *udpLoop
	remote netip.AddrPort // where the packet came from and the reply goes
	client netip.AddrPort // who asked: remote, or the PROXY header's source
	oob    []byte
	buf    []byte
	// out, when set, collects replies that flush sends in one sendmmsg.
	out *mmsgBatch
	// queue holds the packets of the current batch not yet served;
	// borrowed says their bytes are the reader's buffers.
	queue    []udpPacket
	borrowed bool
	ctx      context.Context // carries beforeWait
}

var _ dns.ResponseWriter = (*udpWriter)(nil)

func (w *udpWriter) LocalAddr() net.Addr  { return w.local }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.remote) }

// queryContext is the context the chain runs in for this writer's queries.
func (w *udpWriter) queryContext() context.Context { return w.ctx }

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
	if w.out != nil {
		if w.out.add(b, w.remote, w.oob) {
			if w.out.n >= udpFlushEvery {
				w.flush()
			}
			return len(b), nil
		}
		if len(b) <= udpReplySlot {
			w.flush() // the batch was full
			if w.out.add(b, w.remote, w.oob) {
				return len(b), nil
			}
		}
	}
	if w.oob != nil {
		n, _, err := w.conn.WriteMsgUDPAddrPort(b, w.oob, w.remote)
		return n, err
	}
	return w.conn.WriteToUDPAddrPort(b, w.remote)
}

// flush sends the queued replies.
func (w *udpWriter) flush() {
	if w.out == nil || w.out.n == 0 {
		return
	}
	if dropped := w.out.send(); dropped > 0 {
		w.loop.s.metrics.WriteErrors.Add(float64(dropped))
	}
}

// beforeWait runs when a stage is about to wait on an upstream: the
// replies queued so far leave now, and the packets of the batch not yet
// served go to a goroutine of their own instead of waiting behind this one.
func (w *udpWriter) beforeWait() {
	w.flush()
	if len(w.queue) == 0 {
		return
	}
	rest := w.queue
	if w.borrowed {
		rest = make([]udpPacket, len(w.queue))
		for i, p := range w.queue {
			rest[i] = udpPacket{data: bytes.Clone(p.data), from: p.from, oob: bytes.Clone(p.oob)}
		}
	}
	w.queue = nil
	w.loop.handOff(rest)
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
