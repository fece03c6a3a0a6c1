package resolver_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver"
	"github.com/dnsvalve/dnsvalve/resolver/cache"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
	"github.com/dnsvalve/dnsvalve/resolver/upstream"
)

// fault is how a faultyUpstream misbehaves.
type fault int32

const (
	faultNone     fault = iota // answers: A <ip>, probes NOERROR
	faultTimeout               // reads queries and never answers
	faultServfail              // answers SERVFAIL
	faultReset                 // TCP: accepts and closes at once (RST); UDP: silent
	faultGarbage               // answers with bytes that are no DNS message
	faultWrongID               // answers once with the wrong ID, then nothing
)

func (f fault) String() string {
	return [...]string{"none", "timeout", "servfail", "reset", "garbage", "wrong_id"}[f]
}

// faultyUpstream is a hand-rolled DNS server (UDP and TCP on one loopback
// port) whose failure mode can be switched at run time. Healthy, it answers
// every A query with one A record of its own ip.
type faultyUpstream struct {
	addr string
	ip   net.IP
	mode atomic.Int32
	hits atomic.Int64 // queries received (UDP datagrams, TCP connections or messages)
	// dropUDP is how many of the next UDP queries are read and dropped,
	// whatever the mode: datagrams lost on the way.
	dropUDP atomic.Int64
	pc      net.PacketConn
	l       net.Listener
	wg      sync.WaitGroup
	mu      sync.Mutex
	conns   map[net.Conn]bool
}

func startFaulty(tb testing.TB, ip net.IP, f fault) *faultyUpstream {
	tb.Helper()
	pc, l := listenPair(tb)
	u := &faultyUpstream{addr: pc.LocalAddr().String(), ip: ip, pc: pc, l: l, conns: map[net.Conn]bool{}}
	u.set(f)
	u.wg.Add(2)
	go u.serveUDP()
	go u.serveTCP()
	tb.Cleanup(func() {
		pc.Close()
		l.Close()
		u.mu.Lock()
		for c := range u.conns {
			c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	return u
}

func (u *faultyUpstream) set(f fault) { u.mode.Store(int32(f)) }

// reply builds the wire reply to query q in the current mode; nil means
// no reply.
func (u *faultyUpstream) reply(q []byte) []byte {
	m := new(dns.Msg)
	if err := m.Unpack(q); err != nil || len(m.Question) != 1 {
		return nil
	}
	r := new(dns.Msg)
	r.SetReply(m)
	r.RecursionAvailable = true
	switch fault(u.mode.Load()) {
	case faultTimeout, faultReset:
		return nil
	case faultServfail:
		r.Rcode = dns.RcodeServerFailure
	case faultGarbage:
		return []byte("\x00\x01this is not a DNS message at all")
	case faultWrongID:
		r.Id = m.Id + 1
	default:
		if q := m.Question[0]; q.Qtype == dns.TypeA {
			r.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: u.ip}}
		}
	}
	if opt := m.IsEdns0(); opt != nil {
		r.SetEdns0(opt.UDPSize(), opt.Do())
	}
	b, err := r.Pack()
	if err != nil {
		return nil
	}
	return b
}

func (u *faultyUpstream) serveUDP() {
	defer u.wg.Done()
	buf := make([]byte, 65535)
	for {
		n, from, err := u.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		u.hits.Add(1)
		if u.dropUDP.Add(-1) >= 0 {
			continue
		}
		if b := u.reply(buf[:n]); b != nil {
			_, _ = u.pc.WriteTo(b, from)
		}
	}
}

func (u *faultyUpstream) serveTCP() {
	defer u.wg.Done()
	for {
		c, err := u.l.Accept()
		if err != nil {
			return
		}
		if fault(u.mode.Load()) == faultReset {
			u.hits.Add(1)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.SetLinger(0) // RST, not FIN
			}
			c.Close()
			continue
		}
		u.mu.Lock()
		u.conns[c] = true
		u.mu.Unlock()
		u.wg.Add(1)
		go u.serveConn(c)
	}
}

