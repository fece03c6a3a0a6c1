// Package cache is dnsvalve's TTL-aware answer cache with the forwarding step
// folded in: a miss is forwarded through an Exchanger with identical
// in-flight queries coalesced, popular entries are refreshed in the
// background shortly before they expire (prefetch), and expired entries are
// served when upstreams fail (serve-stale, RFC 8767).
//
// Entries are keyed by {lowercased qname, qtype, qclass, DO, CD}, held in a
// size-bounded LRU (github.com/hashicorp/golang-lru/v2) and kept there past
// expiry so they can be served stale. Only upstream answers are stored, after
// dropping answer records outside the question's CNAME/DNAME chain; SERVFAIL,
// REFUSED, truncated and mismatched replies never are; neither are negative
// answers without a SOA (RFC 2308 gives no TTL for them) nor TTL-0 answers.
// Prefetch starts when a hit finds a popular entry (Config.PrefetchHits) with
// less than 10% of its TTL left, Unbound's rule. The cache is client-agnostic:
// policy runs before it.
//
// A hit allocates exactly one object, the reply (plus one for the key when
// the question name has upper-case letters).
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Sentinel errors, wrapped with context; check with errors.Is.
var (
	// ErrConfig reports an invalid Config.
	ErrConfig = errors.New("invalid cache config")
	// ErrBadRequest reports a request the cache does not forward: not
	// exactly one question, an opcode other than QUERY, or a question
	// query.Unservable names.
	ErrBadRequest = errors.New("request must be one question the resolver forwards")
	// ErrMismatch reports an upstream reply whose question differs from the
	// query's (never cached, never answered).
	ErrMismatch = errors.New("upstream reply question mismatch")
	// ErrNoResponse reports an Exchanger that returned neither reply nor error.
	ErrNoResponse = errors.New("upstream returned no reply")
	// ErrClosed reports a miss after Close.
	ErrClosed = errors.New("cache closed")
	// ErrPanic reports an upstream exchange that panicked.
	ErrPanic = errors.New("upstream exchange panicked")
)

// Config configures a Cache. DefaultConfig returns the documented defaults;
// in a Config passed to New a zero Size, MaxTTL, NegativeTTL, PrefetchHits or
// UpstreamTimeout means its default, while zero ServeStale and false Prefetch
// disable those features. Negative durations are rejected.
type Config struct {
	Size        int           // max entries (default 100000); bounded by entries
	MinTTL      time.Duration // clamp (default 0)
	MaxTTL      time.Duration // clamp (default 24h)
	NegativeTTL time.Duration // cap for NXDOMAIN/NODATA caching (default 30m)
	// ServeStale is how long past expiry an entry may be served when
	// upstreams fail (RFC 8767); 0 disables (default 1h).
	ServeStale time.Duration
	// StaleClientTimeout is RFC 8767's client response timer: a miss that
	// has an entry it may serve stale waits this long for the upstream,
	// then gets the stale answer while the exchange goes on in the
	// background to refresh the entry. 0 waits for the upstream's outcome
	// (the answer, or its failure after UpstreamTimeout). DefaultConfig
	// sets 1.8s, the RFC's suggestion.
	StaleClientTimeout time.Duration
	// Prefetch refreshes popular entries in the background once less than
	// 10% of their TTL is left, as Unbound does (default true).
	Prefetch bool
	// PrefetchHits is how many hits within an entry's lifetime make it
	// popular enough to prefetch (default 3).
	PrefetchHits int
	// UpstreamTimeout bounds one shared upstream exchange (a coalesced miss
	// or a prefetch), which runs detached from the clients' contexts
	// (default 5s; see SetUpstreamTimeout).
	UpstreamTimeout time.Duration
	// FailureTTL is how long a failed resolution (an error, or SERVFAIL
	// from every upstream) is remembered (RFC 9520): meanwhile queries for
	// the name get the same failure at once, or a stale answer when one
	// may be served (RFC 8767's failure recheck timer), instead of asking
	// the upstreams again. 0 disables; DefaultConfig sets 5s.
	FailureTTL time.Duration
}

