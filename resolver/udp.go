package resolver

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsvalve/dnsvalve/resolver/cache"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/miekg/dns"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// UDP serving without a goroutine per packet.
//
// miekg/dns starts a goroutine for every UDP packet; the chain's stack
// outgrows a new goroutine's initial stack, so every query paid for stack
// growth (about a fifth of the CPU time of a cache hit). Here each listener
// has a pool of goroutines that keep their grown stacks, and a fixed number
// of read permits (GOMAXPROCS of them): a permit is one reader's buffers (a
// recvmmsg batch and a sendmmsg batch), and only a goroutine holding one
// reads the socket. More readers than that would only contend for the
// socket's read lock and add a scheduler wake-up per packet.
//
// A holder reads a batch and serves it itself. When a query of the batch is
// about to wait on an upstream (query.BeforeWait), the holder sends the
// replies it has so far and passes its permit on at once, together with the
// unserved rest of the batch (which still lives in the permit's buffers): to
// the goroutine of the pool that parked last, or to a new one. So the socket
// is never left unread while queries wait. Once its query is answered, the
// goroutine parks. Parked goroutines are woken most recent first, so the
// ones a load peak left behind find no work and leave after spareIdle.
//
// A stage that blocks without calling BeforeWait would still hold a permit
// while it waits: a watcher adds a permit when every holder has been inside
// one batch for stuckTicks on-time ticks (or stuckBackstop, see
// stallJudge), up to maxPermits; the surplus permits go again once no
// holder has been stuck for shrinkAfter.

const (
	udpReadBuf = 4096 // queries are small; larger packets are malformed for us
	// maxReaders bounds a listener's goroutines (holding a permit, waiting
	// on an upstream, or parked); beyond it, work waits for one to park.
	maxReaders = 8192
	// maxPermits bounds the read permits the watcher adds to a listener
	// (each is ~720 KB of buffers, see udpBatch: at most 46 MB a listener),
	// so at most this many queries can block a listener's readers without
	// query.BeforeWait before it stops reading. It was 256 with permits of
	// ~180 KB. A listener starts with GOMAXPROCS permits.
	maxPermits = 64
	// spareIdle is how long a parked goroutine waits for work before it
	// leaves.
	spareIdle = 5 * time.Second
	// shrinkAfter is how long after the watcher last saw every holder stuck
	// the permits it added are dropped.
	shrinkAfter = 30 * time.Second
	// watchTick is how often the watcher checks whether every holder is
	// stuck. It costs an idle server a wake-up per tick.
	watchTick = 10 * time.Millisecond
	// idleWatchTick is the watcher's tick while the listener is idle.
	idleWatchTick = 100 * time.Millisecond
)

// readPermit is the right to read the listener's socket: one reader's
// buffers.
type readPermit struct {
	in, out *mmsgBatch
	pkts    []udpPacket // the packets of the batch read last (views of in)
	batches uint64      // batches served with it, whoever held it
	// carried counts the packets whose replies wait in out while the
	// permit passes from a goroutine about to wait on an upstream to one
	// taking it at once (udpWriter.beforeWait), and heldSince is when
	// they were first found held (see udpWriter.heldSince); the taker
	// accounts for them with its own.
	carried   int64
	heldSince int64
}

// udpJob is what a goroutine of the pool is woken with: a read permit (never
// nil) and,
// when it was passed on in the middle of a batch, the rest of that batch,
// served before the next read.
type udpJob struct {
	permit *readPermit
	pkts   []udpPacket
}

type udpLoop struct {
	s        *Server
	conn     *net.UDPConn
	local    net.Addr
	localAP  netip.AddrPort // local as an AddrPort (IPv4 unmapped)
	wildcard bool           // bound to 0.0.0.0/::: replies need the query's destination as source
	oobSize  int
	min      int32
	// permits is the number of read permits; holdersBusy how many of
	// their holders are serving a batch (not counting those that passed
	// their permit on).
	permits     atomic.Int32
	holdersBusy atomic.Int32
	pressure    atomic.Int64 // unix nanos of the last time every holder was stuck
	served      atomic.Uint64
	readers     atomic.Int32 // goroutines of the pool
	spareIdle   atomic.Int64 // nanoseconds; spareIdle but for tests
	stop        chan struct{}

	mu      sync.Mutex
	parked  []chan udpJob // parked goroutines' wake-up channels, most recent last
	pending []udpJob      // jobs that found no goroutine (at maxReaders), first come first served

	late lateReplies
}

