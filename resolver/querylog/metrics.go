package querylog

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the query log's Prometheus metrics (subsystem "querylog"),
// labelled by sink name (bounded: one per configured sink). For every sink,
// written + dropped + errors equals the records handed to Log once the
// Logger is closed.
type Metrics struct {
	// Written counts records a sink accepted and flushed.
	Written *prometheus.CounterVec
	// Dropped counts records not queued because the sink's buffer was full
	// (or the Logger was closed).
	Dropped *prometheus.CounterVec
	// Errors counts records lost to a sink error (write or flush failed,
	// dnstap collector unreachable).
	Errors *prometheus.CounterVec
	// QueueLength is the number of records waiting in a sink's buffer.
	QueueLength *prometheus.GaugeVec
}

// NewMetrics creates the query-log metrics and registers them with reg
// (nil: not registered, for tests and tools).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Written: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "querylog", Name: "written_total",
			Help: "Query-log records written and flushed, by sink.",
		}, []string{"sink"}),
		Dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "querylog", Name: "dropped_total",
			Help: "Query-log records dropped because the sink's buffer was full, by sink.",
		}, []string{"sink"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "querylog", Name: "errors_total",
			Help: "Query-log records lost to a sink write or flush error, by sink.",
		}, []string{"sink"}),
		QueueLength: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "querylog", Name: "queue_length",
			Help: "Query-log records waiting in the sink's buffer, by sink.",
		}, []string{"sink"}),
	}
	if reg != nil {
		reg.MustRegister(m.Written, m.Dropped, m.Errors, m.QueueLength)
	}
	return m
}
