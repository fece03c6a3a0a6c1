package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestRTTEstimator(t *testing.T) {
	ms := time.Millisecond
	tests := []struct {
		name    string
		samples []time.Duration
		backoff []time.Duration // after the samples
		floor   time.Duration   // 0: defaultMinRTO
		want    time.Duration
	}{
		{name: "no_sample", want: initialRTO},
		// First sample r: SRTT r, RTTVAR r/2, RTO 3r.
		{name: "first_sample", samples: []time.Duration{200 * ms}, want: 600 * ms},
		{name: "fast_upstream_floor", samples: []time.Duration{ms, ms, ms}, want: defaultMinRTO},
		// upstream.udp_retransmit_min raises the floor, under every rule.
		{name: "raised_floor", samples: []time.Duration{ms}, floor: 300 * ms, want: 300 * ms},
		{name: "raised_floor_before_any_sample", floor: 500 * ms, want: 500 * ms},
		{name: "raised_floor_over_backoff", backoff: []time.Duration{200 * ms}, floor: 300 * ms, want: 300 * ms},
		// 100 then 200: RTTVAR 50*3/4+100/4 = 62.5, SRTT 100*7/8+200/8 = 112.5.
		{name: "jitter_widens", samples: []time.Duration{100 * ms, 200 * ms}, want: 112500*time.Microsecond + 4*62500*time.Microsecond},
		// A retransmission's doubled RTO is kept until the next sample.
		{name: "backoff_kept", samples: []time.Duration{ms}, backoff: []time.Duration{400 * ms}, want: 400 * ms},
		{name: "backoff_before_any_sample", backoff: []time.Duration{752 * ms}, want: 752 * ms},
		{name: "backoff_only_grows", samples: []time.Duration{ms}, backoff: []time.Duration{400 * ms, 200 * ms}, want: 400 * ms},
		{name: "backoff_bounded", backoff: []time.Duration{time.Hour}, want: maxRTO},
	}
	t.Run("sample_ends_backoff", func(t *testing.T) {
		var e rttEstimator
		e.backedOff(time.Second)
		e.sample(ms)
		if got := e.rto(defaultMinRTO); got != defaultMinRTO {
			t.Errorf("rto after a backoff and a 1 ms sample = %v, want %v", got, defaultMinRTO)
		}
	})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var e rttEstimator
			for _, s := range tc.samples {
				e.sample(s)
			}
			for _, b := range tc.backoff {
				e.backedOff(b)
			}
			floor := tc.floor
			if floor == 0 {
				floor = defaultMinRTO
			}
			if got := e.rto(floor); got != tc.want {
				t.Errorf("rto after %v = %v, want %v", tc.samples, got, tc.want)
			}
		})
	}
}

// idCounter counts the datagrams an upstream received per query ID.
type idCounter struct {
	mu  sync.Mutex
	ids map[uint16]int
	all int
}

func (c *idCounter) add(id uint16) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ids == nil {
		c.ids = map[uint16]int{}
	}
	c.ids[id]++
	c.all++
	return c.ids[id]
}

func (c *idCounter) total() (datagrams, ids int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.all, len(c.ids)
}