// lateReplies batches the replies of queries whose goroutine no longer
// holds a read permit: it passed it on to wait on an upstream. Without it
// each such reply is a sendto of its own, a tenth of a cache miss's CPU;
// upstream replies arrive in bursts under load, and the queries they wake
// run one after another, so their replies can share a sendmmsg.
//
// The first reply into an empty batch makes its goroutine the flusher: it
// yields once (runtime.Gosched), so the goroutines already runnable (woken
// by the same poll) add theirs, then sends the batch. A reply never waits
// for a query that has not finished; and since the yield may last (busy
// readers run first), a reply added once the batch is udpMaxHold old
// sends the batch itself. The packets whose replies a batch holds stay
// pending (Server.udpPending) until it was sent, so Shutdown does not
// close the socket under them. Only where sendmmsg exists (batchedSends).
type lateReplies struct {
	mu    sync.Mutex
	batch *mmsgBatch // being filled; nil when empty
	held  int64      // replies in batch
	since int64      // unix nanoseconds of batch's first reply
	spare []*mmsgBatch
}

// maxSpareLate bounds the sent batches a listener keeps for reuse (about
// 200 KB each); more are made only while several flushers send at once.
const maxSpareLate = 4

// take empties the batch and returns it (nil when empty) with the number
// of replies it holds. lr.mu is held.
func (lr *lateReplies) take() (*mmsgBatch, int64) {
	b, n := lr.batch, lr.held
	lr.batch, lr.held = nil, 0
	return b, n
}

// sendLate queues b, the reply to a packet from to, on the late batch and
// reports whether it did; the caller then leaves the packet's accounting
// to whoever sends the batch. False (no sendmmsg, no batch could be made,
// or it is full): the caller sends b itself.
func (l *udpLoop) sendLate(b []byte, to netip.AddrPort, oob []byte) bool {
	if !batchedSends {
		return false
	}
	lr := &l.late
	now := time.Now().UnixNano()
	lr.mu.Lock()
	first := lr.batch == nil
	if first {
		if n := len(lr.spare); n > 0 {
			lr.batch = lr.spare[n-1]
			lr.spare = lr.spare[:n-1]
		} else if nb, err := newMmsgBatch(l.conn, udpBatch, udpReplySlot, l.oobSize); err == nil {
			lr.batch = nb
		} else {
			lr.mu.Unlock()
			return false
		}
		lr.since = now
	}
	if !lr.batch.add(b, to, oob) {
		if first { // cannot happen (a reply of at most a slot into an empty batch), but never leave a batch without its flusher
			lr.spare = append(lr.spare, lr.batch)
			lr.batch = nil
		}
		lr.mu.Unlock()
		return false
	}
	lr.held++
	var batch *mmsgBatch
	var held int64
	if !first && now-lr.since > int64(udpMaxHold) {
		batch, held = lr.take() // its flusher is still waiting to run
	}
	lr.mu.Unlock()
	if first {
		runtime.Gosched()
		lr.mu.Lock()
		batch, held = lr.take() // nil if taken over; another flusher's batch is sent early, which is harmless
		lr.mu.Unlock()
	}
	if batch != nil {
		if dropped := batch.send(); dropped > 0 {
			l.s.metrics.WriteErrors.Add(float64(dropped))
		}
		l.s.udpDone(held)
		lr.mu.Lock()
		if len(lr.spare) < maxSpareLate {
			lr.spare = append(lr.spare, batch)
		}
		lr.mu.Unlock()
	}
	return true
}