func (u *faultyUpstream) serveConn(c net.Conn) {
	defer u.wg.Done()
	defer func() {
		u.mu.Lock()
		delete(u.conns, c)
		u.mu.Unlock()
		c.Close()
	}()
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		u.hits.Add(1)
		b := u.reply(q)
		if b == nil {
			continue
		}
		out := binary.BigEndian.AppendUint16(nil, uint16(len(b)))
		if _, err := c.Write(append(out, b...)); err != nil {
			return
		}
	}
}

// faultHarness is a Server with the production chain over a real cache and
// an upstream.Group the test can reach (health, ProbeNow, metrics).
type faultHarness struct {
	addr  string
	group *upstream.Group
	upm   *upstream.Metrics
	clock *clock
}

type faultConfig struct {
	upstreams []string
	group     upstream.GroupConfig
	upTimeout time.Duration // per-upstream timeout
	observer  resolver.Observer
}

func newFaultHarness(tb testing.TB, fc faultConfig) *faultHarness {
	tb.Helper()
	reg := prometheus.NewRegistry()
	h := &faultHarness{clock: newClock(), upm: upstream.NewMetrics(reg)}
	var ups []upstream.Upstream
	for _, s := range fc.upstreams {
		u, err := upstream.New(s, upstream.Options{Timeout: fc.upTimeout, Metrics: h.upm})
		if err != nil {
			tb.Fatalf("upstream.New(%q): %v", s, err)
		}
		ups = append(ups, u)
	}
	if fc.group.ProbeInterval == 0 {
		fc.group.ProbeInterval = time.Hour // only ProbeNow probes
	}
	g, err := upstream.NewGroup(ups, fc.group, h.upm, nil, nil)
	if err != nil {
		tb.Fatalf("NewGroup: %v", err)
	}
	tb.Cleanup(func() { _ = g.Close() })
	h.group = g
	ccfg := cache.DefaultConfig()
	ccfg.Prefetch = false
	c, err := cache.New(ccfg, g, cache.NewMetrics(reg), nil, h.clock.now)
	if err != nil {
		tb.Fatalf("cache.New: %v", err)
	}
	tb.Cleanup(c.Close)
	snap, err := policy.Compile(policy.Config{}, nil)
	if err != nil {
		tb.Fatalf("policy.Compile: %v", err)
	}
	store := policy.NewStore(snap)
	sm := resolver.NewMetrics(reg)
	chain := resolver.Chain(resolver.Forward(c),
		resolver.Access(loopbackAllowed(), sm, h.clock.now),
		resolver.Policy(store, policy.NewMetrics(reg)),
		resolver.MinimalANY(),
	)
	var srv *resolver.Server
	for range 10 {
		srv = resolver.NewServer(resolver.ServerConfig{Listen: []string{"127.0.0.1:0"}}, chain, fc.observer, sm, nil, h.clock.now)
		if err = srv.Start(context.Background()); err == nil {
			break
		}
	}
	if err != nil {
		tb.Fatalf("Start: %v", err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	h.addr = srv.Addrs()[0].String()
	return h
}

func (h *faultHarness) healthy(url string) float64 {
	return testutil.ToFloat64(h.upm.Healthy.WithLabelValues(url))
}

// ask sends an A query for name over UDP and returns the reply.
func (h *faultHarness) ask(tb testing.TB, name string, bufsize uint16) *dns.Msg {
	tb.Helper()
	r, err := tryExchangeTimeout("udp", h.addr, msg(name, dns.TypeA, bufsize, false), 10*time.Second)
	if err != nil {
		tb.Fatalf("query %s: %v", name, err)
	}
	return r
}

var (
	faultyIP  = net.IPv4(192, 0, 2, 1)
	healthyIP = net.IPv4(192, 0, 2, 2)
)

// answeredBy returns the A address of r ("" if none).
func answeredBy(r *dns.Msg) string {
	if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
		return ""
	}
	if a, ok := r.Answer[0].(*dns.A); ok {
		return a.A.String()
	}
	return ""
}

// TestFaultyUpstreamSkipped puts a misbehaving upstream in front of a
// healthy one (failover): every query is still answered, the faulty one is
// marked down after MaxFails and receives no more queries, and once its
// fault is gone a probe brings it back and traffic returns to it.
func TestFaultyUpstreamSkipped(t *testing.T) {
	t.Parallel()
	const maxFails = 3
	// A SERVFAIL-answering upstream is alive: it is failed over but never
	// marked down (TestServfailDoesNotMarkDown), so it is not in this list.
	for _, f := range []fault{faultTimeout, faultReset, faultGarbage, faultWrongID} {
		t.Run(f.String(), func(t *testing.T) {
			t.Parallel()
			bad := startFaulty(t, faultyIP, f)
			good := startFaulty(t, healthyIP, faultNone)
			badURL := "udp://" + bad.addr
			if f == faultReset {
				badURL = "tcp://" + bad.addr
			}
			h := newFaultHarness(t, faultConfig{
				upstreams: []string{badURL, "udp://" + good.addr},
				group:     upstream.GroupConfig{MaxFails: maxFails, Timeout: 3 * time.Second},
				upTimeout: 250 * time.Millisecond,
			})
			failed := 0
			for i := range maxFails {
				if answeredBy(h.ask(t, fmt.Sprintf("warmup-%d.example.", i), 0)) != healthyIP.String() {
					failed++
				}
			}
			if failed != 0 {
				t.Errorf("%d of %d queries failed while the faulty upstream was being marked down", failed, maxFails)
			}
			if got := h.healthy(badURL); got != 0 {
				t.Fatalf("healthy gauge of the faulty upstream = %v after %d failures, want 0", got, maxFails)
			}
			if st := h.group.Status(); st[0].Healthy || !st[1].Healthy {
				t.Fatalf("group status %+v, want faulty down and healthy up", st)
			}
			// Marked down: skipped, so queries are answered without waiting
			// for it.
			badHits := bad.hits.Load()
			start := time.Now()
			for i := range 20 {
				r := h.ask(t, fmt.Sprintf("after-%d.example.", i), 1232)
				if answeredBy(r) != healthyIP.String() {
					t.Fatalf("query %d while faulty is down: %v", i, r)
				}
			}
			if el := time.Since(start); el > 2*time.Second {
				t.Errorf("20 queries took %v with the faulty upstream marked down", el)
			}
			if n := bad.hits.Load() - badHits; n != 0 {
				t.Errorf("faulty upstream got %d queries while marked down", n)
			}
			// The fault goes away; a probe brings the upstream back.
			bad.set(faultNone)
			h.group.ProbeNow(context.Background())
			if got := h.healthy(badURL); got != 1 {
				t.Fatalf("healthy gauge after a successful probe = %v, want 1", got)
			}
			badHits = bad.hits.Load()
			if by := answeredBy(h.ask(t, "back.example.", 0)); by != faultyIP.String() {
				t.Errorf("after recovery answered by %q, want the recovered first upstream %s", by, faultyIP)
			}
			if bad.hits.Load() == badHits {
				t.Error("recovered upstream got no traffic")
			}
		})
	}
}

// TestAllUpstreamsDown: with every upstream marked down, a cached name is
// served stale (TTL 30, EDE Stale Answer) and an uncached one gets SERVFAIL
// with an EDE at once, without waiting for any upstream timeout.
func TestAllUpstreamsDown(t *testing.T) {
	t.Parallel()
	const upTimeout = 500 * time.Millisecond
	a := startFaulty(t, faultyIP, faultNone)
	b := startFaulty(t, healthyIP, faultNone)
	urls := []string{"udp://" + a.addr, "udp://" + b.addr}
	h := newFaultHarness(t, faultConfig{
		upstreams: urls,
		group:     upstream.GroupConfig{MaxFails: 2, Timeout: 3 * time.Second},
		upTimeout: upTimeout,
	})
	if by := answeredBy(h.ask(t, "cached.example.", 1232)); by != faultyIP.String() {
		t.Fatalf("priming query answered by %q", by)
	}
	a.set(faultTimeout)
	b.set(faultTimeout)
	// Two failing queries, one after the other, trip both upstreams (each
	// query tries both in turn; failures of queries in flight together
	// would count once: TestLoneUpstreamSurvivesLostBurst).
	for i := range 2 {
		r, err := tryExchangeTimeout("udp", h.addr, msg(fmt.Sprintf("trip-%d.example.", i), dns.TypeA, 1232, false), 10*time.Second)
		if err != nil || r.Rcode != dns.RcodeServerFailure {
			t.Fatalf("tripping query: %v %v, want SERVFAIL", r, err)
		}
	}
	if h.group.Healthy() {
		t.Fatalf("group still healthy: %+v", h.group.Status())
	}
	for _, u := range urls {
		if got := h.healthy(u); got != 0 {
			t.Errorf("healthy{%s} = %v, want 0", u, got)
		}
	}
	h.clock.step(301 * time.Second) // past the 300 s TTL

	t.Run("cached_name_served_stale", func(t *testing.T) {
		r := h.ask(t, "cached.example.", 1232)
		wantRcode(t, r, dns.RcodeSuccess)
		if answeredBy(r) != faultyIP.String() || r.Answer[0].Header().Ttl != 30 {
			t.Errorf("stale answer %v, want the cached record with TTL 30", r.Answer)
		}
		wantEDE(t, r, dns.ExtendedErrorCodeStaleAnswer)
	})
	t.Run("uncached_name_fails_fast", func(t *testing.T) {
		hitsA, hitsB := a.hits.Load(), b.hits.Load()
		start := time.Now()
		r := h.ask(t, "uncached.example.", 1232)
		el := time.Since(start)
		wantRcode(t, r, dns.RcodeServerFailure)
		if es := ede(r); len(es) != 1 {
			t.Errorf("EDE %v, want one", es)
		}
		if el >= upTimeout/2 {
			t.Errorf("SERVFAIL took %v with every upstream down (upstream timeout %v)", el, upTimeout)
		}
		if a.hits.Load() != hitsA || b.hits.Load() != hitsB {
			t.Error("an upstream marked down was asked")
		}
		// Without EDNS0: SERVFAIL, no OPT.
		r = h.ask(t, "uncached-2.example.", 0)
		wantRcode(t, r, dns.RcodeServerFailure)
		if r.IsEdns0() != nil {
			t.Errorf("OPT in a reply to a client without EDNS0")
		}
	})
}

// TestLoneUpstreamSurvivesLostBurst: a burst of datagrams lost together
// (a full receive buffer under load) fails the queries in it, but is one
// event: it must not mark the only upstream down, which would fail every
// query after it at once until a probe brought the upstream back.
func TestLoneUpstreamSurvivesLostBurst(t *testing.T) {
	t.Parallel()
	const maxFails, burst = 3, 8
	u := startFaulty(t, healthyIP, faultNone)
	url := "udp://" + u.addr
	h := newFaultHarness(t, faultConfig{
		upstreams: []string{url},
		group:     upstream.GroupConfig{MaxFails: maxFails, Timeout: 3 * time.Second},
		// A try shorter than the first retransmission timeout (376 ms):
		// the lost queries are not sent again, so they fail, as a burst
		// lost with its copies would.
		upTimeout: 300 * time.Millisecond,
	})
	u.dropUDP.Store(burst)
	var wg sync.WaitGroup
	for i := range burst {
		wg.Go(func() {
			r, err := tryExchangeTimeout("udp", h.addr, msg(fmt.Sprintf("lost-%d.example.", i), dns.TypeA, 1232, false), 10*time.Second)
			if err != nil {
				t.Errorf("query in the lost burst: %v", err)
				return
			}
			// Its datagram was lost: SERVFAIL after the try timeout.
			wantRcode(t, r, dns.RcodeServerFailure)
		})
	}
	wg.Wait()
	if st := h.group.Status()[0]; !st.Healthy || st.ConsecutiveFails >= maxFails {
		t.Fatalf("after %d datagrams lost together: %+v, want the upstream up", burst, st)
	}
	if got := h.healthy(url); got != 1 {
		t.Errorf("healthy gauge = %v, want 1", got)
	}
	for i := range 5 {
		if by := answeredBy(h.ask(t, fmt.Sprintf("after-%d.example.", i), 1232)); by != healthyIP.String() {
			t.Fatalf("query %d after the burst answered by %q, want the upstream", i, by)
		}
	}
}

// blockingSink is a query-log sink whose Write blocks until release is
// closed (a dead collector, a hung NFS mount).
type blockingSink struct {
	entered chan struct{} // closed on the first Write
	once    sync.Once
	release chan struct{}
}

func (s *blockingSink) Name() string { return "blocked" }
func (s *blockingSink) Write(*querylog.Record) error {
	s.once.Do(func() { close(s.entered) })
	<-s.release
	return nil
}
func (s *blockingSink) Flush() error { return nil }
func (s *blockingSink) Close() error { return nil }

// fullDiskSink fails every Write with ENOSPC.
type fullDiskSink struct{ writes atomic.Int64 }

func (s *fullDiskSink) Name() string { return "full_disk" }
func (s *fullDiskSink) Write(*querylog.Record) error {
	s.writes.Add(1)
	return fmt.Errorf("write /var/log/dnsvalve/query.log: %w", syscall.ENOSPC)
}
func (s *fullDiskSink) Flush() error { return nil }
func (s *fullDiskSink) Close() error { return nil }

// TestQueryLogSinkFaults: a query-log sink that blocks forever or fails
// every write never holds DNS up: 5,000 queries are answered, and every
// record the sink did not take is counted (dropped or errors).
func TestQueryLogSinkFaults(t *testing.T) {
	t.Parallel()
	const queries = 5000
	const buffer = 64
	cases := []struct {
		name string
		sink func() querylog.Sink
		// check runs once every query was answered.
		check func(t *testing.T, sink querylog.Sink, l *querylog.Logger, m *querylog.Metrics)
	}{
		{"blocked_sink", func() querylog.Sink {
			return &blockingSink{entered: make(chan struct{}), release: make(chan struct{})}
		}, func(t *testing.T, sink querylog.Sink, l *querylog.Logger, m *querylog.Metrics) {
			<-sink.(*blockingSink).entered
			// One record is stuck in Write, the buffer is full, the rest
			// were dropped.
			waitUntil(t, "every record accounted for", func() bool {
				st := l.Stats()[0]
				return st.Dropped+uint64(st.Queued)+1 == queries
			})
			st := l.Stats()[0]
			if st.Written != 0 || st.Queued != buffer || st.Dropped != queries-buffer-1 {
				t.Errorf("stats %+v, want %d queued, %d dropped", st, buffer, queries-buffer-1)
			}
			if got := testutil.ToFloat64(m.Dropped.WithLabelValues("blocked")); got != float64(st.Dropped) {
				t.Errorf("dropped_total = %v, want %d", got, st.Dropped)
			}
		}},
		{"full_disk_sink", func() querylog.Sink { return &fullDiskSink{} },
			func(t *testing.T, sink querylog.Sink, l *querylog.Logger, m *querylog.Metrics) {
				waitUntil(t, "every record accounted for", func() bool {
					st := l.Stats()[0]
					return st.Errors+st.Dropped == queries && st.Queued == 0
				})
				st := l.Stats()[0]
				if st.Written != 0 || st.Errors == 0 || st.Errors != uint64(sink.(*fullDiskSink).writes.Load()) {
					t.Errorf("stats %+v after %d failed writes", st, sink.(*fullDiskSink).writes.Load())
				}
				if got := testutil.ToFloat64(m.Errors.WithLabelValues("full_disk")); got != float64(st.Errors) {
					t.Errorf("errors_total = %v, want %d", got, st.Errors)
				}
			}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			up := startFaulty(t, healthyIP, faultNone)
			sink := c.sink()
			qm := querylog.NewMetrics(prometheus.NewRegistry())
			ql := querylog.New([]querylog.Sink{sink}, buffer, qm, slog.New(slog.DiscardHandler))
			t.Cleanup(func() {
				if bs, ok := sink.(*blockingSink); ok {
					close(bs.release)
				}
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if err := ql.Close(ctx); err != nil {
					t.Errorf("close query log: %v", err)
				}
			})
			// Registered after the query log's cleanup, so the server stops
			// first.
			h := newFaultHarness(t, faultConfig{
				upstreams: []string{"udp://" + up.addr},
				observer:  &resolver.QueryLog{Log: ql, Instance: "test"},
			})
			sendMany(t, h.addr, queries, 8)
			c.check(t, sink, ql, qm)
		})
	}
}