// TestUDP_retransmission: a query whose datagram is lost is sent again on
// the same socket with the same ID within the try, and answered; a silent
// upstream gets copies until the try ends; when both copies are answered,
// the first reply is the answer; the socket is not pooled again, so the
// other reply never meets a later query.
func TestUDP_retransmission(t *testing.T) {
	tests := []struct {
		name string
		// replies: how many replies the upstream sends when it receives
		// the n-th copy (1-based) of a query.
		replies  func(n int) int
		timeout  time.Duration
		off      bool // Options.RetransmitMin < 0
		wantErr  bool
		wantSent int // copies of the first query the upstream received
	}{
		{name: "first_copy_lost", replies: func(n int) int { return min(n-1, 1) }, timeout: 2 * time.Second, wantSent: 2},
		{name: "two_copies_lost", replies: func(n int) int { return max(n-2, 0) }, timeout: 2 * time.Second, wantSent: 3},
		// initialRTO 376 ms, then 752: copies at 0 and 0.376 s; the next
		// would be at 1.128 s, after the 1 s try.
		{name: "silent_until_the_try_ends", replies: func(int) int { return 0 }, timeout: time.Second, wantErr: true, wantSent: 2},
		// upstream.udp_retransmit_min: 0s: one copy per try, as before.
		{name: "retransmission_off", replies: func(int) int { return 0 }, timeout: time.Second, off: true, wantErr: true, wantSent: 1},
		// A slow upstream: the first copy's reply comes after the
		// retransmission, and the second copy is answered too.
		{name: "both_copies_answered", replies: func(n int) int { return 2 * (n - 1) }, timeout: 2 * time.Second, wantSent: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var seen idCounter
			pr := newPortRecorder(t, func(_ int, q *dns.Msg) [][]byte {
				b := pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))
				if q.Question[0].Name == "second.example.org." {
					return [][]byte{pack(t, reply(q, dns.RcodeSuccess, "192.0.2.2"))}
				}
				var out [][]byte
				for range tc.replies(seen.add(q.Id)) {
					out = append(out, b)
				}
				return out
			})
			m := NewMetrics(nil)
			opts := Options{Timeout: tc.timeout, SocketLifetime: time.Minute, Metrics: m}
			if tc.off {
				opts.RetransmitMin = -1
			}
			u := mustNew(t, "udp://"+pr.addr, opts)
			r, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
			switch {
			case tc.wantErr:
				wantErrIs(t, err, context.DeadlineExceeded)
			case err != nil:
				t.Fatalf("exchange: %v", err)
			default:
				if got := r.Answer[0].(*dns.A).A.String(); got != "192.0.2.1" {
					t.Errorf("answer %s", got)
				}
			}
			if got, ids := seen.total(); got != tc.wantSent || ids != 1 {
				t.Errorf("upstream received %d copies of the query with %d IDs, want %d with one", got, ids, tc.wantSent)
			}
			if got := testutil.ToFloat64(m.Retransmits.WithLabelValues(u.String())); int(got) != tc.wantSent-1 {
				t.Errorf("udp_retransmits_total = %v, want %d", got, tc.wantSent-1)
			}
			if tc.wantErr {
				return
			}
			// A socket that sent copies is not reused: a reply to a copy
			// may still come, and must not meet a later query there.
			r, err = u.Exchange(t.Context(), newQuery("second.example.org.", dns.TypeA))
			if err != nil || r.Answer[0].(*dns.A).A.String() != "192.0.2.2" {
				t.Fatalf("second query: %v %v", r, err)
			}
			p := pr.seen()
			for _, port := range p[:tc.wantSent] {
				if port != p[0] {
					t.Errorf("source ports %v: the copies of the first query came from more than one socket", p)
				}
			}
			if p[len(p)-1] == p[0] {
				t.Errorf("source ports %v: the socket that sent copies was reused", p)
			}
			if got := testutil.ToFloat64(m.InvalidResponses.WithLabelValues(u.String())); got != 0 {
				t.Errorf("invalid_responses_total = %v, want 0", got)
			}
		})
	}
}

// TestUDP_reusedSocketAfterItsDeadline: a pooled socket keeps the read
// deadline of its last exchange (its next retransmission time); once that
// has passed, the next exchange on it must still drain and answer.
func TestUDP_reusedSocketAfterItsDeadline(t *testing.T) {
	pr := newPortRecorder(t, func(_ int, q *dns.Msg) [][]byte {
		return [][]byte{pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))}
	})
	u := newUDP("udp://"+pr.addr, netip.MustParseAddrPort(pr.addr), Options{Timeout: time.Second, SocketLifetime: time.Minute})
	t.Cleanup(func() { _ = u.Close() })
	for i := range 2 {
		if _, err := u.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
			t.Fatalf("query %d: %v", i, err)
		}
		// What the passing of time does to the idle socket's deadline.
		u.mu.Lock()
		for _, s := range u.idle {
			_ = s.c.SetReadDeadline(time.Unix(1, 0))
		}
		u.mu.Unlock()
	}
	if p := pr.seen(); len(p) != 2 || p[0] != p[1] {
		t.Errorf("source ports %v, want both queries from one reused socket", p)
	}
}