func newUDPLoop(s *Server, conn *net.UDPConn) *udpLoop {
	l := &udpLoop{s: s, conn: conn, local: conn.LocalAddr(), min: int32(runtime.GOMAXPROCS(0)), stop: make(chan struct{})}
	l.spareIdle.Store(int64(spareIdle))
	growReadBuffer(conn)
	ua, _ := conn.LocalAddr().(*net.UDPAddr)
	if ua != nil {
		l.localAP = netip.AddrPortFrom(addrPort(ua.IP, ua.Port))
	}
	if ua != nil && ua.IP.IsUnspecified() {
		// Ask for the destination address of each packet, to answer from it.
		err6 := ipv6.NewPacketConn(conn).SetControlMessage(ipv6.FlagDst|ipv6.FlagInterface, true)
		err4 := ipv4.NewPacketConn(conn).SetControlMessage(ipv4.FlagDst|ipv4.FlagInterface, true)
		l.wildcard = err4 == nil || err6 == nil
	}
	if l.wildcard {
		l.oobSize = 128
	}
	return l
}

func (l *udpLoop) start() {
	for range l.min {
		l.addPermit()
	}
	go l.watch()
}

// addPermit creates a read permit and gives it to a goroutine. It reports
// false (and logs why) when the buffers could not be set up.
func (l *udpLoop) addPermit() bool {
	in, err := newMmsgBatch(l.conn, udpBatch, udpReadBuf, l.oobSize)
	if err == nil {
		var out *mmsgBatch
		if out, err = newMmsgBatch(l.conn, udpBatch, udpReplySlot, l.oobSize); err == nil {
			l.permits.Add(1)
			l.dispatch(udpJob{permit: &readPermit{in: in, out: out, pkts: make([]udpPacket, 0, udpBatch)}})
			return true
		}
	}
	l.s.logger.Error("udp reader", "addr", l.local.String(), "error", err)
	return false
}

// watch adds a read permit when every holder has been inside one batch,
// without any packet being served, for stuckTicks ticks in a row that
// each came on time: a stage blocked without calling query.BeforeWait.
// Holders that are merely busy with fast answers finish batches, so they
// do not count as stuck; nor does a holder that was not given the CPU:
// see stallJudge. While the listener is idle (nothing served, no holder
// busy) it ticks every idleWatchTick instead, so an idle server wakes up
// ten times a second, not a hundred.
func (l *udpLoop) watch() {
	t := time.NewTicker(watchTick)
	defer t.Stop()
	start := time.Now()
	j := stallJudge{last: l.served.Load(), prev: start, since: start, tick: watchTick}
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		served, busy, before := l.served.Load(), l.holdersBusy.Load(), j.last
		if p := l.permits.Load(); j.stuck(now, served, busy, p) {
			l.pressure.Store(now.UnixNano())
			// Counted before the permit exists, so that a reader of both
			// never sees more permits added than counted.
			l.s.metrics.udpStuck()
			if l.addPermit() {
				l.s.logger.Warn("every UDP reader is stuck in a batch (a stage waiting without BeforeWait, or starved of CPU): added a read permit",
					"addr", l.local.String(), "permits", p+1)
			}
		}
		next := watchTick
		if served == before && busy == 0 {
			next = idleWatchTick
		}
		if next != j.tick {
			t.Reset(next)
			j.tick = next
		}
	}
}

// stuckTicks is how many on-time watcher ticks in a row must find every
// holder inside one batch, with nothing served, before a permit is added.
const stuckTicks = 2

// stuckBackstop is how long every holder may sit in one batch, with
// nothing served, before a permit is added even though the watcher's
// ticks came late (see stallJudge).
const stuckBackstop = time.Second

// stallJudge tells a holder blocked in a stage from one that was not
// given the CPU. On a busy single core, or a VM whose vCPU is descheduled
// for a few milliseconds, a holder can sit in one batch for a whole tick
// while runnable; the watcher then wakes late too, because it was not run
// either. Adding a permit then only adds a reader contending for the same
// core (measured at 92,000 qps of cache hits on one core: 12-14 permits
// after ten seconds, and queries stalled for 40-330 ms). So a tick that
// came more than half a tick late resets the count, and a holder counts as
// stuck after stuckTicks on-time ticks without progress.
//
// On time but stuck is not always a blocked stage either: a holder the
// runtime preempted waits in the global run queue, and on a saturated
// core a burst of upstream replies (hundreds of goroutines, tens of µs
// each) can run first while the watcher, woken by its timer, runs on
// time (seen in bench/soak.sh: the holder "runnable" in every goroutine
// dump taken at a judgement). A new permit's goroutine runs at once, so
// adding one is the right answer there too.
//
// A stage that spins on the CPU instead of blocking keeps the watcher's
// ticks late too, when it holds every P (the runtime preempts it only
// after 10 ms, so the watcher runs about every 20 ms). The backstop
// catches it: every holder inside one batch, with nothing served, for
// stuckBackstop, however late the ticks.
type stallJudge struct {
	last  uint64        // packets served at the previous tick
	prev  time.Time     // when the previous tick was handled
	since time.Time     // the last tick with progress or a free holder
	tick  time.Duration // the ticker's period
	count int           // on-time ticks in a row with every holder stuck
}

