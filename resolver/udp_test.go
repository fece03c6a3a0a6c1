package resolver

import (
	"cmp"
	"context"
	"fmt"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// TestUDPReaderPool: a query about to wait on an upstream passes its read
// permit on, so while 30 slow ones wait, other queries are still read and
// answered, by as many read permits as before (the pool's goroutines grow,
// not its readers); once the slow ones are answered, the goroutines they
// held park and, idle for spareIdle, leave.
func TestUDPReaderPool(t *testing.T) {
	arrived := make(chan struct{}, 64)
	s, unblock := startSlowServer(t, arrived)
	addr := s.Addrs()[0].String()
	loop := s.loops[0]
	permits := loop.permits.Load()
	loop.spareIdle.Store(int64(time.Millisecond))

	const slow = 30
	var wg sync.WaitGroup
	for range slow {
		wg.Go(func() {
			m := new(dns.Msg)
			m.SetQuestion("slow.test.", dns.TypeA)
			_, _, _ = (&dns.Client{Timeout: 20 * time.Second}).Exchange(m, addr)
		})
	}
	for range slow { // every slow query holds a goroutine
		<-arrived
	}
	// A fast query is answered while 30 slow ones wait.
	c := &dns.Client{Timeout: 5 * time.Second}
	for i := range 5 {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("fast%d.test.", i), dns.TypeA)
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatalf("fast query while slow ones wait: %v", err)
		}
	}
	// Each slow query waits on a goroutine of its own, besides the
	// permits' holders.
	if got := loop.readers.Load(); got < slow+permits {
		t.Errorf("%d goroutines with %d slow queries waiting, want at least %d", got, slow, slow+permits)
	}
	// They called BeforeWait, so no permit had to be added (one may be,
	// legitimately, if a GC pause stalls a holder for a watcher tick).
	if got := loop.permits.Load(); got > permits+1 {
		t.Errorf("%d read permits with the slow queries waiting, want %d", got, permits)
	}
	unblock()
	wg.Wait()
	// Idle for spareIdle (1 ms here), the goroutines beyond the permits'
	// holders leave.
	deadline := time.Now().Add(10 * time.Second)
	for loop.readers.Load() > permits && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if got, want := loop.readers.Load(), loop.permits.Load(); got != want {
		t.Errorf("%d goroutines after the slow queries, want back to %d", got, want)
	}
	// Shutdown leaves no goroutine of the pool behind.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); loop.readers.Load() > 0 && time.Now().Before(deadline); {
		runtime.Gosched()
	}
	if got := loop.readers.Load(); got != 0 {
		t.Errorf("%d goroutines of the pool after Shutdown, want 0", got)
	}
}

// TestUDPStuckStageGetsPermit: a stage that blocks without calling
// query.BeforeWait keeps its read permit; when every holder is stuck, the
// watcher adds permits so queries are still read, and the added ones go
// again once there has been no shortage for shrinkAfter.
func TestUDPStuckStageGetsPermit(t *testing.T) {
	arrived := make(chan struct{}, 64)
	release := make(chan struct{})
	unblock := sync.OnceFunc(func() { close(release) })
	h := HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		if req.Msg.Question[0].Name == "stuck.test." {
			arrived <- struct{}{}
			<-release // no BeforeWait: the holder keeps its permit
		}
		return rcodeReply(req.Msg, dns.RcodeSuccess), nil
	})
	met := NewMetrics(prometheus.NewRegistry())
	s := NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}}, h, nil, met, nil, nil)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	shutdownAtCleanup(t, s, unblock)
	addr := s.Addrs()[0].String()
	loop := s.loops[0]
	permits := loop.permits.Load()

	// One at a time, so that no two arrive in one batch (the second would
	// wait behind the first): each blocks a holder, and the last ones can
	// only have been read with permits the watcher added.
	stuck := int(permits) + 2
	var wg sync.WaitGroup
	for i := range stuck {
		wg.Go(func() {
			m := new(dns.Msg)
			m.SetQuestion("stuck.test.", dns.TypeA)
			_, _, _ = (&dns.Client{Timeout: 20 * time.Second}).Exchange(m, addr)
		})
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatalf("stuck query %d of %d never reached the handler (%d permits)", i+1, stuck, loop.permits.Load())
		}
	}
	m := new(dns.Msg)
	m.SetQuestion("fast.test.", dns.TypeA)
	c := &dns.Client{Timeout: 5 * time.Second}
	if _, _, err := c.Exchange(m, addr); err != nil {
		t.Fatalf("fast query while %d holders are stuck: %v", stuck, err)
	}
	if got := loop.permits.Load(); got <= int32(stuck) {
		t.Errorf("%d read permits with %d holders stuck, want more", got, stuck)
	}
	// Counted before the permit is added: read the permits first.
	if added := loop.permits.Load() - permits; testutil.ToFloat64(met.UDPStuck) < float64(added) {
		t.Errorf("udp_stuck_total = %v, want at least %d (the permits added)", testutil.ToFloat64(met.UDPStuck), added)
	}
	unblock()
	wg.Wait()

	// Pretend the last shortage was long ago; traffic lets surplus
	// permits go.
	loop.pressure.Store(time.Now().Add(-2 * shrinkAfter).UnixNano())
	for i := 0; loop.permits.Load() > permits && i < 20000; i++ {
		if _, _, err := c.Exchange(m, addr); err != nil {
			t.Fatal(err)
		}
	}
	if got := loop.permits.Load(); got != permits {
		t.Errorf("%d read permits after the shortage, want back to %d", got, permits)
	}
}

