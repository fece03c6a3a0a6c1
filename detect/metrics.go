package detect

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the detector's Prometheus metrics (subsystem "detect").
// Labels are bounded: signal names come from a fixed set of seven.
type Metrics struct {
	Queries        prometheus.Counter
	Ignored        prometheus.Counter
	Alerts         *prometheus.CounterVec // signal
	AlertsTotal    prometheus.Counter
	Score          prometheus.Histogram
	TrackedPairs   prometheus.Gauge
	Evictions      prometheus.Counter
	NewlySeen      prometheus.Counter
	SeenErrors     prometheus.Counter
	SeenEvictions  prometheus.Counter
	WebhookSent    *prometheus.CounterVec // result: ok | error
	WebhookDropped prometheus.Counter
	ScoredRecords  prometheus.Counter
}

// NewMetrics builds and registers the detector metrics. A nil registerer
// gives unregistered (still working) metrics.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "dnsvalve", "detect"
	m := &Metrics{
		Queries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "queries_total", Help: "Queries scored by the tunneling detector."}),
		Ignored: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "ignored_queries_total", Help: "Queries not scored because their domain is ignore-listed."}),
		Alerts: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alert_signals_total", Help: "Signals present in raised alerts, one increment per signal per alert."}, []string{"signal"}),
		AlertsTotal: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_total", Help: "Alerts raised, at most one per (client, registered domain) per window."}),
		Score: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "score", Help: "Tunneling score per scored query (0..1).",
			Buckets: []float64{0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1}}),
		TrackedPairs: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "tracked_pairs", Help: "(client, registered domain) pairs currently tracked."}),
		Evictions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "pair_evictions_total", Help: "Pairs evicted from the bounded pair table."}),
		NewlySeen: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "newly_seen_total", Help: "Registered domains reported as newly seen."}),
		SeenErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "seen_store_errors_total", Help: "Errors from the newly-seen store."}),
		SeenEvictions: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "seen_store_evictions_total", Help: "Domains evicted from the full newly-seen store (detect.newly_seen.max_domains)."}),
		WebhookSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "webhook_deliveries_total", Help: "Alert webhook delivery attempts by result."}, []string{"result"}),
		WebhookDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "webhook_dropped_total", Help: "Alerts dropped because the webhook queue was full or delivery gave up."}),
		ScoredRecords: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "offline_records_total", Help: "Log records scored offline (dnsvalve score)."}),
	}
	for _, s := range signalNames {
		m.Alerts.WithLabelValues(s)
	}
	m.WebhookSent.WithLabelValues("ok")
	m.WebhookSent.WithLabelValues("error")
	if reg != nil {
		reg.MustRegister(m.Queries, m.Ignored, m.Alerts, m.AlertsTotal, m.Score, m.TrackedPairs, m.Evictions,
			m.NewlySeen, m.SeenErrors, m.SeenEvictions, m.WebhookSent, m.WebhookDropped, m.ScoredRecords)
	}
	return m
}