// stuck records a tick handled at now and reports whether every holder
// is now judged stuck (and starts over if so).
func (j *stallJudge) stuck(now time.Time, served uint64, busy, permits int32) bool {
	late := now.Sub(j.prev) > j.tick+j.tick/2
	j.prev = now
	progressed := served != j.last
	j.last = served
	if progressed || permits <= 0 || busy < permits || permits >= maxPermits {
		j.count, j.since = 0, now
		return false
	}
	if late {
		j.count = 0
	} else {
		j.count++
	}
	if j.count >= stuckTicks || now.Sub(j.since) >= stuckBackstop {
		j.count, j.since = 0, now
		return true
	}
	return false
}

// dispatch gives j to the goroutine that parked last, or to a new one; at
// maxReaders goroutines it queues j for the next one to park.
func (l *udpLoop) dispatch(j udpJob) {
	l.handOver(j, true, nil)
}

// handOver gives j to a goroutine that takes it at once, a parked one or
// a new one; from, when not nil, is the writer whose permit j carries, and
// passes it on (udpWriter.passOn) just before j is handed over. When the
// pool is at maxReaders with none parked, j goes to the pending queue if
// queue is set (from keeps its permit then), and handOver reports false
// either way.
func (l *udpLoop) handOver(j udpJob, queue bool, from *udpWriter) bool {
	l.mu.Lock()
	if n := len(l.parked); n > 0 {
		ch := l.parked[n-1]
		l.parked[n-1] = nil
		l.parked = l.parked[:n-1]
		l.mu.Unlock()
		if from != nil {
			from.passOn()
		}
		ch <- j // buffered: never blocks
		return true
	}
	if l.readers.Load() >= maxReaders {
		if queue {
			l.pending = append(l.pending, j)
		}
		l.mu.Unlock()
		return false
	}
	l.readers.Add(1)
	l.mu.Unlock()
	if from != nil {
		from.passOn()
	}
	go l.run(j)
	return true
}

// park waits for the next job of this goroutine (wake is its channel). It
// returns false when none came within spareIdle or the listener stopped:
// the goroutine has then left the pool.
func (l *udpLoop) park(wake chan udpJob, idle *time.Timer) (udpJob, bool) {
	l.mu.Lock()
	if len(l.pending) > 0 {
		j := l.pending[0]
		l.pending[0] = udpJob{}
		l.pending = l.pending[1:]
		l.mu.Unlock()
		return j, true
	}
	l.parked = append(l.parked, wake)
	l.mu.Unlock()
	idle.Reset(time.Duration(l.spareIdle.Load()))
	select {
	case j := <-wake:
		idle.Stop()
		return j, true
	case <-idle.C:
	case <-l.stop:
		idle.Stop()
	}
	l.mu.Lock()
	if i := slices.Index(l.parked, wake); i >= 0 {
		l.parked = slices.Delete(l.parked, i, i+1)
		l.readers.Add(-1)
		l.mu.Unlock()
		return udpJob{}, false
	}
	l.mu.Unlock()
	return <-wake, true // dispatch took this goroutine: its job is on the way
}

// run is one goroutine of the pool: it does its job, then parks for the
// next, until it has been idle for spareIdle or the listener stops.
func (l *udpLoop) run(j udpJob) {
	w := l.newWriter()
	wake := make(chan udpJob, 1)
	idle := time.NewTimer(time.Hour)
	idle.Stop()
	for {
		if !l.read(w, j.permit, j.pkts) {
			l.readers.Add(-1)
			return
		}
		var ok bool
		if j, ok = l.park(wake, idle); !ok {
			return
		}
	}
}

