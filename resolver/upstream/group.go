package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Strategies for GroupConfig.Strategy.
const (
	StrategyFailover = "failover"
	StrategyRandom   = "random"
	StrategyParallel = "parallel"
)

// GroupConfig configures a Group. Zero values mean the documented defaults.
type GroupConfig struct {
	// Strategy: "failover" (default; healthy upstreams in order, first
	// usable answer wins), "random" (a random healthy upstream first, then
	// the others in order), "parallel" (all healthy upstreams at once,
	// first usable answer wins).
	Strategy string
	// Timeout is the total budget of one Group.Exchange; default 2s. Each
	// upstream also applies its own Options.Timeout, so with failover a
	// per-upstream timeout below this budget leaves time for the next one.
	Timeout time.Duration
	// MaxFails is the number of consecutive failures after which an
	// upstream is marked down; default 3. On the last upstream up,
	// failures of queries that were already in flight when the last
	// counted failure was seen count once with it, as Unbound's
	// infrastructure cache counts the timeouts of one round trip: a burst
	// of datagrams lost together (a full receive buffer) is one event, and
	// marking the last upstream down fails every query until a probe
	// brings it back. While another upstream is up, every failure counts,
	// so a flaky one is skipped at once.
	MaxFails int
	// ProbeInterval is how often down upstreams are probed; default 1s.
	ProbeInterval time.Duration
	// ProbeZone is what a probe asks for: "ZONE SOA", for upstreams that
	// answer only for their zones (a conditional group: a corporate
	// server without recursion refuses the root); empty means ". NS".
	ProbeZone string
	// OnUp, when set, is called (on the marking goroutine) each time an
	// upstream marked down is marked up again: the cache then forgets the
	// failures it remembers from the outage.
	OnUp func()
	// MaxConcurrent caps concurrent upstream queries across the group;
	// 0 means unlimited. Queries over the cap fail with ErrOverloaded.
	MaxConcurrent int
}

// UpstreamStatus is a snapshot of one upstream's health.
type UpstreamStatus struct {
	Name             string    `json:"name"`
	Healthy          bool      `json:"healthy"`
	ConsecutiveFails int       `json:"consecutive_fails"`
	Since            time.Time `json:"since,omitzero"` // last up/down change; zero if never changed
	// EDNSOffUntil is when EDNS0 is tried again on an upstream that
	// rejected it (edns.go); zero while it is queried with EDNS0.
	EDNSOffUntil time.Time `json:"edns_off_until,omitzero"`
	// Zones are the zones a conditional upstream answers for (Router);
	// empty for the default upstreams.
	Zones []string `json:"zones,omitempty"`
}

// failure kinds, the values of the errors_total "kind" label.
const (
	kindTimeout = iota
	kindNetwork
	kindInvalid
	kindServfail
	kindRefused
	kindRejected // FORMERR or NOTIMP: the upstream rejected our query
	numKinds
)

var kindNames = [numKinds]string{"timeout", "network", "invalid", "servfail", "refused", "rejected"}

// errLost cancels the losers of a parallel exchange; their failures are not
// held against them.
var errLost = errors.New("another upstream answered first")

// member is an upstream with its health and pre-resolved metric children.
type member struct {
	up   Upstream
	name string

	mu    sync.Mutex
	fails int
	down  bool
	since time.Time
	// failedAt is when the last counted failure was seen: a failed
	// query sent before it is the same event and does not count again.
	failedAt time.Time

	isDown  atomic.Bool // mirrors down for lock-free reads on the hot path
	probing atomic.Bool // a probe is in flight

	udp           bool         // udp://: adds an OPT record to queries without one; replies can be forged off-path
	ednsOffUntil  atomic.Int64 // unix nanos until which the upstream is queried without EDNS0 (edns.go)
	ednsFallbacks prometheus.Counter

	duration prometheus.Observer
	healthy  prometheus.Gauge
	errs     [numKinds]prometheus.Counter
	rcodes   [dns.RcodeNotAuth + 1]prometheus.Counter
	requests *prometheus.CounterVec
}

func (mb *member) countRcode(rcode int) {
	if rcode >= 0 && rcode < len(mb.rcodes) {
		mb.rcodes[rcode].Inc()
		return
	}
	mb.requests.WithLabelValues(mb.name, rcodeName(rcode)).Inc()
}

func rcodeName(rcode int) string {
	if s := query.RcodeString(rcode); s != "" {
		return s
	}
	return "OTHER"
}