// TestUDPPoolWakesLastParked: work goes to the goroutine that parked last,
// so under a steady load the ones a peak left behind stay idle and leave.
func TestUDPPoolWakesLastParked(t *testing.T) {
	l := &udpLoop{stop: make(chan struct{})}
	l.spareIdle.Store(int64(time.Hour))
	l.readers.Store(2)
	type result struct {
		j  udpJob
		ok bool
	}
	first, second := make(chan result, 1), make(chan result, 1)
	firstIdle := time.NewTimer(time.Hour)
	parkIn := func(out chan<- result, idle *time.Timer) {
		j, ok := l.park(make(chan udpJob, 1), idle)
		out <- result{j, ok}
	}
	parkedCount := func() int {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.parked)
	}
	waitParked := func(n int) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); parkedCount() < n; {
			if time.Now().After(deadline) {
				t.Fatalf("%d goroutines parked, want %d", parkedCount(), n)
			}
			runtime.Gosched()
		}
	}
	go parkIn(first, firstIdle)
	waitParked(1)
	go parkIn(second, time.NewTimer(time.Hour))
	waitParked(2)

	work := []udpPacket{{data: []byte("x")}}
	l.dispatch(udpJob{pkts: work})
	r := <-second
	if !r.ok || len(r.j.pkts) != 1 {
		t.Fatalf("last parked got %+v, want the job", r)
	}
	// The first one found no work; it leaves when told to stop (as when
	// its idle timer fires: the same path).
	close(l.stop)
	if r := <-first; r.ok {
		t.Fatalf("first parked got %+v, want to leave", r)
	}
	if n, p := l.readers.Load(), parkedCount(); n != 1 || p != 0 {
		t.Errorf("after the idle one left: %d goroutines, %d parked; want 1, 0", n, p)
	}
}