// udpBatch is how many packets a reader takes from the socket in one
// recvmmsg, and how many replies it holds back to send in one sendmmsg:
// the replies of a batch leave together once it is served (or when a
// query of it is about to wait on an upstream).
//
// On loopback and in VMs the dearest part of a reply is not the syscall
// but waking the client's reader, once per sendmmsg when it sleeps: the
// fewer sends, the fewer wake-ups. At full load of cache hits (dnsperf,
// interleaved runs), batches of 128 sent once each gave 1.14-1.19 times
// the qps of batches of 32 sent 8 replies at a time, and 0.84 times the
// CPU per query; 256 gave no more. The cost is that the first reply of a
// batch waits for the others to be answered, about 1.5 µs each: 0.2 ms
// for a full batch, which only a saturated socket fills.
const udpBatch = 128

// udpMaxHold bounds how long replies wait in a send batch while the rest of
// the batch is served, checked every udpHoldCheck replies (a clock read):
// with slow stages the first replies of a batch leave after about 1 ms,
// not after the whole batch. A stage that blocks without query.BeforeWait
// holds the replies queued before it until it returns (up to a batch of
// them; the watcher then adds a read permit, but cannot send another
// goroutine's batch); the server's own stages never block so.
const (
	udpMaxHold   = time.Millisecond
	udpHoldCheck = 8
)

// udpReplySlot is the size of a reply slot of a send batch; larger replies
// (big EDNS answers) are sent on their own.
const udpReplySlot = 1500

// udpPacket is one received datagram waiting to be served.
type udpPacket struct {
	data []byte
	from netip.AddrPort
	oob  []byte
}

// read reads and serves batches while holding p, starting with pkts when
// the permit came with the rest of a batch. It returns true when the
// permit was passed on (or, a surplus one, dropped), false when the
// listener is closed.
func (l *udpLoop) read(w *udpWriter, p *readPermit, pkts []udpPacket) bool {
	if p.carried > 0 || p.out.n > 0 {
		// Replies carried with the permit (beforeWait) leave with this
		// goroutine's, or now when nothing is left to serve before the
		// next read, which may wait.
		w.done += p.carried
		w.heldSince = p.heldSince
		p.carried, p.heldSince = 0, 0
		if len(pkts) == 0 {
			w.permit = p
			w.flush()
			w.permit = nil
		}
	}
	for {
		if len(pkts) == 0 {
			// Counted as pending while inside the read, so that Shutdown
			// cannot miss a batch read just as it looks.
			l.s.udpPending.Add(1)
			if err := p.in.recv(); err != nil {
				l.s.udpDone(1)
				if errors.Is(err, net.ErrClosed) || l.s.stopping.Load() {
					return false
				}
				continue
			}
			if p.in.n != 1 {
				l.s.udpPending.Add(int64(p.in.n - 1))
			}
			p.pkts = p.pkts[:0]
			for i := range p.in.n {
				data, from, oob := p.in.packet(i)
				p.pkts = append(p.pkts, udpPacket{data, from, oob})
			}
			pkts = p.pkts
		}
		n := len(pkts)
		l.holdersBusy.Add(1)
		w.permit, w.queue = p, pkts
		pkts = nil
		l.drain(w)
		if w.permit == nil {
			// Passed on in beforeWait. Not counted as served: the watcher
			// looks for holders making progress, and this goroutine is
			// no longer one (its query may finish much later).
			return true
		}
		w.flush()
		w.permit = nil
		l.holdersBusy.Add(-1)
		l.served.Add(uint64(n))
		// A permit the watcher added goes once no holder has been stuck
		// for a while (checked every 64 batches of the permit, whoever
		// held it: the clock is cheap but not free).
		if p.batches++; p.batches&63 == 0 {
			if r := l.permits.Load(); r > l.min && time.Now().UnixNano()-l.pressure.Load() > int64(shrinkAfter) &&
				l.permits.CompareAndSwap(r, r-1) {
				return true
			}
		}
	}
}

