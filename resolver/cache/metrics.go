package cache

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the cache's Prometheus instruments (subsystem "cache"). Build
// one with NewMetrics and hand it to New; a Metrics may be shared by several
// caches only if their counts should add up.
type Metrics struct {
	hits       prometheus.Counter
	misses     prometheus.Counter
	stale      prometheus.Counter
	evictions  prometheus.Counter
	prefetches prometheus.Counter
	// failureHits counts answers from remembered failures (RFC 9520).
	failureHits prometheus.Counter
	entries     prometheus.Gauge
}

// NewMetrics creates the cache metrics and registers them with reg. A nil reg
// leaves them unregistered (useful in tests and benchmarks). It panics if the
// names are already registered with reg, like prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "cache", Name: name, Help: help,
		})
	}
	m := &Metrics{
		hits:        counter("hits_total", "Queries answered from a fresh cache entry."),
		misses:      counter("misses_total", "Queries that were forwarded upstream (no usable fresh entry)."),
		stale:       counter("stale_total", "Queries answered with an expired entry because upstreams failed (RFC 8767)."),
		evictions:   counter("evictions_total", "Entries evicted to stay within the configured size."),
		prefetches:  counter("prefetches_total", "Background refreshes of popular entries close to expiry."),
		failureHits: counter("failure_hits_total", "Queries answered with a failure remembered for cache.failure_ttl (RFC 9520) instead of asking the upstreams again."),
		entries: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "cache", Name: "entries",
			Help: "Entries currently held, expired entries kept for serve-stale included.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.hits, m.misses, m.stale, m.evictions, m.prefetches, m.failureHits, m.entries)
	}
	return m
}