// TestUDPBatchSlowQueryDoesNotDelayOthers: queries that arrive together
// are read in one batch (usually); when one of them waits on an
// "upstream" (calling query.BeforeWait, as the cache does), the others are
// answered while it still waits: those after it by the goroutine that takes
// the read permit, and those before it, whose replies go along with the
// permit, with them, or, when the slow one was the last of the batch, by
// that goroutine before it waits for the socket.
func TestUDPBatchSlowQueryDoesNotDelayOthers(t *testing.T) {
	const fast = 20
	for _, slowAt := range []int{0, fast / 2, fast} {
		t.Run(fmt.Sprintf("slow_at_%d", slowAt), func(t *testing.T) {
			s, unblock := startSlowServer(t, nil)
			conn, err := net.Dial("udp", s.Addrs()[0].String())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			for i := range fast + 1 {
				m := new(dns.Msg)
				if i == slowAt {
					m.SetQuestion("slow.test.", dns.TypeA)
				} else {
					m.SetQuestion(fmt.Sprintf("fast%d.test.", i), dns.TypeA)
				}
				m.Id = uint16(i)
				b, err := m.Pack()
				if err != nil {
					t.Fatal(err)
				}
				if _, err := conn.Write(b); err != nil {
					t.Fatal(err)
				}
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 512)
			seen := map[uint16]bool{}
			for len(seen) < fast {
				n, err := conn.Read(buf)
				if err != nil {
					t.Fatalf("%d of %d fast answers while the slow query waits: %v", len(seen), fast, err)
				}
				r := new(dns.Msg)
				if err := r.Unpack(buf[:n]); err != nil {
					t.Fatal(err)
				}
				if r.Id == uint16(slowAt) {
					t.Fatal("the slow query was answered before it was released")
				}
				if seen[r.Id] {
					t.Fatalf("a second answer to query %d", r.Id)
				}
				seen[r.Id] = true
			}
			unblock()
			n, err := conn.Read(buf)
			if err != nil {
				t.Fatalf("slow answer after release: %v", err)
			}
			r := new(dns.Msg)
			if err := r.Unpack(buf[:n]); err != nil || r.Id != uint16(slowAt) {
				t.Fatalf("after release got id %d (%v), want the slow answer", r.Id, err)
			}
			// Every packet was accounted for: Shutdown does not wait.
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			if err := s.Shutdown(ctx); err != nil {
				t.Errorf("Shutdown: %v", err)
			}
		})
	}
}

// shutdownAtCleanup has cleanup call release, then shut s down. Bounded: a
// server that lost track of a packet must fail the test, not hang it.
func shutdownAtCleanup(t *testing.T, s *Server, release func()) {
	t.Cleanup(func() {
		release()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
}

// startSlowServer starts a UDP+TCP server on loopback whose handler answers
// "slow.test." only once unblock is called: like a cache miss, it calls
// query.BeforeWait first, then signals arrived (when not nil). Everything
// else is answered at once. Cleanup unblocks before shutting down, which
// waits for the slow queries.
func startSlowServer(t *testing.T, arrived chan<- struct{}) (s *Server, unblock func()) {
	t.Helper()
	release := make(chan struct{})
	unblock = sync.OnceFunc(func() { close(release) })
	h := HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		if req.Msg.Question[0].Name == "slow.test." {
			query.BeforeWait(ctx) // as the cache does before an upstream exchange
			if arrived != nil {
				arrived <- struct{}{}
			}
			<-release
		}
		return rcodeReply(req.Msg, dns.RcodeSuccess), nil
	})
	s = NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}}, h, nil, nil, nil, nil)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	shutdownAtCleanup(t, s, unblock)
	return s, unblock
}

