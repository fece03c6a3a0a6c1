package fleet

import "github.com/prometheus/client_golang/prometheus"

// Components of the shared state, the values of the "component" label.
const (
	ComponentCounters = "counters" // per-pair window counters (this package)
	ComponentSeen     = "seen"     // the first-seen store (detect/seen, redis://)
)

// Metrics are the shared-state metrics (subsystem "detect"). The
// component label is one of ComponentCounters and ComponentSeen.
type Metrics struct {
	Up           *prometheus.GaugeVec   // component
	Errors       *prometheus.CounterVec // component
	SyncDuration prometheus.Histogram
	Pairs        prometheus.Gauge
	Dropped      prometheus.Counter
}

// NewMetrics builds and registers the shared-state metrics. A nil
// registerer gives unregistered (still working) metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "dnsvalve", "detect"
	m := &Metrics{
		Up: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "shared_up", Help: "1 while the shared detector state (Redis) answers, 0 while instances score on local state only."}, []string{"component"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shared_errors_total", Help: "Failed synchronisations with the shared detector state (Redis)."}, []string{"component"}),
		SyncDuration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "shared_sync_duration_seconds", Help: "Duration of one push/pull round of the shared pair counters.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 8)}),
		Pairs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "shared_pairs", Help: "Pairs whose counters this instance shares (active within two windows)."}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "shared_dropped_total", Help: "Local counter deltas dropped before they reached the shared state (Redis unavailable for over a window)."}),
	}
	if reg != nil {
		reg.MustRegister(m.Up, m.Errors, m.SyncDuration, m.Pairs, m.Dropped)
	}
	return m
}