// newWriter returns a writer for this listener. While its goroutine holds
// a read permit, replies are queued on the permit's send batch.
func (l *udpLoop) newWriter() *udpWriter {
	w := &udpWriter{conn: l.conn, local: l.local, loop: l, buf: make([]byte, 0, 4096)}
	w.initContext()
	return w
}

// drain serves the packets queued on w, in order. A handler that is about
// to wait on an upstream hands the rest of the queue on (beforeWait), so a
// cache miss never delays the hits read with it.
func (l *udpLoop) drain(w *udpWriter) {
	for len(w.queue) > 0 {
		p := w.queue[0]
		w.queue = w.queue[1:]
		w.oob, w.dst = nil, l.localAP
		if l.wildcard && len(p.oob) > 0 {
			var dst netip.Addr
			if w.oob, dst = replyOOB(p.oob); dst.IsValid() {
				w.dst = netip.AddrPortFrom(dst, l.localAP.Port())
			}
		}
		w.remote = p.from
		w.client = w.remote
		data := p.data
		// The whole 12-byte signature, not its first byte: a plain query
		// whose ID starts with 0x0D (1 in 256) is not a PROXY header.
		if l.s.cfg.ProxyProtocol && len(data) > 16 && bytes.HasPrefix(data, proxySig) && containsAddr(l.s.cfg.TrustedForwarders, w.remote.Addr()) {
			src, hl, err := parseProxyV2(data)
			if err != nil {
				l.s.metrics.malformed("proxy")
				w.packetDone()
				continue
			}
			if src.IsValid() {
				w.client = src
			}
			data = data[hl:]
		}
		l.s.servePacket(w, data)
		w.packetDone()
	}
}

// replyOOB turns the control message of a received packet into the one
// that makes the reply leave from the address the query was sent to, and
// returns that address (invalid when the message names none).
func replyOOB(oob []byte) ([]byte, netip.Addr) {
	var cm4 ipv4.ControlMessage
	if cm4.Parse(oob) == nil && cm4.Dst != nil && cm4.Dst.To4() != nil {
		dst, _ := netip.AddrFromSlice(cm4.Dst.To4())
		return (&ipv4.ControlMessage{Src: cm4.Dst}).Marshal(), dst
	}
	var cm6 ipv6.ControlMessage
	if cm6.Parse(oob) == nil && cm6.Dst != nil {
		dst, _ := netip.AddrFromSlice(cm6.Dst)
		return (&ipv6.ControlMessage{Src: cm6.Dst}).Marshal(), dst.Unmap()
	}
	return nil, netip.Addr{}
}

// servePacket does for one UDP packet or TCP message what miekg/dns's
// server does before calling the handler: header checks and unpacking,
// with the same policy as accept. Malformed messages get at most a
// header-only FORMERR (NOTIMP for an opcode other than QUERY), which is
// never larger than what was sent.
func (s *Server) servePacket(w dns.ResponseWriter, data []byte) {
	if len(data) < 12 {
		s.metrics.malformed("unpack")
		return
	}
	dh := wireHeader(data)
	switch s.accept(dh) {
	case dns.MsgIgnore:
		return
	case dns.MsgReject:
		s.rejectHeader(w, dh, dns.RcodeFormatError)
		return
	case dns.MsgRejectNotImplemented:
		s.rejectHeader(w, dh, dns.RcodeNotImplemented)
		return
	}
	// A UDP query and its reply from the cache are lent from the pool:
	// no allocation for them on a cache hit.
	uw, _ := w.(*udpWriter)
	var lm *lentMsgs
	var lease *query.Lease // nil when nothing is lent: Release does nothing
	var into *queryMsg
	if uw != nil {
		lm = lentPool.Get().(*lentMsgs)
		lm.lease.Lend(lm.giveBack)
		lease, into = &lm.lease, &lm.query
	}
	m, ok := unpackQuery(dh, data, into)
	if !ok {
		m = new(dns.Msg)
		if err := m.Unpack(data); err != nil {
			lease.Release()
			s.invalid(data, err)
			s.rejectHeader(w, dh, dns.RcodeFormatError)
			return
		}
	}
	if uw == nil {
		s.ServeDNS(w, m)
		return
	}
	uw.lease = lease
	uw.arena.Set(&lm.reply)
	s.ServeDNS(w, m)
	uw.arena.Set(nil)
	uw.lease = nil
	lease.Release()
}

