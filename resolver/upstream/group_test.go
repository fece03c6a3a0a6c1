package upstream

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

// fixedClock is an injected clock that tests step explicitly.
type fixedClock struct{ t atomic.Int64 }

func newClock() *fixedClock {
	c := &fixedClock{}
	c.t.Store(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC).UnixNano())
	return c
}
func (c *fixedClock) Now() time.Time       { return time.Unix(0, c.t.Load()).UTC() }
func (c *fixedClock) Step(d time.Duration) { c.t.Add(int64(d)) }
func (c *fixedClock) Is(t time.Time) bool  { return t.Equal(c.Now()) }
func (c *fixedClock) String() string       { return c.Now().String() }

// newTestGroup builds a Group whose probe loop never fires on its own
// (tests call ProbeNow) and closes it at cleanup.
func newTestGroup(tb testing.TB, ups []Upstream, cfg GroupConfig, m *Metrics, clock *fixedClock) *Group {
	tb.Helper()
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = time.Hour
	}
	var now func() time.Time
	if clock != nil {
		now = clock.Now
	}
	g, err := NewGroup(ups, cfg, m, testLogger(tb), now)
	if err != nil {
		tb.Fatalf("NewGroup: %v", err)
	}
	tb.Cleanup(func() {
		if err := g.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return g
}

// countingServer answers with rcode (and an A record for NOERROR) and
// counts queries.
func countingServer(tb testing.TB, rcode int, ip string, n *atomic.Int64) string {
	tb.Helper()
	return "udp://" + startDNS(tb, func(w dns.ResponseWriter, r *dns.Msg) {
		n.Add(1)
		_ = w.WriteMsg(reply(r, rcode, ip))
	}).Addr
}

func TestNewGroup_invalid(t *testing.T) {
	up := mustNew(t, "udp://127.0.0.1:1", Options{})
	tests := []struct {
		name string
		ups  []Upstream
		cfg  GroupConfig
		want string
	}{
		{name: "no_upstreams", ups: nil, want: "no upstreams"},
		{name: "unknown_strategy", ups: []Upstream{up}, cfg: GroupConfig{Strategy: "roundrobin"}, want: `unknown strategy "roundrobin"`},
		{name: "duplicate", ups: []Upstream{up, up}, want: "duplicate upstream"},
		{name: "negative_timeout", ups: []Upstream{up}, cfg: GroupConfig{Timeout: -time.Second}, want: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, err := NewGroup(tc.ups, tc.cfg, nil, nil, nil)
			if err == nil {
				g.Close()
				t.Fatalf("want error containing %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
		})
	}
}

// TestGroup_failover: the first upstream never answers or answers
// SERVFAIL/REFUSED; the second answers.
func TestGroup_failover(t *testing.T) {
	tests := []struct {
		name     string
		first    func(t *testing.T) string
		wantKind string
		// wantFails: a timeout counts toward marking the upstream down;
		// a SERVFAIL or REFUSED answer proves it alive and does not.
		wantFails int
	}{
		{name: "silent", first: func(t *testing.T) string { return "udp://" + dropUDP(t) }, wantKind: "timeout", wantFails: 1},
		{name: "servfail", first: func(t *testing.T) string { return "udp://" + startDNS(t, answer(dns.RcodeServerFailure, "")).Addr }, wantKind: "servfail"},
		{name: "refused", first: func(t *testing.T) string { return "udp://" + startDNS(t, answer(dns.RcodeRefused, "")).Addr }, wantKind: "refused"},
		// FORMERR/NOTIMP to our well-formed query: the client must not get
		// them; often sent without the question, which used to be
		// discarded as invalid until the try timed out.
		{name: "formerr", first: func(t *testing.T) string { return "udp://" + startDNS(t, answer(dns.RcodeFormatError, "")).Addr }, wantKind: "rejected"},
		{name: "formerr_no_question", first: func(t *testing.T) string { return "udp://" + startDNS(t, answerNoQuestion(dns.RcodeFormatError)).Addr }, wantKind: "rejected"},
		{name: "notimp_no_question_tcp", first: func(t *testing.T) string {
			return "tcp://" + startDNS(t, answerNoQuestion(dns.RcodeNotImplemented)).Addr
		}, wantKind: "rejected"},
		{name: "refused_no_question", first: func(t *testing.T) string { return "udp://" + startDNS(t, answerNoQuestion(dns.RcodeRefused)).Addr }, wantKind: "refused"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMetrics(nil)
			var n atomic.Int64
			first := mustNew(t, tc.first(t), Options{Timeout: 100 * time.Millisecond, Metrics: m})
			second := mustNew(t, countingServer(t, dns.RcodeSuccess, "192.0.2.2", &n), Options{Metrics: m})
			g := newTestGroup(t, []Upstream{first, second}, GroupConfig{}, m, nil)
			q := newQuery("example.org.", dns.TypeA)
			r, name, err := g.Exchange(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if name != second.String() || r.Answer[0].(*dns.A).A.String() != "192.0.2.2" || r.Id != q.Id {
				t.Errorf("answered by %s with %v", name, r.Answer)
			}
			if got := testutil.ToFloat64(m.Errors.WithLabelValues(first.String(), tc.wantKind)); got != 1 {
				t.Errorf("errors_total{kind=%s} = %v, want 1", tc.wantKind, got)
			}
			if got := testutil.ToFloat64(m.Requests.WithLabelValues(second.String(), "NOERROR")); got != 1 {
				t.Errorf("requests_total{second,NOERROR} = %v, want 1", got)
			}
			st := g.Status()
			if !st[0].Healthy || st[0].ConsecutiveFails != tc.wantFails || st[1].ConsecutiveFails != 0 {
				t.Errorf("status = %+v", st)
			}
		})
	}
}

func TestGroup_parallelFirstGoodWins(t *testing.T) {
	tests := []struct {
		name string
		slow func(t *testing.T) string // the upstream that must not win
	}{
		{name: "other_never_answers", slow: func(t *testing.T) string { return "udp://" + dropUDP(t) }},
		{name: "other_servfails", slow: func(t *testing.T) string {
			return "udp://" + startDNS(t, answer(dns.RcodeServerFailure, "")).Addr
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var n atomic.Int64
			bad := mustNew(t, tc.slow(t), Options{Timeout: 5 * time.Second})
			good := mustNew(t, countingServer(t, dns.RcodeSuccess, "192.0.2.2", &n), Options{})
			g := newTestGroup(t, []Upstream{bad, good}, GroupConfig{Strategy: StrategyParallel, Timeout: 5 * time.Second}, nil, nil)
			q := newQuery("example.org.", dns.TypeA)
			q.SetEdns0(4096, true) // packed concurrently by both upstreams: -race checks the OPT is not shared
			start := time.Now()
			r, name, err := g.Exchange(t.Context(), q)
			if err != nil {
				t.Fatal(err)
			}
			if name != good.String() || len(r.Answer) != 1 {
				t.Errorf("answered by %s with %v, want %s", name, r.Answer, good)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v: the winner should not wait for the loser", d)
			}
		})
	}
}

func TestGroup_randomSpreads(t *testing.T) {
	const queries = 300
	counts := make([]atomic.Int64, 3)
	var ups []Upstream
	for i := range counts {
		ups = append(ups, mustNew(t, countingServer(t, dns.RcodeSuccess, "192.0.2.1", &counts[i]), Options{}))
	}
	g := newTestGroup(t, ups, GroupConfig{Strategy: StrategyRandom}, nil, nil)
	q := newQuery("example.org.", dns.TypeA)
	for range queries {
		if _, _, err := g.Exchange(t.Context(), q); err != nil {
			t.Fatal(err)
		}
	}
	for i := range counts {
		// Expected 100 each; below 50 is ~1e-9 likely for a fair pick.
		if c := counts[i].Load(); c < 50 {
			t.Errorf("upstream %d got %d of %d queries", i, c, queries)
		}
	}
}

func TestGroup_allFail(t *testing.T) {
	tests := []struct {
		name         string
		strategy     string
		addr         func(t *testing.T) string
		wantDeadline bool
	}{
		{name: "silent_failover", strategy: StrategyFailover, addr: func(t *testing.T) string { return "udp://" + dropUDP(t) }, wantDeadline: true},
		{name: "silent_parallel", strategy: StrategyParallel, addr: func(t *testing.T) string { return "udp://" + dropUDP(t) }, wantDeadline: true},
		{name: "servfail_failover", strategy: StrategyFailover, addr: func(t *testing.T) string {
			return "udp://" + startDNS(t, answer(dns.RcodeServerFailure, "")).Addr
		}},
		{name: "servfail_random", strategy: StrategyRandom, addr: func(t *testing.T) string {
			return "udp://" + startDNS(t, answer(dns.RcodeServerFailure, "")).Addr
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Upstream timeouts far above the group budget: the budget
			// must bound the whole call.
			ups := []Upstream{
				mustNew(t, tc.addr(t), Options{Timeout: 10 * time.Second}),
				mustNew(t, tc.addr(t), Options{Timeout: 10 * time.Second}),
			}
			g := newTestGroup(t, ups, GroupConfig{Strategy: tc.strategy, Timeout: 200 * time.Millisecond}, nil, nil)
			start := time.Now()
			r, _, err := g.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
			if r != nil {
				t.Errorf("got reply %v", r)
			}
			wantErrIs(t, err, ErrAllFailed)
			if tc.wantDeadline {
				wantErrIs(t, err, context.DeadlineExceeded)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v, want within the 200ms budget", d)
			}
		})
	}
}

func TestGroup_callerCancelNotCountedAsFailure(t *testing.T) {
	up := mustNew(t, "udp://"+dropUDP(t), Options{Timeout: 10 * time.Second})
	g := newTestGroup(t, []Upstream{up}, GroupConfig{MaxFails: 1, Timeout: 10 * time.Second}, nil, nil)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, _, err := g.Exchange(ctx, newQuery("example.org.", dns.TypeA))
	wantErrIs(t, err, context.Canceled)
	if !g.Healthy() || g.Status()[0].ConsecutiveFails != 0 {
		t.Errorf("caller cancellation was held against the upstream: %+v", g.Status())
	}
}

// TestGroup_healthDownAndProbe: MaxFails failures mark an upstream down,
// down upstreams are skipped, all down fails fast, and a successful probe
// brings it back.
func TestGroup_healthDownAndProbe(t *testing.T) {
	var serving atomic.Bool // false: no answer (timeout)
	var queries atomic.Int64
	srv := startDNS(t, func(w dns.ResponseWriter, r *dns.Msg) {
		queries.Add(1)
		if !serving.Load() {
			return
		}
		_ = w.WriteMsg(reply(r, dns.RcodeSuccess, ""))
	})
	m := NewMetrics(nil)
	clock := newClock()
	up := mustNew(t, "udp://"+srv.Addr, Options{Timeout: 100 * time.Millisecond})
	g := newTestGroup(t, []Upstream{up}, GroupConfig{MaxFails: 2, Timeout: 5 * time.Second}, m, clock)
	healthy := m.Healthy.WithLabelValues(up.String())
	q := newQuery("example.org.", dns.TypeA)

	for i := range 2 {
		_, _, err := g.Exchange(t.Context(), q)
		wantErrIs(t, err, ErrAllFailed)
		if wantUp := i == 0; g.Healthy() != wantUp {
			t.Fatalf("after %d failures Healthy() = %v", i+1, g.Healthy())
		}
	}
	st := g.Status()[0]
	if st.Healthy || st.ConsecutiveFails != 2 || !clock.Is(st.Since) || testutil.ToFloat64(healthy) != 0 {
		t.Fatalf("status %+v, gauge %v: want down since %v", st, testutil.ToFloat64(healthy), clock)
	}

	// All down: fail fast without sending anything.
	sent := queries.Load()
	start := time.Now()
	_, _, err := g.Exchange(t.Context(), q)
	wantErrIs(t, err, ErrAllFailed)
	if d := time.Since(start); d > 100*time.Millisecond || queries.Load() != sent {
		t.Errorf("all-down exchange took %v and sent %d queries, want immediate and none", d, queries.Load()-sent)
	}

	// A failing probe keeps it down; a successful one brings it back.
	g.ProbeNow(t.Context())
	if g.Healthy() || queries.Load() != sent+1 {
		t.Fatalf("after failing probe: healthy=%v probes=%d", g.Healthy(), queries.Load()-sent)
	}
	serving.Store(true)
	clock.Step(time.Minute)
	g.ProbeNow(t.Context())
	st = g.Status()[0]
	if !st.Healthy || st.ConsecutiveFails != 0 || !clock.Is(st.Since) || testutil.ToFloat64(healthy) != 1 {
		t.Fatalf("after good probe: status %+v gauge %v", st, testutil.ToFloat64(healthy))
	}
	if _, _, err := g.Exchange(t.Context(), q); err != nil {
		t.Fatalf("exchange after recovery: %v", err)
	}
	// ProbeNow on a healthy group sends nothing.
	sent = queries.Load()
	g.ProbeNow(t.Context())
	if queries.Load() != sent {
		t.Errorf("probe sent to a healthy upstream")
	}
}

// TestGroup_failuresInFlightCountOnce: on the last upstream up, queries
// that fail together (a burst of datagrams lost in one full receive buffer)
// are one event: they count as one failure, so a lone upstream stays up;
// failures of queries sent after the last counted one count each, and
// MaxFails of those mark it down.
func TestGroup_failuresInFlightCountOnce(t *testing.T) {
	b := &blockingUpstream{name: "lossy", entered: make(chan struct{}, 8), release: make(chan struct{}), fail: true}
	clock := newClock()
	m := NewMetrics(nil)
	g := newTestGroup(t, []Upstream{b}, GroupConfig{MaxFails: 3, Timeout: time.Hour}, m, clock)
	q := newQuery("example.org.", dns.TypeA)

	// Eight queries in flight at once, all failing after a step of the
	// clock (their try timeout).
	const burst = 8
	for _, err := range failTogether(t, g, b, clock, burst) {
		wantErrIs(t, err, ErrAllFailed)
	}
	if got := testutil.ToFloat64(m.Errors.WithLabelValues("lossy", "network")); got != burst {
		t.Errorf("errors_total = %v, want every failure counted (%d)", got, burst)
	}
	if st := g.Status()[0]; !st.Healthy || st.ConsecutiveFails != 1 {
		t.Fatalf("after a burst of %d failures in flight together: %+v, want up with 1 consecutive failure", burst, st)
	}

	// Failures of queries sent after the last counted one count each.
	for i := 2; i <= 3; i++ {
		clock.Step(time.Second)
		_, _, err := g.Exchange(t.Context(), q)
		<-b.entered
		wantErrIs(t, err, ErrAllFailed)
		if st := g.Status()[0]; st.ConsecutiveFails != i || st.Healthy != (i < 3) {
			t.Fatalf("after failure %d sent after the last counted one: %+v", i, st)
		}
	}
}

// failTogether starts n exchanges on g, waits until all n are parked in
// b, steps clock by a second (their try timeout) and releases them; it
// returns their errors.
func failTogether(t *testing.T, g *Group, b *blockingUpstream, clock *fixedClock, n int) []error {
	t.Helper()
	errs := make(chan error, n)
	for range n {
		go func() {
			_, _, err := g.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
			errs <- err
		}()
	}
	for range n {
		<-b.entered
	}
	clock.Step(time.Second)
	close(b.release)
	out := make([]error, n)
	for i := range out {
		out[i] = <-errs
	}
	return out
}

// TestGroup_burstMarksDownWhileAnotherIsUp: the rule above protects only
// the last upstream up. With another one up, failures in flight together
// count each, so a primary that fails most queries under load is marked
// down at once and the queries go to the secondary without waiting.
func TestGroup_burstMarksDownWhileAnotherIsUp(t *testing.T) {
	const burst = 8
	lossy := &blockingUpstream{name: "lossy", entered: make(chan struct{}, burst), release: make(chan struct{}), fail: true}
	good := &blockingUpstream{name: "good", entered: make(chan struct{}, burst+1), release: make(chan struct{})}
	close(good.release)
	clock := newClock()
	g := newTestGroup(t, []Upstream{lossy, good}, GroupConfig{MaxFails: 3, Timeout: time.Hour}, nil, clock)
	for _, err := range failTogether(t, g, lossy, clock, burst) {
		if err != nil {
			t.Errorf("exchange with a healthy secondary: %v", err)
		}
	}
	if st := g.Status(); st[0].Healthy || st[0].ConsecutiveFails != burst || !st[1].Healthy {
		t.Fatalf("after a burst of %d failures on the primary: %+v, want it down and the secondary up", burst, st)
	}
}

// blockingUpstream parks every Exchange until release is closed or ctx
// ends; entered receives one value per call. Released, it answers, or with
// fail set fails with a network error.
type blockingUpstream struct {
	name    string
	entered chan struct{}
	release chan struct{}
	fail    bool
	calls   atomic.Int64
}

func (b *blockingUpstream) String() string { return b.name }
func (b *blockingUpstream) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	b.calls.Add(1)
	b.entered <- struct{}{}
	select {
	case <-b.release:
		if b.fail {
			return nil, errors.New("read: connection refused")
		}
		r := new(dns.Msg)
		r.SetReply(m)
		return r, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestGroup_singleProbeInFlight: a probe round while another probe of the
// same upstream is still running sends nothing.
func TestGroup_singleProbeInFlight(t *testing.T) {
	b := &blockingUpstream{name: "blocking", entered: make(chan struct{}, 4), release: make(chan struct{})}
	g := newTestGroup(t, []Upstream{b}, GroupConfig{MaxFails: 1, Timeout: 10 * time.Second}, nil, nil)
	g.failed(g.members[0], kindTimeout, g.now()) // mark down
	done := make(chan struct{})
	go func() { g.ProbeNow(t.Context()); close(done) }()
	<-b.entered
	g.ProbeNow(t.Context()) // returns at once: probe in flight
	if got := b.calls.Load(); got != 1 {
		t.Errorf("%d probes in flight, want 1", got)
	}
	close(b.release)
	<-done
	if !g.Healthy() {
		t.Errorf("not healthy after the probe answered")
	}
}

func TestGroup_maxConcurrentOverload(t *testing.T) {
	for _, strategy := range []string{StrategyFailover, StrategyParallel} {
		t.Run(strategy, func(t *testing.T) {
			b := &blockingUpstream{name: "blocking", entered: make(chan struct{}, 4), release: make(chan struct{})}
			m := NewMetrics(nil)
			g := newTestGroup(t, []Upstream{b}, GroupConfig{Strategy: strategy, MaxConcurrent: 1, Timeout: 10 * time.Second}, m, nil)
			q := newQuery("example.org.", dns.TypeA)
			errc := make(chan error, 1)
			go func() { _, _, err := g.Exchange(t.Context(), q); errc <- err }()
			<-b.entered
			start := time.Now()
			_, _, err := g.Exchange(t.Context(), q)
			wantErrIs(t, err, ErrOverloaded)
			if d := time.Since(start); d > 100*time.Millisecond {
				t.Errorf("overload took %v, want immediate", d)
			}
			if got := testutil.ToFloat64(m.Overloaded); got != 1 {
				t.Errorf("overloaded_total = %v, want 1", got)
			}
			close(b.release)
			if err := <-errc; err != nil {
				t.Errorf("first exchange: %v", err)
			}
			if _, _, err := g.Exchange(t.Context(), q); err != nil {
				t.Errorf("exchange after the slot freed: %v", err)
			}
			if !g.Healthy() {
				t.Errorf("overload marked the upstream down")
			}
		})
	}
}

func TestMetrics_lint(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	m := NewMetrics(reg)
	var n atomic.Int64
	up := mustNew(t, countingServer(t, dns.RcodeNameError, "", &n), Options{Metrics: m})
	g := newTestGroup(t, []Upstream{up}, GroupConfig{}, m, nil)
	if _, _, err := g.Exchange(t.Context(), newQuery("nx.example.", dns.TypeA)); err != nil {
		t.Fatal(err)
	}
	if got := testutil.ToFloat64(m.Requests.WithLabelValues(up.String(), "NXDOMAIN")); got != 1 {
		t.Errorf("requests_total{NXDOMAIN} = %v, want 1", got)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
	want := map[string]bool{
		"dnsvalve_upstream_requests_total": true, "dnsvalve_upstream_errors_total": true,
		"dnsvalve_upstream_request_duration_seconds": true, "dnsvalve_upstream_healthy": true,
		"dnsvalve_upstream_invalid_responses_total": true, "dnsvalve_upstream_overloaded_total": true,
	}
	for _, mf := range mfs {
		delete(want, mf.GetName())
	}
	for name := range want {
		t.Errorf("metric %s not exported", name)
	}
}

func BenchmarkUDPExchange(b *testing.B) {
	srv := startDNS(b, answer(dns.RcodeSuccess, "192.0.2.1"))
	u := mustNew(b, "udp://"+srv.Addr, Options{})
	q := newQuery("www.example.org.", dns.TypeA)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := u.Exchange(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGroupExchange(b *testing.B) {
	srv := startDNS(b, answer(dns.RcodeSuccess, "192.0.2.1"))
	up := mustNew(b, "udp://"+srv.Addr, Options{})
	g := newTestGroup(b, []Upstream{up}, GroupConfig{}, NewMetrics(nil), nil)
	q := newQuery("www.example.org.", dns.TypeA)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := g.Exchange(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

// TestGroup_rejectionFailsOver: an upstream's FORMERR or NOTIMP to a
// query it got without EDNS0 (nothing to fall back from) is not the
// client's answer: the group fails over to the next upstream.
func TestGroup_rejectionFailsOver(t *testing.T) {
	for _, rcode := range []int{dns.RcodeFormatError, dns.RcodeNotImplemented} {
		t.Run(dns.RcodeToString[rcode], func(t *testing.T) {
			var n atomic.Int64
			m := NewMetrics(nil)
			first := mustNew(t, "tcp://"+startDNS(t, answer(rcode, "")).Addr, Options{})
			second := mustNew(t, countingServer(t, dns.RcodeSuccess, "192.0.2.2", &n), Options{})
			g := newTestGroup(t, []Upstream{first, second}, GroupConfig{}, m, nil)
			r, name, err := g.Exchange(t.Context(), newQuery("example.org.", dns.TypeA))
			if err != nil || r.Rcode != dns.RcodeSuccess || name != second.String() || n.Load() != 1 {
				t.Fatalf("%v from %s (err %v, second asked %d times); want NOERROR from %s", r, name, err, n.Load(), second)
			}
			if got := testutil.ToFloat64(m.Errors.WithLabelValues(first.String(), "rejected")); got != 1 {
				t.Errorf("errors_total{kind=rejected} = %v, want 1", got)
			}
		})
	}
}

// earlyProbe answers every query and sends on got whether its ctx was
// marked for early cancellation.
type earlyProbe struct {
	name string
	got  chan bool
}

func (p *earlyProbe) String() string { return p.name }
func (p *earlyProbe) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
	p.got <- cancelsEarly(ctx)
	r := new(dns.Msg)
	r.SetReply(m)
	return r, nil
}

// TestGroup_parallelMarksEarlyCancel: the parallel strategy, which cancels
// its losers, marks their ctx so a UDP exchange sets its cancellation hook
// at once and a loser gives its slot back without waiting for a poll; the
// sequential strategies, whose ctx ends only at its deadline, do not.
func TestGroup_parallelMarksEarlyCancel(t *testing.T) {
	for _, strategy := range []string{StrategyFailover, StrategyRandom, StrategyParallel} {
		t.Run(strategy, func(t *testing.T) {
			got := make(chan bool, 2)
			a, b := &earlyProbe{name: "a", got: got}, &earlyProbe{name: "b", got: got}
			g := newTestGroup(t, []Upstream{a, b}, GroupConfig{Strategy: strategy}, nil, nil)
			if _, _, err := g.Exchange(t.Context(), newQuery("example.org.", dns.TypeA)); err != nil {
				t.Fatal(err)
			}
			parallel := strategy == StrategyParallel
			calls := 1 // the first upstream asked answers
			if parallel {
				calls = 2 // both are asked at once
			}
			for range calls {
				if marked := <-got; marked != parallel {
					t.Errorf("exchange marked for early cancellation: %v, want %v", marked, parallel)
				}
			}
		})
	}
}