// Defaults.
const (
	DefaultSize               = 100000
	DefaultMaxTTL             = 24 * time.Hour
	DefaultNegativeTTL        = 30 * time.Minute
	DefaultServeStale         = time.Hour
	DefaultStaleClientTimeout = 1800 * time.Millisecond
	DefaultPrefetchHits       = 3
	DefaultUpstreamTimeout    = 5 * time.Second
	DefaultFailureTTL         = 5 * time.Second
	// MaxFailureTTL is RFC 9520's ceiling on remembering a failure.
	MaxFailureTTL = 5 * time.Minute
)

// DefaultConfig returns the default configuration.
func DefaultConfig() Config {
	return Config{
		Size:               DefaultSize,
		MaxTTL:             DefaultMaxTTL,
		NegativeTTL:        DefaultNegativeTTL,
		ServeStale:         DefaultServeStale,
		StaleClientTimeout: DefaultStaleClientTimeout,
		Prefetch:           true,
		PrefetchHits:       DefaultPrefetchHits,
		UpstreamTimeout:    DefaultUpstreamTimeout,
		FailureTTL:         DefaultFailureTTL,
	}
}

func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"min_ttl", cfg.MinTTL}, {"max_ttl", cfg.MaxTTL}, {"negative_ttl", cfg.NegativeTTL}, {"serve_stale", cfg.ServeStale}, {"stale_client_timeout", cfg.StaleClientTimeout}, {"upstream_timeout", cfg.UpstreamTimeout}, {"failure_ttl", cfg.FailureTTL}} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("%w: %s is negative (%s)", ErrConfig, d.name, d.v))
		}
	}
	if cfg.Size < 0 {
		errs = append(errs, fmt.Errorf("%w: size is negative (%d)", ErrConfig, cfg.Size))
	}
	if cfg.PrefetchHits < 0 {
		errs = append(errs, fmt.Errorf("%w: prefetch_hits is negative (%d)", ErrConfig, cfg.PrefetchHits))
	}
	if cfg.Size == 0 {
		cfg.Size = DefaultSize
	}
	if cfg.MaxTTL == 0 {
		cfg.MaxTTL = DefaultMaxTTL
	}
	if cfg.NegativeTTL == 0 {
		cfg.NegativeTTL = DefaultNegativeTTL
	}
	if cfg.PrefetchHits == 0 {
		cfg.PrefetchHits = DefaultPrefetchHits
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.MinTTL > cfg.MaxTTL {
		errs = append(errs, fmt.Errorf("%w: min_ttl %s exceeds max_ttl %s", ErrConfig, cfg.MinTTL, cfg.MaxTTL))
	}
	if cfg.FailureTTL > MaxFailureTTL {
		errs = append(errs, fmt.Errorf("%w: failure_ttl %s exceeds %s (RFC 9520)", ErrConfig, cfg.FailureTTL, MaxFailureTTL))
	}
	return cfg, errors.Join(errs...)
}

// Exchanger forwards a query upstream. It must be safe for concurrent use and
// must not modify m. It returns the reply (which the cache treats as
// read-only) and the name of the upstream that answered. *upstream.Group
// satisfies it.
type Exchanger interface {
	Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error)
}

// ExchangerFunc adapts a function to Exchanger.
type ExchangerFunc func(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error)

// Exchange calls f.
func (f ExchangerFunc) Exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	return f(ctx, m)
}

var _ Exchanger = ExchangerFunc(nil)

