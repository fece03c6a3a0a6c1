package resolver

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// AccessConfig is the access-control stage's configuration.
type AccessConfig struct {
	// Allow lists the client prefixes that are answered at all
	// (server.allow_clients). Empty means nobody.
	Allow []netip.Prefix
	// Drop sends no reply to refused clients instead of REFUSED.
	Drop bool
	// RateQPS is the per-client token-bucket rate (server.rate_limit.qps);
	// 0 disables rate limiting. Clients aggregate per IPv4 /32 and IPv6 /64.
	RateQPS float64
	// RateBurst is the bucket size (default 2×RateQPS, at least 1).
	RateBurst int
	// RateDrop drops rate-limited queries instead of answering REFUSED.
	RateDrop bool
	// Exempt prefixes are never rate limited.
	Exempt []netip.Prefix
	// MaxClients bounds the rate limiter's table (default 100000); the
	// oldest-idle clients are forgotten first.
	MaxClients int
}

// Access builds the access stage: clients outside cfg.Allow get REFUSED
// (or nothing), then per-client rate limits apply. now is the clock.
func Access(cfg AccessConfig, m *Metrics, now func() time.Time) Middleware {
	if now == nil {
		now = time.Now
	}
	var rl *rateLimiter
	if cfg.RateQPS > 0 {
		rl = newRateLimiter(cfg.RateQPS, cfg.RateBurst, cfg.MaxClients)
	}
	return func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, req *query.Request) (*dns.Msg, error) {
			a := req.Client.Addr
			if !cfg.Allows(a) {
				req.Info.Reason = "not_allowed"
				if m != nil {
					m.Refused.WithLabelValues("not_allowed").Inc()
				}
				if cfg.Drop {
					return nil, ErrDrop
				}
				return rcodeReply(req.Msg, dns.RcodeRefused), nil
			}
			if rl != nil && !containsAddr(cfg.Exempt, a) && !rl.allow(a, now()) {
				req.Info.Reason = "rate_limited"
				if m != nil {
					m.Refused.WithLabelValues("rate_limited").Inc()
				}
				if cfg.RateDrop {
					return nil, ErrDrop
				}
				r := rcodeReply(req.Msg, dns.RcodeRefused)
				AddEDE(req.Msg, r, dns.ExtendedErrorCodeProhibited, "rate limited")
				return r, nil
			}
			return next.ServeDNS(ctx, req)
		})
	}
}

// Allows reports whether client a is inside Allow (ServerConfig.Allowed
// takes it, so that the server drops what this stage would).
func (c AccessConfig) Allows(a netip.Addr) bool { return containsAddr(c.Allow, a) }

func containsAddr(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// rateLimiter is a table of token buckets keyed by client prefix, sharded to
// keep lock contention low.
type rateLimiter struct {
	rate   float64
	burst  float64
	max    int
	shards [16]rlShard
}

type rlShard struct {
	mu sync.Mutex
	m  map[netip.Prefix]*bucket
}

type bucket struct {
	tokens float64
	last   time.Time
}

func newRateLimiter(qps float64, burst, maxClients int) *rateLimiter {
	if burst <= 0 {
		burst = int(2 * qps)
	}
	if burst < 1 {
		burst = 1
	}
	if maxClients <= 0 {
		maxClients = 100000
	}
	rl := &rateLimiter{rate: qps, burst: float64(burst), max: maxClients/16 + 1}
	for i := range rl.shards {
		rl.shards[i].m = make(map[netip.Prefix]*bucket)
	}
	return rl
}

// clientKey aggregates IPv4 per /32 and IPv6 per /64.
func clientKey(a netip.Addr) netip.Prefix {
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

func (rl *rateLimiter) allow(a netip.Addr, now time.Time) bool {
	k := clientKey(a)
	b16 := k.Addr().As16()
	sh := &rl.shards[(b16[15]^b16[7]^b16[3])&15]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	b := sh.m[k]
	if b == nil {
		if len(sh.m) >= rl.max {
			rl.evictIdle(sh, now)
		}
		b = &bucket{tokens: rl.burst, last: now}
		sh.m[k] = b
	}
	if el := now.Sub(b.last).Seconds(); el > 0 {
		b.tokens += el * rl.rate
		if b.tokens > rl.burst {
			b.tokens = rl.burst
		}
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// evictIdle forgets clients whose bucket is full again (they have been idle
// long enough to be indistinguishable from new ones), or, if none is, half
// the shard.
func (rl *rateLimiter) evictIdle(sh *rlShard, now time.Time) {
	full := time.Duration(rl.burst / rl.rate * float64(time.Second))
	for k, b := range sh.m {
		if now.Sub(b.last) >= full {
			delete(sh.m, k)
		}
	}
	if len(sh.m) < rl.max {
		return
	}
	n := 0
	for k := range sh.m {
		delete(sh.m, k)
		if n++; n >= rl.max/2 {
			break
		}
	}
}