// lentMsgs is what a UDP query borrows from lentPool: room for the query
// (unpackQuery) and for its reply from the cache (cache.Arena), and the
// lease that says when both are free again: once the server has written
// and observed the reply and every query-log sink that queued the record
// has written it (query.Lease).
type lentMsgs struct {
	lease    query.Lease
	query    queryMsg
	reply    cache.Arena
	giveBack func() // puts this back in lentPool; made once
}

var lentPool sync.Pool

func init() {
	lentPool.New = func() any {
		lm := new(lentMsgs)
		lm.giveBack = func() { lentPool.Put(lm) }
		return lm
	}
}

// rejectHeader answers dh with just a header and rcode, unless its client
// gets no reply at all (ServerConfig.DropOutsiders): a scanner must not
// learn that a resolver listens.
func (s *Server) rejectHeader(w dns.ResponseWriter, dh dns.Header, rcode int) {
	if s.cfg.DropOutsiders {
		var req query.Request // the client, as ServeDNS would see it
		setClient(&req, w)
		if s.silent(req.Client.Addr) {
			s.metrics.Dropped.Inc()
			return
		}
	}
	h := headerOnly(dh, rcode)
	_, _ = w.Write(h[:])
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
	dst    netip.AddrPort // where the packet was sent: the listener, or its destination on a wildcard one
	oob    []byte
	buf    []byte
	// permit is the read permit this writer's goroutine holds (nil when
	// it holds none); its send batch collects the replies flush sends in
	// one sendmmsg.
	permit *readPermit
	// queue holds the packets of the permit's current batch not yet
	// served (views of its buffers).
	queue []udpPacket
	// done counts the packets served while holding the permit whose
	// replies may still sit in its send batch: they stop counting as
	// pending (Server.udpPending) once it was flushed.
	done int64
	// heldSince is when a check found replies held in the send batch
	// (unix nanoseconds; 0: none since the last flush). See udpMaxHold.
	heldSince int64
	ctx       context.Context // carries beforeWait and arena
	// arena holds the room for the reply of the query being served, and
	// lease covers it and the query, while servePacket lends them.
	arena cache.ArenaSlot
	lease *query.Lease
	// lateQueued says the reply to the packet being served went to the
	// loop's late batch (see lateReplies), which accounts for the packet.
	lateQueued bool
}

var _ dns.ResponseWriter = (*udpWriter)(nil)

func (w *udpWriter) LocalAddr() net.Addr  { return w.local }
func (w *udpWriter) RemoteAddr() net.Addr { return net.UDPAddrFromAddrPort(w.remote) }

// queryContext is the context the chain runs in for this writer's queries.
func (w *udpWriter) queryContext() context.Context { return w.ctx }

// initContext sets the context the chain runs in for this writer's
// queries, once: it carries the writer's beforeWait and arena slot.
func (w *udpWriter) initContext() {
	w.ctx = cache.WithArenaSlot(query.WithBeforeWait(context.Background(), w.beforeWait), &w.arena)
}

func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, ok := packReply(m, w.buf[:cap(w.buf)])
	if !ok {
		var err error
		if b, err = m.PackBuffer(w.buf[:cap(w.buf)]); err != nil {
			return err
		}
	}
	if cap(b) <= 65535 {
		w.buf = b[:0]
	}
	_, err := w.Write(b)
	return err
}