// Cache is a TTL-aware DNS answer cache in front of an Exchanger. It is safe
// for concurrent use. Close it to stop background work.
type Cache struct {
	cfg    Config
	next   Exchanger
	m      *Metrics
	logger *slog.Logger
	now    func() time.Time
	// upstreamTimeout is cfg.UpstreamTimeout, or what SetUpstreamTimeout
	// set since (nanoseconds).
	upstreamTimeout atomic.Int64
	// callerClock: now is time.Now, so a time the caller read from it
	// (ResolveAt) may stand in for a reading of c's own.
	callerClock bool
	lru         *lru.Cache[key, *entry]
	// failures remembers failed resolutions for FailureTTL (nil when
	// disabled), bounded like the cache (an eighth of its size, at least
	// 64).
	failures *lru.Cache[key, *failure]

	mu     sync.Mutex
	calls  map[key]*call // in-flight upstream exchanges
	closed bool
	wg     sync.WaitGroup
	// orphans are the exchanges in flight at a Purge or ForgetFailures:
	// they keep neither their answer nor their failure, since they went to
	// upstreams a reload may have replaced. Until they end they are here
	// (for Close to cancel), not in calls.
	orphans map[*call]struct{}

	// after starts the client response timer (time.After; tests stub it).
	after  func(time.Duration) <-chan time.Time
	joined func() // test hook: called each time a Resolve joins a flight
	missed func() // test hook: called after a cache miss, before the join
}

// call is one in-flight upstream exchange shared by every Resolve (and at
// most one prefetch) for its key. The fields are written before done is
// closed and read-only afterwards.
type call struct {
	done chan struct{}
	// ctx bounds the exchange (UpstreamTimeout; Close cancels it). It
	// keeps the values of the context of the Resolve that started it, not
	// its cancellation.
	ctx      context.Context
	cancel   context.CancelFunc
	e        *entry   // the stored entry, when the reply was cacheable
	resp     *dns.Msg // the uncacheable reply (read-only), when e is nil
	upstream string
	err      error
	orphaned atomic.Bool // set by a Purge or ForgetFailures during the exchange
}

// New returns a cache forwarding misses to next. m may be nil (metrics are
// then discarded), logger nil (no logs), now nil (time.Now, and ResolveAt
// may give the time instead: see there).
func New(cfg Config, next Exchanger, m *Metrics, logger *slog.Logger, now func() time.Time) (*Cache, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cache: new: %w", err)
	}
	if next == nil {
		return nil, fmt.Errorf("cache: new: %w: nil Exchanger", ErrConfig)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	callerClock := now == nil
	if now == nil {
		now = time.Now
	}
	l, err := lru.New[key, *entry](cfg.Size)
	if err != nil {
		return nil, fmt.Errorf("cache: new: %w", err)
	}
	c := &Cache{
		cfg: cfg, next: next, m: m, logger: logger, now: now, callerClock: callerClock, lru: l, after: time.After,
		calls: make(map[key]*call),
	}
	c.upstreamTimeout.Store(int64(cfg.UpstreamTimeout))
	if cfg.FailureTTL > 0 {
		if c.failures, err = lru.New[key, *failure](max(cfg.Size/8, 64)); err != nil {
			return nil, fmt.Errorf("cache: new: %w", err)
		}
	}
	return c, nil
}

// failure is a remembered failed resolution: the exchange's error, or the
// SERVFAIL reply every upstream gave.
type failure struct {
	until    time.Time
	err      error
	resp     *dns.Msg // read-only
	upstream string
}

// transient is implemented by errors of queries that never reached an
// upstream (upstream.ErrOverloaded: a local limit). They say nothing about
// the name, so they are not remembered.
type transient interface{ Transient() bool }

// rememberable reports whether the failure err (nil: a SERVFAIL reply) is
// one of the name's resolution: not a local limit, not the cancellation of
// an exchange by Close.
func rememberable(err error) bool {
	var t transient
	return !(errors.As(err, &t) && t.Transient()) && !errors.Is(err, context.Canceled)
}

// remember records cl's failure for k (no-op when disabled).
func (c *Cache) remember(k key, cl *call) {
	if c.failures == nil || !rememberable(cl.err) {
		return
	}
	c.failures.Add(k, &failure{until: c.now().Add(c.cfg.FailureTTL), err: cl.err, resp: cl.resp, upstream: cl.upstream})
}

// failed returns k's remembered failure, if it is still current at now
// (an expired one is dropped).
func (c *Cache) failed(k key, now time.Time) *failure {
	if c.failures == nil {
		return nil
	}
	f, ok := c.failures.Peek(k)
	if !ok {
		return nil
	}
	if !now.Before(f.until) {
		c.failures.Remove(k)
		return nil
	}
	return f
}