// TestStallJudge drives the watcher's judgement tick by tick: a holder is
// stuck after stuckTicks on-time ticks without progress; a late tick (the
// process itself was not run) resets the count; after stuckBackstop
// without progress it is stuck however late the ticks came.
func TestStallJudge(t *testing.T) {
	type tick struct {
		after   time.Duration // since the previous tick
		served  uint64
		busy    int32
		permits int32
		want    bool
	}
	const p = watchTick
	// A stage spinning on the only P: every tick comes 2p after the last.
	var spinning []tick
	for elapsed := 2 * p; elapsed <= stuckBackstop; elapsed += 2 * p {
		spinning = append(spinning, tick{2 * p, 5, 1, 1, elapsed == stuckBackstop})
	}
	spinning = append(spinning, tick{2 * p, 5, 1, 1, false}) // starts over
	tests := []struct {
		name   string
		period time.Duration // the ticker's; watchTick when 0
		ticks  []tick
	}{
		{"blocked holder", 0, []tick{{p, 5, 1, 1, false}, {p, 5, 1, 1, true}, {p, 5, 1, 1, false}, {p, 5, 1, 1, true}}},
		{"progress resets", 0, []tick{{p, 5, 1, 1, false}, {p, 6, 1, 1, false}, {p, 6, 1, 1, false}, {p, 6, 1, 1, true}}},
		{"late tick after a stall says nothing", 0, []tick{{p, 5, 1, 1, false}, {8 * p, 5, 1, 1, false}, {p, 9, 1, 1, false}}},
		{"late tick resets the count", 0, []tick{{p, 5, 1, 1, false}, {2 * p, 5, 1, 1, false}, {p, 5, 1, 1, false}, {p, 5, 1, 1, true}}},
		{"slightly late is on time", 0, []tick{{p, 5, 1, 1, false}, {p + p/2, 5, 1, 1, true}}},
		{"a free holder", 0, []tick{{p, 5, 1, 2, false}, {p, 5, 1, 2, false}, {p, 5, 2, 2, false}, {p, 5, 2, 2, true}}},
		{"idle", 0, []tick{{p, 5, 0, 1, false}, {p, 5, 0, 1, false}, {p, 5, 0, 1, false}}},
		{"at the cap", 0, []tick{{p, 5, maxPermits, maxPermits, false}, {p, 5, maxPermits, maxPermits, false}}},
		{"no permits", 0, []tick{{p, 5, 0, 0, false}, {p, 5, 0, 0, false}}},
		{"idle period ticks are on time", idleWatchTick, []tick{{idleWatchTick, 5, 1, 1, false}, {idleWatchTick, 5, 1, 1, true}}},
		{"idle period, later still", idleWatchTick, []tick{{idleWatchTick, 5, 1, 1, false}, {2 * idleWatchTick, 5, 1, 1, false}}},
		{"spinning stage: backstop", 0, spinning},
		{"stall longer than the backstop", 0, []tick{{stuckBackstop + p, 5, 1, 1, true}, {p, 5, 1, 1, false}, {p, 5, 1, 1, true}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := time.Unix(1000, 0)
			period := cmp.Or(tt.period, watchTick)
			j := stallJudge{last: 5, prev: now, since: now, tick: period}
			for i, tk := range tt.ticks {
				now = now.Add(tk.after)
				if got := j.stuck(now, tk.served, tk.busy, tk.permits); got != tk.want {
					t.Fatalf("tick %d (%+v): stuck = %v, want %v", i, tk, got, tk.want)
				}
			}
		})
	}
}

// probeCtx is a context that reports, on reached, when Done is first
// asked for: Shutdown asks once it waits for the queries in flight.
type probeCtx struct {
	context.Context
	once    sync.Once
	reached chan struct{}
}

func (c *probeCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.reached) })
	return c.Context.Done()
}

// TestShutdownAnswersReadBatch: the UDP queries Shutdown finds already
// read are answered before it closes the sockets, including the rest of a
// recvmmsg batch not yet handed to ServeDNS. Shutdown used to wait only
// for the queries inside ServeDNS: the rest of the batch then waited
// behind Shutdown's write lock and was served after the socket closed.
//
// All packets wait in the socket before the listener's only read permit
// reads them, so they are one batch. In it, "wait" calls BeforeWait (as a
// cache miss does: the permit and the rest of the batch pass to another
// goroutine) and blocks; "hold" blocks holding the permit; both are
// released only once Shutdown waits. "fast" is answered at once, "garbage"
// is not a DNS message and gets no reply.
func TestShutdownAnswersReadBatch(t *testing.T) {
	for _, tc := range []struct {
		name    string
		packets []string
	}{
		{"rest_behind_passed_permit", []string{"wait", "hold", "fast"}},
		{"rest_behind_holder", []string{"hold", "fast", "fast"}},
		{"garbage_in_batch", []string{"wait", "garbage", "hold", "fast", "garbage", "fast"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			releaseWait, releaseHold := make(chan struct{}), make(chan struct{})
			held := make(chan struct{})
			var mu sync.Mutex
			afterStop := 0 // queries that reached the handler once Shutdown had begun
			var s *Server
			h := HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
				mu.Lock()
				if s.stopping.Load() {
					afterStop++
				}
				mu.Unlock()
				switch req.Msg.Question[0].Name[:4] {
				case "wait":
					query.BeforeWait(ctx)
					<-releaseWait
				case "hold":
					close(held)
					<-releaseHold
				}
				return rcodeReply(req.Msg, dns.RcodeSuccess), nil
			})
			s = NewServer(ServerConfig{}, h, nil, NewMetrics(prometheus.NewRegistry()), nil, nil)
			uc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			client, err := net.DialUDP("udp", nil, uc.LocalAddr().(*net.UDPAddr))
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			want := map[string]bool{}
			for i, p := range tc.packets {
				wire := []byte("garbage, not a DNS message")
				if p != "garbage" {
					name := fmt.Sprintf("%s%d.test.", p, i)
					want[name] = true
					m := new(dns.Msg)
					m.SetQuestion(name, dns.TypeA)
					if wire, err = m.Pack(); err != nil {
						t.Fatal(err)
					}
				}
				// On loopback the datagram is in the server's socket
				// buffer when Write returns.
				if _, err := client.Write(wire); err != nil {
					t.Fatal(err)
				}
			}
			loop := newUDPLoop(s, uc)
			loop.min = 1 // one reader: the packets are one batch
			s.mu.Lock()
			s.udpConns = append(s.udpConns, uc)
			s.loops = append(s.loops, loop)
			s.mu.Unlock()
			loop.start()

			select {
			case <-held:
			case <-time.After(10 * time.Second):
				t.Fatal("the hold query never reached the handler")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			probe := &probeCtx{Context: ctx, reached: make(chan struct{})}
			shutdownDone := make(chan error, 1)
			go func() { shutdownDone <- s.Shutdown(probe) }()
			select {
			case <-probe.reached:
			case err := <-shutdownDone:
				t.Fatalf("Shutdown returned (%v) with queries in flight", err)
			}
			close(releaseHold)
			close(releaseWait)
			if err := <-shutdownDone; err != nil {
				t.Fatalf("Shutdown: %v", err)
			}

			got := map[string]bool{}
			_ = client.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 4096)
			for len(got) < len(want) {
				n, err := client.Read(buf)
				if err != nil {
					break
				}
				r := new(dns.Msg)
				if r.Unpack(buf[:n]) == nil && len(r.Question) == 1 {
					got[r.Question[0].Name] = true
				}
			}
			for name := range want {
				if !got[name] {
					t.Errorf("%s was read before Shutdown but never answered (answered: %v)", name, got)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if afterStop == 0 {
				t.Error("no query of the batch was served after Shutdown began: the test tested nothing")
			}
		})
	}
}