// TestUDP_backoffKeptAcrossQueries: an upstream whose round trip grows past
// the RTO (a recursive resolver's cache misses after fast cache hits) gets
// a copy of its first slow queries, but the doubled RTO is kept until a
// query sent once is answered, so the estimator learns the new round trip
// and the next queries are sent once. (Without the kept backoff, every
// query got a copy: replies to copies are no samples.)
func TestUDP_backoffKeptAcrossQueries(t *testing.T) {
	t.Parallel()
	const slow, queries = 250 * time.Millisecond, 8
	var late sync.WaitGroup
	t.Cleanup(late.Wait) // after the server's cleanup: its socket is closed
	var seen idCounter
	addr := rawUDPServe(t, func(pc net.PacketConn, q *dns.Msg, from net.Addr) {
		seen.add(q.Id)
		b := pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))
		if q.Question[0].Name == "fast.example." {
			_, _ = pc.WriteTo(b, from)
			return
		}
		late.Go(func() {
			time.Sleep(slow) // the upstream's round trip, not synchronisation
			_, _ = pc.WriteTo(b, from)
		})
	})
	m := NewMetrics(nil)
	u := mustNew(t, "udp://"+addr, Options{Timeout: 2 * time.Second, Metrics: m})
	if _, err := u.Exchange(t.Context(), newQuery("fast.example.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	for i := range queries {
		if _, err := u.Exchange(t.Context(), newQuery("slow.example.", dns.TypeA)); err != nil {
			t.Fatalf("slow query %d: %v", i, err)
		}
	}
	// RTO 100 ms after the fast sample: the first slow query is sent at 0
	// and 100 ms, the second at 0 and 200 ms (the kept backoff), the third
	// with 400 ms, once, and its 250 ms sample raises the estimate above
	// the round trip.
	if got := testutil.ToFloat64(m.Retransmits.WithLabelValues(u.String())); got > 2 {
		t.Errorf("%v retransmissions for %d queries with a steady %v round trip, want at most 2", got, queries, slow)
	}
	if d, _ := seen.total(); d > queries+3 {
		t.Errorf("upstream received %d datagrams for %d queries", d, queries+1)
	}
}

// TestUDP_cancelWhileWaiting: an exchange cancelled before its deadline
// ends with context.Canceled and its socket is not reused, whether the
// cancellation comes while its read polls ctx, after it set its hook, or
// under a ctx marked for early cancellation (the hook from the start).
// Retransmissions are pushed past the try (a kept 10 s backoff), so a read
// that missed the cancellation would wait out the 10 s try: the 5 s bound
// is a liveness bound, not a performance figure.
func TestUDP_cancelWhileWaiting(t *testing.T) {
	tests := []struct {
		name       string
		cancelPoll time.Duration
		marked     bool // withEarlyCancel
		waitHook   bool // cancel once the hook is set, else once the query arrived
	}{
		{name: "while_polling", cancelPoll: defaultCancelPoll},
		{name: "after_the_hook", cancelPoll: time.Millisecond, waitHook: true},
		// Marked: the hook comes at once, though no poll would ever wake.
		{name: "marked_early", cancelPoll: time.Hour, marked: true, waitHook: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			arrived := make(chan struct{})
			var once sync.Once
			pr := newPortRecorder(t, func(_ int, q *dns.Msg) [][]byte {
				if q.Question[0].Name != "silent.example." {
					return [][]byte{pack(t, reply(q, dns.RcodeSuccess, "192.0.2.1"))}
				}
				once.Do(func() { close(arrived) })
				return nil
			})
			u := newUDP("udp://"+pr.addr, netip.MustParseAddrPort(pr.addr), Options{Timeout: 10 * time.Second, SocketLifetime: time.Minute})
			t.Cleanup(func() { _ = u.Close() })
			u.cancelPoll = tc.cancelPoll
			u.rtt.backedOff(maxRTO)
			hooked := make(chan struct{}, 1)
			u.onHook = func() { hooked <- struct{}{} }
			ctx, cancel := context.WithCancel(t.Context())
			if tc.marked {
				ctx = withEarlyCancel(ctx)
			}
			errc := make(chan error, 1)
			go func() {
				_, err := u.Exchange(ctx, newQuery("silent.example.", dns.TypeA))
				errc <- err
			}()
			<-arrived
			if tc.waitHook {
				select {
				case <-hooked:
				case <-time.After(5 * time.Second):
					t.Fatal("the exchange set no cancellation hook")
				}
			}
			cancel()
			select {
			case err := <-errc:
				if !errors.Is(err, context.Canceled) {
					t.Fatalf("cancelled exchange: %v, want context.Canceled", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the cancelled exchange still waits for its reply")
			}
			if _, err := u.Exchange(t.Context(), newQuery("next.example.", dns.TypeA)); err != nil {
				t.Fatal(err)
			}
			if p := pr.seen(); p[len(p)-1] == p[0] {
				t.Errorf("source ports %v: the cancelled exchange's socket was reused", p)
			}
		})
	}
}