// ForgetFailures drops every remembered failure: the upstreams changed
// (a reload), so they are worth asking again. Exchanges in flight then
// remember nothing.
func (c *Cache) ForgetFailures() {
	c.forgetFlights()
	if c.failures != nil {
		c.failures.Purge()
	}
}

// CachedError is the error of a query answered with a remembered failure:
// the upstreams were not asked again. The server adds RFC 8914's EDE 13
// "Cached Error" to the failure's own.
type CachedError struct {
	Err error         // the remembered failure
	Age time.Duration // how long ago it happened
}

func (e *CachedError) Error() string {
	return fmt.Sprintf("failed %s ago (remembered for cache.failure_ttl): %v", e.Age.Round(time.Millisecond), e.Err)
}

func (e *CachedError) Unwrap() error { return e.Err }

// Resolve answers req from the cache or through next. req is owned by the
// caller and read-only. The returned message is new and owned by the caller
// (built in the Arena of ctx's ArenaSlot when it holds one: the caller's
// until it reuses that Arena):
// ID = req.Id, the question exactly as the client asked it (case preserved),
// TTLs decremented by the entry's age, and an OPT record (UDP size 1232, DO
// mirrored) only when req has one. upstream names the upstream that answered
// a miss or whose failure is remembered, "" for hits and stale answers.
//
// A miss whose upstream exchange fails (error or SERVFAIL) is answered from
// an entry expired less than ServeStale ago with TTL 30 and an Extended DNS
// Error "Stale Answer" (status CacheStale, nil error), and so is a miss with
// such an entry whose exchange takes longer than StaleClientTimeout (the
// exchange goes on and refreshes the entry). Otherwise the error is
// returned wrapped, or the SERVFAIL reply passed through. A failure is
// remembered for FailureTTL: meanwhile the question gets the stale answer
// at once, or the same failure (status CacheFailure; an error wraps it in
// a *CachedError) without a new exchange. Opcodes other than
// QUERY and questions query.Unservable names (which the server answers
// itself) fail with ErrBadRequest.
func (c *Cache) Resolve(ctx context.Context, req *dns.Msg) (resp *dns.Msg, status query.CacheStatus, upstream string, err error) {
	return c.ResolveAt(ctx, req, time.Time{})
}

// SetUpstreamTimeout changes Config.UpstreamTimeout for the exchanges
// that start from now on (d > 0; others are ignored). A server sets it to
// its upstream group's own budget: the group then finds the exchange's
// deadline within its budget and keeps the context as it is, instead of
// making a child context and timer of its own for every miss.
func (c *Cache) SetUpstreamTimeout(d time.Duration) {
	if d > 0 {
		c.upstreamTimeout.Store(int64(d))
	}
}

// UpstreamTimeout is the bound of the exchanges that start now
// (Config.UpstreamTimeout, or what SetUpstreamTimeout set since).
func (c *Cache) UpstreamTimeout() time.Duration { return time.Duration(c.upstreamTimeout.Load()) }