// TestUDPHoldBound: replies queued in a batch's send batch leave once they
// have waited udpMaxHold, not only at the end of the batch. A batch of 30
// slow queries (300 µs of stage each) and a last one that blocks (without
// BeforeWait) gets at least 8 replies out while the last one blocks; with
// the replies held for the whole batch, none would arrive.
func TestUDPHoldBound(t *testing.T) {
	holdArrived, gateArrived := make(chan struct{}), make(chan struct{})
	hold, gate := make(chan struct{}), make(chan struct{})
	h := HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
		switch name := req.Msg.Question[0].Name; {
		case name == "hold.test.":
			close(holdArrived)
			<-hold
		case name == "gate.test.":
			close(gateArrived)
			<-gate
		default:
			time.Sleep(300 * time.Microsecond) // a slow stage, holding its permit
		}
		return rcodeReply(req.Msg, dns.RcodeSuccess), nil
	})
	s := NewServer(ServerConfig{Listen: []string{"127.0.0.1:0"}}, h, nil, nil, nil, nil)
	if err := s.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	releaseAll := sync.OnceFunc(func() { close(gate) })
	t.Cleanup(func() { releaseAll(); _ = s.Shutdown(context.Background()) })
	conn, err := net.Dial("udp", s.Addrs()[0].String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	send := func(name string, id uint16) {
		b := wireQuery(t, name, dns.TypeA, func(m *dns.Msg) { m.Id = id })
		if _, err := conn.Write(b); err != nil {
			t.Fatal(err)
		}
	}
	// With the reader held, the next queries queue up in the socket and
	// are read as one batch once it is free.
	send("hold.test.", 1)
	<-holdArrived
	const slow = 30
	for i := range slow {
		send(fmt.Sprintf("slow%d.test.", i), uint16(100+i))
	}
	send("gate.test.", 2)
	close(hold)
	select {
	case <-gateArrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the blocking query never reached the stage")
	}
	got := 0
	buf := make([]byte, 512)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	for got < 8 {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("%d slow replies arrived while the last query of their batch blocked, want at least 8: %v", got, err)
		}
		var r dns.Msg
		if r.Unpack(buf[:n]) == nil && r.Id >= 100 {
			got++
		}
	}
}