// Write sends b, the reply to the packet being served: queued on the send
// batch of the permit this goroutine holds, or, when it passed the permit
// on to wait on an upstream, on the loop's late batch (lateReplies); on
// its own when neither takes it (a reply over udpReplySlot, a full batch,
// a server stopping).
func (w *udpWriter) Write(b []byte) (int, error) {
	if w.permit != nil {
		out := w.permit.out
		if out.add(b, w.remote, w.oob) {
			switch {
			case w.loop.s.stopping.Load():
				// Once the server is stopping, replies leave at once:
				// Shutdown waits for the queries in flight, not for the
				// replies a batch holds back, before it closes the socket.
				w.flush()
			case out.n%udpHoldCheck == 0:
				// Slow stages (long regex lists, say) must not hold the
				// first replies of a batch for the whole batch.
				now := time.Now().UnixNano()
				if w.heldSince == 0 {
					w.heldSince = now
				} else if now-w.heldSince > int64(udpMaxHold) {
					w.flush()
				}
			}
			return len(b), nil
		}
		if len(b) <= udpReplySlot {
			w.flush() // the batch was full
			if out.add(b, w.remote, w.oob) {
				return len(b), nil
			}
		}
	}
	if w.permit == nil && w.loop != nil && !w.lateQueued && len(b) <= udpReplySlot && !w.loop.s.stopping.Load() &&
		w.loop.sendLate(b, w.remote, w.oob) {
		w.lateQueued = true
		return len(b), nil
	}
	if w.oob != nil {
		n, _, err := w.conn.WriteMsgUDPAddrPort(b, w.oob, w.remote)
		return n, err
	}
	return w.conn.WriteToUDPAddrPort(b, w.remote)
}

// packetDone records that a packet of the queue was served (or dropped).
// Its reply may wait in the permit's send batch (done with at the flush),
// or, without a permit (passed on while it was served), in the loop's late
// batch (done with when its flusher sent it); otherwise it was written
// already.
func (w *udpWriter) packetDone() {
	switch {
	case w.lateQueued:
		w.lateQueued = false // the late batch's flusher accounts for it
	case w.permit != nil:
		w.done++
	default:
		w.loop.s.udpDone(1)
	}
}

// flush sends the queued replies; the packets they answer are done with.
func (w *udpWriter) flush() {
	w.heldSince = 0
	if w.permit != nil && w.permit.out.n > 0 {
		if dropped := w.permit.out.send(); dropped > 0 {
			w.loop.s.metrics.WriteErrors.Add(float64(dropped))
		}
	}
	if w.done > 0 {
		w.loop.s.udpDone(w.done)
		w.done = 0
	}
}

// beforeWait runs when a stage is about to wait on an upstream: the read
// permit goes to another goroutine with the packets of the batch not yet
// served, so they do not wait behind this one and the socket is read while
// it waits. The replies queued so far go with the permit when a goroutine
// takes it at once, and leave in one sendmmsg with that goroutine's (at
// the latest when it would wait for the socket, or after udpMaxHold): so
// the misses of a mixed load do not cut every send batch short (one miss
// in five made batches of about five replies, and sendmmsg a fifth of the
// CPU). When the job would have to queue for a goroutine (the pool at
// maxReaders) or the server is stopping, they leave now. A goroutine
// without a permit (it passed it on already) has nothing queued.
func (w *udpWriter) beforeWait() {
	p := w.permit
	if p == nil {
		w.flush()
		return
	}
	// The rest still lives in p's buffers, which the next holder serves
	// before it reads into them again; what this query needs of its own
	// packet (the unpacked message, the addresses, the reply's control
	// message) was copied out of them before the handler ran.
	l := w.loop
	j := udpJob{permit: p, pkts: w.queue}
	w.queue = nil
	if (p.out.n > 0 || w.done > 0) && !l.s.stopping.Load() && l.handOver(j, false, w) {
		return
	}
	w.flush()
	w.passOn()
	l.dispatch(j)
}

// passOn gives up w's permit, with the replies queued on it and their
// packets' accounting (readPermit.carried), which its next holder takes.
func (w *udpWriter) passOn() {
	p := w.permit
	if w.done > 0 || p.out.n > 0 {
		p.carried += w.done
		if p.heldSince == 0 {
			p.heldSince = cmp.Or(w.heldSince, time.Now().UnixNano())
		}
	}
	w.done, w.heldSince = 0, 0
	w.permit = nil
	w.loop.holdersBusy.Add(-1)
}

// headerOnly is a reply of just a header: the query's ID and opcode, QR
// set, no sections.
func headerOnly(dh dns.Header, rcode int) [12]byte {
	var h [12]byte
	binary.BigEndian.PutUint16(h[0:], dh.Id)
	bits := dh.Bits&(0xF<<11|1<<8|1<<4) | 1<<15 | uint16(rcode&0xF) // keep opcode, RD and CD (as SetReply does), set QR
	binary.BigEndian.PutUint16(h[2:], bits)
	return h
}

func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}