// sendMany sends n UDP queries over workers connections (a few names, so
// mostly cache hits) and fails unless every one is answered NOERROR.
func sendMany(t *testing.T, addr string, n, workers int) {
	t.Helper()
	var next, answered atomic.Int64
	errc := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			c, err := net.Dial("udp", addr)
			if err != nil {
				errc <- err
				return
			}
			defer c.Close()
			co := &dns.Conn{Conn: c, UDPSize: dns.MaxMsgSize}
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				q := msg(fmt.Sprintf("name-%d.example.", i%16), dns.TypeA, 0, false)
				q.Id = uint16(i)
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := co.WriteMsg(q); err != nil {
					errc <- fmt.Errorf("worker %d: write: %w", w, err)
					return
				}
				r, err := co.ReadMsg()
				if err != nil {
					errc <- fmt.Errorf("worker %d: query %d unanswered: %w", w, i, err)
					return
				}
				if r.Id != q.Id || r.Rcode != dns.RcodeSuccess || len(r.Answer) != 1 {
					errc <- fmt.Errorf("worker %d: query %d got %v", w, i, r)
					return
				}
				answered.Add(1)
			}
		})
	}
	wg.Wait()
	close(errc)
	var errs []error
	for err := range errc {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if got := answered.Load(); got != int64(n) {
		t.Fatalf("%d of %d queries answered", got, n)
	}
}