// ResolveAt is Resolve for a query that arrived at now (read from
// time.Now, such as query.Request.Start): a cache built on time.Now (New's
// now nil) takes it for the time of the lookup instead of reading the clock
// again, a saving on every hit. A cache given its own clock, or a zero
// now, reads its clock. An entry or failure stored by another query since
// now is seen with age 0, and expires for this query up to the time since
// now (microseconds) late.
func (c *Cache) ResolveAt(ctx context.Context, req *dns.Msg, now time.Time) (resp *dns.Msg, status query.CacheStatus, upstream string, err error) {
	if len(req.Question) != 1 {
		return nil, query.CacheNone, "", fmt.Errorf("cache: resolve: %w", ErrBadRequest)
	}
	q := &req.Question[0]
	if req.Opcode != dns.OpcodeQuery || query.Unservable(q.Qclass, q.Qtype) != "" {
		// The server answers these itself (NOTIMP; resolver.Unserved).
		return nil, query.CacheNone, "", fmt.Errorf("cache: resolve %s %s %s: %w", dns.OpcodeToString[req.Opcode], dns.Class(q.Qclass), dns.Type(q.Qtype), ErrBadRequest)
	}
	k := makeKey(req)
	slot := arenaSlot(ctx)
	if now.IsZero() || !c.callerClock {
		now = c.now()
	}
	e, found := c.lru.Get(k)
	if found && now.Before(e.expires) {
		c.m.hits.Inc()
		if c.cfg.Prefetch && e.hits.Add(1) >= int64(c.cfg.PrefetchHits) &&
			e.expires.Sub(now) < e.ttl/10 && e.prefetching.CompareAndSwap(false, true) {
			c.prefetch(ctx, k)
		}
		return reply(req, e, now.Sub(e.stored), false, slot.take()), query.CacheHit, "", nil
	}
	if f := c.failed(k, now); f != nil {
		// The upstreams failed for k moments ago: do not ask them again.
		if found && c.servableStale(e, now) {
			c.m.stale.Inc()
			c.logger.Debug("serving stale answer: the upstreams failed moments ago", "qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "expired_for", now.Sub(e.expires))
			return reply(req, e, 0, true, slot.take()), query.CacheStale, "", nil
		}
		c.m.failureHits.Inc()
		if f.err != nil {
			return nil, query.CacheFailure, f.upstream, fmt.Errorf("cache: resolve %s %s: %w",
				q.Name, dns.TypeToString[q.Qtype], &CachedError{Err: f.err, Age: max(0, c.cfg.FailureTTL-f.until.Sub(now))})
		}
		return passthrough(req, f.resp), query.CacheFailure, f.upstream, nil
	}

	query.BeforeWait(ctx)
	if c.missed != nil {
		c.missed()
	}
	cl, leader, err := c.join(ctx, k)
	// An entry that may be served stale starts the client response timer
	// (RFC 8767 section 5): the exchange then runs on its own goroutine,
	// so that it can finish, and refresh the entry, after this query has
	// had the stale answer.
	var timer <-chan time.Time // set: e may be served stale when it fires
	if err == nil && c.cfg.StaleClientTimeout > 0 && found && c.servableStale(e, now) {
		timer = c.after(c.cfg.StaleClientTimeout)
	}
	inline := leader && ctx.Done() == nil && timer == nil
	switch {
	case leader && inline:
		// A caller that cannot give up (the server passes a context that
		// is never cancelled) runs the exchange itself: its goroutine
		// already has the stack the exchange needs, and a goroutine per
		// miss spent more growing its stack than the handoff saved.
		c.run(k, cl, true, true)
	case leader:
		go c.run(k, cl, true, false)
	}
	switch {
	case err != nil:
	case inline:
		err = cl.err
	default:
		select {
		case <-cl.done:
			err = cl.err
		case <-timer:
			c.m.stale.Inc()
			c.logger.Debug("serving stale answer: upstream slower than the client response timer", "qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "timer", c.cfg.StaleClientTimeout)
			return reply(req, e, 0, true, slot.take()), query.CacheStale, "", nil
		case <-ctx.Done():
			c.m.misses.Inc()
			return nil, query.CacheMiss, "", fmt.Errorf("cache: resolve %s %s: %w", q.Name, dns.TypeToString[q.Qtype], ctx.Err())
		}
	}
	if err == nil && cl.e != nil {
		c.m.misses.Inc()
		return reply(req, cl.e, c.now().Sub(cl.e.stored), false, slot.take()), query.CacheMiss, cl.upstream, nil
	}
	if err == nil && cl.resp.Rcode != dns.RcodeServerFailure {
		c.m.misses.Inc()
		return passthrough(req, cl.resp), query.CacheMiss, cl.upstream, nil
	}
	// The upstream failed: serve stale if we may.
	if e, ok := c.lru.Peek(k); ok {
		now := c.now()
		if now.Before(e.expires) { // refreshed meanwhile by someone else
			c.m.hits.Inc()
			return reply(req, e, now.Sub(e.stored), false, slot.take()), query.CacheHit, "", nil
		}
		if c.servableStale(e, now) {
			c.m.stale.Inc()
			c.logger.Debug("serving stale answer", "qname", q.Name, "qtype", dns.TypeToString[q.Qtype], "expired_for", now.Sub(e.expires), "error", err)
			return reply(req, e, 0, true, slot.take()), query.CacheStale, "", nil
		}
	}
	c.m.misses.Inc()
	if err != nil {
		return nil, query.CacheMiss, upstreamOf(cl), fmt.Errorf("cache: resolve %s %s: %w", q.Name, dns.TypeToString[q.Qtype], err)
	}
	return passthrough(req, cl.resp), query.CacheMiss, cl.upstream, nil
}

// servableStale reports whether expired entry e may be served stale at now.
func (c *Cache) servableStale(e *entry, now time.Time) bool {
	return c.cfg.ServeStale > 0 && now.Before(e.expires.Add(c.cfg.ServeStale))
}

func upstreamOf(cl *call) string {
	if cl == nil {
		return ""
	}
	return cl.upstream
}

// join returns the in-flight exchange for k, creating one if there is
// none; leader is then true and the caller must run it (c.run). The
// exchange's context is detached from ctx's cancellation (its values are
// kept) and bounded by UpstreamTimeout, so a caller giving up does not
// fail the others.
func (c *Cache) join(ctx context.Context, k key) (cl *call, leader bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, ErrClosed
	}
	cl, ok := c.calls[k]
	if !ok {
		cl = &call{done: make(chan struct{})}
		// Detached from the caller, and without its BeforeWait hook and
		// arena slot: the exchange may run on another goroutine.
		cl.ctx, cl.cancel = context.WithTimeout(withoutArenaSlot(query.WithoutBeforeWait(context.WithoutCancel(ctx))), time.Duration(c.upstreamTimeout.Load()))
		c.calls[k] = cl
		c.wg.Add(1)
	}
	c.mu.Unlock()
	if c.joined != nil {
		c.joined()
	}
	return cl, !ok, nil
}

// run performs the upstream exchange of cl, stores a cacheable reply and
// releases the waiters. With recheck (a miss, not a prefetch) it first looks
// for a fresh entry: one stored by an exchange that ended between the
// caller's cache lookup and its join is used instead of asking again.
//
// A panic in the exchange fails the flight (ErrPanic), so that its waiters
// and later queries for k are not left waiting for good; inline (on the
// caller's goroutine) it then goes on up to the server, which answers
// SERVFAIL, and on a goroutine of its own it is logged.
func (c *Cache) run(k key, cl *call, recheck, inline bool) {
	defer c.wg.Done()
	defer cl.cancel()
	defer func() {
		p := recover() // never nil for a panic (since Go 1.21, panic(nil) too)
		if p == nil {
			return
		}
		cl.err = fmt.Errorf("%w: %v", ErrPanic, p)
		c.end(k, cl)
		if inline {
			panic(p)
		}
		c.logger.Error("upstream exchange panicked", "qname", k.name, "qtype", dns.TypeToString[k.qtype], "panic", p, "stack", string(debug.Stack()))
	}()
	if recheck {
		if e, ok := c.lru.Peek(k); ok && c.now().Before(e.expires) {
			cl.e = e
			c.end(k, cl)
			return
		}
	}
	m := upstreamQuery(k)
	resp, up, err := c.next.Exchange(cl.ctx, m)
	cl.upstream = up
	switch {
	case err != nil:
		cl.err = err
	case resp == nil:
		cl.err = ErrNoResponse
	case !sameQuestion(resp, m):
		cl.err = ErrMismatch
	default:
		e, reason := c.newEntry(k, resp, c.now())
		if e == nil {
			c.logger.Debug("not caching reply", "qname", k.name, "qtype", dns.TypeToString[k.qtype], "rcode", query.RcodeString(resp.Rcode), "reason", reason)
			cl.resp = resp
			break
		}
		cl.e = e
		if cl.orphaned.Load() {
			break // its waiters get it; the cache does not keep it
		}
		if c.lru.Add(k, e) {
			c.m.evictions.Inc()
		}
		c.m.entries.Set(float64(c.lru.Len()))
	}
	switch {
	case cl.err != nil || cl.resp != nil && cl.resp.Rcode == dns.RcodeServerFailure:
		// A prefetch's failure is not remembered: its entry is still
		// fresh, and after expiry the next query should try again.
		if recheck && !cl.orphaned.Load() {
			c.remember(k, cl)
		}
	case c.failures != nil:
		c.failures.Remove(k)
	}
	c.end(k, cl)
}

// end ends cl's flight: later queries for k start a new one, and its
// waiters read its result. (After a Purge, a later flight for k may have
// taken its place already.)
func (c *Cache) end(k key, cl *call) {
	c.mu.Lock()
	if c.calls[k] == cl {
		delete(c.calls, k)
	}
	delete(c.orphans, cl)
	c.mu.Unlock()
	close(cl.done)
}

// forgetFlights orphans the exchanges in flight: they finish for their
// waiters, but keep nothing, and new queries do not join them.
func (c *Cache) forgetFlights() {
	c.mu.Lock()
	for k, cl := range c.calls {
		if c.orphans == nil {
			c.orphans = map[*call]struct{}{}
		}
		cl.orphaned.Store(true)
		c.orphans[cl] = struct{}{}
		delete(c.calls, k)
	}
	c.mu.Unlock()
}

// upstreamQuery builds the query sent upstream for k: recursion desired, the
// lowercased question, EDNS0 with the key's DO bit and AD set so the upstream
// reports validation (RFC 6840 section 5.7). Client EDNS options (ECS,
// cookies) are not forwarded: the cache is shared by all clients.
func upstreamQuery(k key) *dns.Msg {
	m := &dns.Msg{Question: []dns.Question{{Name: k.name, Qtype: k.qtype, Qclass: k.qclass}}}
	m.Id = dns.Id()
	m.RecursionDesired = true
	m.AuthenticatedData = true
	m.CheckingDisabled = k.cd
	m.SetEdns0(udpSize, k.do)
	return m
}

// sameQuestion reports whether resp answers q's question (names compared
// case-insensitively). A reply without a question is accepted only when its
// rcode says the query was not answered (FORMERR, REFUSED, ...).
func sameQuestion(resp, q *dns.Msg) bool {
	if len(resp.Question) == 0 {
		return resp.Rcode != dns.RcodeSuccess && resp.Rcode != dns.RcodeNameError
	}
	if len(resp.Question) != 1 {
		return false
	}
	a, b := resp.Question[0], q.Question[0]
	return a.Qtype == b.Qtype && a.Qclass == b.Qclass && lowerName(a.Name) == b.Name
}

// prefetch refreshes k in the background (once per entry: the caller holds
// the entry's prefetching flag). The client is answered from the cache
// without waiting.
func (c *Cache) prefetch(ctx context.Context, k key) {
	cl, leader, err := c.join(ctx, k)
	if err != nil {
		return
	}
	if leader {
		go c.run(k, cl, false, false)
	}
	c.m.prefetches.Inc()
}

// Len returns the number of entries, expired ones kept for serve-stale
// included.
func (c *Cache) Len() int { return c.lru.Len() }

// Purge removes every entry and every remembered failure. Exchanges in
// flight answer their waiters but store nothing.
func (c *Cache) Purge() {
	c.forgetFlights()
	c.lru.Purge()
	if c.failures != nil {
		c.failures.Purge()
	}
	c.m.entries.Set(0)
}

// Close cancels in-flight upstream exchanges (prefetches included) and waits
// for them to finish. Hits are still answered afterwards; misses fail with
// ErrClosed. Close is idempotent.
func (c *Cache) Close() {
	c.mu.Lock()
	if !c.closed {
		c.closed = true
		for _, cl := range c.calls {
			cl.cancel()
		}
		for cl := range c.orphans {
			cl.cancel()
		}
	}
	c.mu.Unlock()
	c.wg.Wait()
}