// Group sends queries to a set of upstreams with a strategy, tracks their
// health and probes the ones marked down. It is safe for concurrent use.
type Group struct {
	members []*member
	cfg     GroupConfig
	metrics *Metrics
	log     *slog.Logger
	now     func() time.Time
	rnd     *randSource
	sem     chan struct{} // nil when MaxConcurrent == 0

	stop      context.CancelFunc
	done      sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// NewGroup builds a Group over ups (at least one; names, i.e. String(),
// must be unique) and starts its probe loop; call Close to stop it. m may
// be nil (metrics are then not exported), logger may be nil (discard), now
// may be nil (time.Now); now is used for durations and status timestamps.
func NewGroup(ups []Upstream, cfg GroupConfig, m *Metrics, logger *slog.Logger, now func() time.Time) (*Group, error) {
	if len(ups) == 0 {
		return nil, errors.New("upstream group: no upstreams")
	}
	switch cfg.Strategy {
	case "":
		cfg.Strategy = StrategyFailover
	case StrategyFailover, StrategyRandom, StrategyParallel:
	default:
		return nil, fmt.Errorf("upstream group: unknown strategy %q (want failover, random or parallel)", cfg.Strategy)
	}
	if cfg.Timeout < 0 || cfg.MaxFails < 0 || cfg.ProbeInterval < 0 || cfg.MaxConcurrent < 0 {
		return nil, errors.New("upstream group: negative timeout, max fails, probe interval or max concurrent")
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.MaxFails == 0 {
		cfg.MaxFails = 3
	}
	if cfg.ProbeInterval == 0 {
		cfg.ProbeInterval = time.Second
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if now == nil {
		now = time.Now
	}
	g := &Group{cfg: cfg, metrics: m, log: logger, now: now, rnd: newRandSource()}
	if cfg.MaxConcurrent > 0 {
		g.sem = make(chan struct{}, cfg.MaxConcurrent)
	}
	seen := make(map[string]bool, len(ups))
	for _, up := range ups {
		if up == nil {
			return nil, errors.New("upstream group: nil upstream")
		}
		name := up.String()
		if seen[name] {
			return nil, fmt.Errorf("upstream group: duplicate upstream %q", name)
		}
		seen[name] = true
		mb := &member{
			up:       up,
			name:     name,
			duration: m.Duration.WithLabelValues(name),
			healthy:  m.Healthy.WithLabelValues(name),
			requests: m.Requests,
		}
		_, mb.udp = up.(*udpUpstream)
		mb.ednsFallbacks = m.EDNSFallbacks.WithLabelValues(name)
		for k := range mb.errs {
			mb.errs[k] = m.Errors.WithLabelValues(name, kindNames[k])
		}
		for rc := range mb.rcodes {
			mb.rcodes[rc] = m.Requests.WithLabelValues(name, rcodeName(rc))
		}
		m.InvalidResponses.WithLabelValues(name) // export 0 from the start
		mb.healthy.Set(1)
		g.members = append(g.members, mb)
	}
	ctx, cancel := context.WithCancel(context.Background())
	g.stop = cancel
	g.done.Go(func() { g.probeLoop(ctx) })
	return g, nil
}

// Exchange sends m to the group's upstreams according to the strategy and
// returns the first usable reply and the name of the upstream that gave
// it. SERVFAIL and REFUSED replies count as failures. The whole call stays
// within GroupConfig.Timeout and honours ctx. When every upstream is marked
// down it fails at once with an error wrapping ErrAllFailed; when the
// concurrency cap is reached, with one wrapping ErrOverloaded. m is not
// modified; the reply is owned by the caller.
func (g *Group) Exchange(ctx context.Context, m *dns.Msg) (resp *dns.Msg, upstream string, err error) {
	ctx, cancel := withTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	var arr [8]*member
	healthy := arr[:0]
	for _, mb := range g.members {
		if !mb.isDown.Load() {
			healthy = append(healthy, mb)
		}
	}
	if len(healthy) == 0 {
		return nil, "", fmt.Errorf("upstream: all %d upstreams are down: %w", len(g.members), ErrAllFailed)
	}
	switch g.cfg.Strategy {
	case StrategyParallel:
		return g.parallel(ctx, m, healthy)
	case StrategyRandom:
		return g.sequential(ctx, m, healthy, int(g.rnd.Uint64()%uint64(len(healthy))))
	}
	return g.sequential(ctx, m, healthy, 0)
}

func (g *Group) sequential(ctx context.Context, m *dns.Msg, healthy []*member, start int) (*dns.Msg, string, error) {
	var lastErr error
	for i := range healthy {
		if ctx.Err() != nil {
			break
		}
		mb := healthy[(start+i)%len(healthy)]
		if !g.acquire() {
			return nil, "", g.overloaded()
		}
		r, err := g.try(ctx, mb, m)
		g.release()
		if err == nil {
			return r, mb.name, nil
		}
		lastErr = err
	}
	return nil, "", g.allFailed(ctx, lastErr)
}

type result struct {
	r   *dns.Msg
	mb  *member
	err error
}

func (g *Group) parallel(ctx context.Context, m *dns.Msg, healthy []*member) (*dns.Msg, string, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(errLost)
	// The losers must give their upstream slot back at once.
	ctx = withEarlyCancel(ctx)
	ch := make(chan result, len(healthy)) // buffered: losers never block
	launched := 0
	for _, mb := range healthy {
		if !g.acquire() {
			break
		}
		launched++
		go func() {
			defer g.release()
			r, err := g.try(ctx, mb, m)
			ch <- result{r, mb, err}
		}()
	}
	if launched == 0 {
		return nil, "", g.overloaded()
	}
	var lastErr error
	for range launched {
		select {
		case res := <-ch:
			if res.err == nil {
				return res.r, res.mb.name, nil
			}
			lastErr = res.err
		case <-ctx.Done(): // an Upstream that ignores ctx must not hang us
			return nil, "", g.allFailed(ctx, lastErr)
		}
	}
	return nil, "", g.allFailed(ctx, lastErr)
}

func (g *Group) allFailed(ctx context.Context, lastErr error) error {
	if lastErr == nil {
		lastErr = ctx.Err()
	}
	return fmt.Errorf("upstream: %w: %w", ErrAllFailed, lastErr)
}

func (g *Group) overloaded() error {
	g.metrics.Overloaded.Inc()
	return fmt.Errorf("upstream: %d queries in flight: %w", g.cfg.MaxConcurrent, ErrOverloaded)
}

func (g *Group) acquire() bool {
	if g.sem == nil {
		return true
	}
	select {
	case g.sem <- struct{}{}:
		return true
	default:
		return false
	}
}

func (g *Group) release() {
	if g.sem != nil {
		<-g.sem
	}
}

// try sends m to one upstream and does the accounting: metrics, and health
// unless the query was cancelled by the caller or lost a parallel race. A
// query with EDNS0 that the upstream rejects as a server without EDNS0
// would is sent once more without it (exchangeEDNS).
func (g *Group) try(ctx context.Context, mb *member, m *dns.Msg) (*dns.Msg, error) {
	r, err := g.exchangeEDNS(ctx, mb, m, func(ctx context.Context, m *dns.Msg) (*dns.Msg, error) {
		return g.attempt(ctx, mb, m)
	})
	if err != nil {
		return nil, err
	}
	// SERVFAIL and REFUSED fail over to the next upstream but do not count
	// toward marking this one down: the answer proves it is alive, and a
	// client could otherwise take every upstream down with a few queries
	// for a name that legitimately fails (a DNSSEC-bogus domain).
	switch r.Rcode {
	case dns.RcodeServerFailure:
		mb.errs[kindServfail].Inc()
		g.succeeded(mb)
		return nil, fmt.Errorf("upstream %s: answered SERVFAIL", mb.name)
	case dns.RcodeRefused:
		mb.errs[kindRefused].Inc()
		g.succeeded(mb)
		return nil, fmt.Errorf("upstream %s: answered REFUSED", mb.name)
	case dns.RcodeFormatError, dns.RcodeNotImplemented:
		// Our query is well formed (and was asked again without EDNS0,
		// unless the rejection carried an OPT record): the upstream cannot
		// take it. The client's query was fine, so it must not get the
		// FORMERR: fail over as for SERVFAIL.
		mb.errs[kindRejected].Inc()
		g.succeeded(mb)
		return nil, fmt.Errorf("upstream %s: answered %s", mb.name, rcodeName(r.Rcode))
	}
	g.succeeded(mb)
	return r, nil
}

// attempt sends m to mb once and counts the reply's rcode and the time
// taken (each attempt of a fallback counts); a failure counts against mb's
// health unless the caller cancelled.
func (g *Group) attempt(ctx context.Context, mb *member, m *dns.Msg) (*dns.Msg, error) {
	start := g.now()
	r, err := mb.up.Exchange(ctx, m)
	if err != nil && ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return nil, err // cancelled: not the upstream's fault
	}
	mb.duration.Observe(g.now().Sub(start).Seconds())
	if err != nil {
		g.failed(mb, classify(err), start)
		return nil, err
	}
	mb.countRcode(r.Rcode)
	return r, nil
}

func classify(err error) int {
	switch {
	case errors.Is(err, ErrInvalidResponse):
		return kindInvalid
	case isTimeout(err):
		return kindTimeout
	}
	return kindNetwork
}

// failed counts a failure of kind of a query sent to mb at sent. On the
// last upstream up, it counts toward marking mb down only when the query
// was sent after the last counted failure was seen (GroupConfig.MaxFails).
func (g *Group) failed(mb *member, kind int, sent time.Time) {
	mb.errs[kind].Inc()
	mb.mu.Lock()
	if mb.fails > 0 && sent.Before(mb.failedAt) && g.lastUp(mb) {
		mb.mu.Unlock()
		return
	}
	mb.fails++
	mb.failedAt = g.now()
	markDown := !mb.down && mb.fails >= g.cfg.MaxFails
	if markDown {
		mb.down, mb.since = true, g.now()
		mb.isDown.Store(true)
		mb.healthy.Set(0)
	}
	fails := mb.fails
	mb.mu.Unlock()
	if markDown {
		g.log.Warn("upstream marked down", "upstream", mb.name, "consecutive_fails", fails, "last_error", kindNames[kind])
	}
}

// lastUp reports whether every upstream but mb is marked down.
func (g *Group) lastUp(mb *member) bool {
	for _, o := range g.members {
		if o != mb && !o.isDown.Load() {
			return false
		}
	}
	return true
}

func (g *Group) succeeded(mb *member) {
	mb.mu.Lock()
	mb.fails = 0
	mb.mu.Unlock()
}

// markUp clears the failure count and, if it was down, marks mb up.
func (g *Group) markUp(mb *member) {
	mb.mu.Lock()
	wasDown := mb.down
	mb.fails = 0
	if wasDown {
		mb.down, mb.since = false, g.now()
		mb.isDown.Store(false)
		mb.healthy.Set(1)
	}
	mb.mu.Unlock()
	if wasDown {
		g.log.Info("upstream back up", "upstream", mb.name)
		if g.cfg.OnUp != nil {
			g.cfg.OnUp()
		}
	}
}

// Healthy reports whether at least one upstream is up.
func (g *Group) Healthy() bool {
	for _, mb := range g.members {
		if !mb.isDown.Load() {
			return true
		}
	}
	return false
}

// Status returns a snapshot of every upstream's health, in configured order.
func (g *Group) Status() []UpstreamStatus {
	out := make([]UpstreamStatus, 0, len(g.members))
	now := g.now()
	for _, mb := range g.members {
		mb.mu.Lock()
		st := UpstreamStatus{Name: mb.name, Healthy: !mb.down, ConsecutiveFails: mb.fails, Since: mb.since}
		mb.mu.Unlock()
		if u := mb.ednsOffUntil.Load(); u != 0 && now.UnixNano() < u {
			st.EDNSOffUntil = time.Unix(0, u).UTC()
		}
		out = append(out, st)
	}
	return out
}

func (g *Group) probeLoop(ctx context.Context) {
	t := time.NewTicker(g.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			g.ProbeNow(ctx)
		}
	}
}

// ProbeNow runs one probe round: every upstream marked down that has no
// probe in flight is sent ". IN NS" (or "ProbeZone IN SOA"); a usable reply (not SERVFAIL,
// REFUSED, FORMERR or NOTIMP) marks it up. It returns when the probes it started finished.
// The probe loop calls it every ProbeInterval; tests call it directly.
func (g *Group) ProbeNow(ctx context.Context) {
	var wg sync.WaitGroup
	for _, mb := range g.members {
		if !mb.isDown.Load() || !mb.probing.CompareAndSwap(false, true) {
			continue
		}
		wg.Go(func() {
			defer mb.probing.Store(false)
			g.probe(ctx, mb)
		})
	}
	wg.Wait()
}

func (g *Group) probe(ctx context.Context, mb *member) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.Timeout)
	defer cancel()
	q := new(dns.Msg)
	if g.cfg.ProbeZone != "" {
		q.SetQuestion(dns.Fqdn(g.cfg.ProbeZone), dns.TypeSOA)
	} else {
		q.SetQuestion(".", dns.TypeNS)
	}
	r, err := g.exchangeEDNS(ctx, mb, q, mb.up.Exchange)
	if err != nil {
		g.log.Debug("upstream probe failed", "upstream", mb.name, "error", err)
		return
	}
	if rejects(r.Rcode) {
		g.log.Debug("upstream probe failed", "upstream", mb.name, "rcode", rcodeName(r.Rcode))
		return
	}
	g.markUp(mb)
}

// Close stops the probe loop and closes the upstreams' pooled connections.
// The Group must not be used afterwards. Close is idempotent.
func (g *Group) Close() error {
	g.closeOnce.Do(func() {
		g.stop()
		g.done.Wait()
		var errs []error
		for _, mb := range g.members {
			if c, ok := mb.up.(io.Closer); ok {
				if err := c.Close(); err != nil {
					errs = append(errs, fmt.Errorf("close %s: %w", mb.name, err))
				}
			}
		}
		g.closeErr = errors.Join(errs...)
	})
	return g.closeErr
}