// TestServfailDoesNotMarkDown: an upstream that answers SERVFAIL is failed
// over (every client query still answered by the next one) but stays up:
// otherwise any client could take every upstream down with a few queries
// for a name that legitimately fails.
func TestServfailDoesNotMarkDown(t *testing.T) {
	t.Parallel()
	bad := startFaulty(t, faultyIP, faultServfail)
	good := startFaulty(t, healthyIP, faultNone)
	badURL := "udp://" + bad.addr
	h := newFaultHarness(t, faultConfig{
		upstreams: []string{badURL, "udp://" + good.addr},
		group:     upstream.GroupConfig{MaxFails: 3, Timeout: 3 * time.Second},
		upTimeout: 250 * time.Millisecond,
	})
	for i := range 10 {
		if by := answeredBy(h.ask(t, fmt.Sprintf("sf-%d.example.", i), 0)); by != healthyIP.String() {
			t.Fatalf("query %d answered by %q, want the second upstream", i, by)
		}
	}
	if got := h.healthy(badURL); got != 1 {
		t.Errorf("healthy gauge of the SERVFAIL upstream = %v, want 1 (alive)", got)
	}
	if n := bad.hits.Load(); n < 10 {
		t.Errorf("SERVFAIL upstream asked %d times, want every query (it is not marked down)", n)
	}
}
