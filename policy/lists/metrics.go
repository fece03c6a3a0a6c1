package lists

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the list manager's Prometheus metrics (subsystem "lists").
// Labels are bounded: list names come from the config, results are fixed.
type Metrics struct {
	entries         *prometheus.GaugeVec
	refreshes       *prometheus.CounterVec
	parseErrors     *prometheus.CounterVec
	lastRefresh     *prometheus.GaugeVec
	lastSuccess     *prometheus.GaugeVec
	regexes         *prometheus.GaugeVec
	hugeBytes       *prometheus.GaugeVec
	refreshDuration *prometheus.HistogramVec
}

// Refresh results used as the result label.
const (
	resultOK          = "ok"
	resultNotModified = "not_modified"
	resultError       = "error"
)

// NewMetrics registers the list metrics with reg. A nil reg registers nothing.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		entries: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "entries",
			Help: "Distinct entries in each compiled list.",
		}, []string{"list"}),
		refreshes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "refresh_total",
			Help: "Source fetches by list and result (ok, not_modified, error).",
		}, []string{"list", "result"}),
		parseErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "parse_errors_total",
			Help: "Invalid lines found while parsing list sources.",
		}, []string{"list"}),
		lastRefresh: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "source_last_refresh_timestamp_seconds",
			Help: "Unix time of the last source fetch of each list, by result.",
		}, []string{"list", "result"}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "source_last_success_timestamp_seconds",
			Help: "Unix time of the last successful (ok or not_modified) source fetch of each list.",
		}, []string{"list"}),
		regexes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "regex_rules",
			Help: "Regex rules in each list; every one is evaluated on queries the other entries do not settle.",
		}, []string{"list"}),
		hugeBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "huge_page_bytes",
			Help: "Bytes of each list's match table on transparent huge pages (Linux 6.1+, tables over 4 MiB).",
		}, []string{"list"}),
		refreshDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "dnsvalve", Subsystem: "lists", Name: "load_duration_seconds",
			Help:    "Time to fetch and compile a list.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9),
		}, []string{"list"}),
	}
	if reg != nil {
		reg.MustRegister(m.entries, m.refreshes, m.parseErrors, m.lastRefresh, m.lastSuccess, m.regexes, m.hugeBytes, m.refreshDuration)
	}
	return m
}

// forget drops the series of a list that left the config.
func (m *Metrics) forget(list string) {
	if m == nil {
		return
	}
	l := prometheus.Labels{"list": list}
	m.entries.DeletePartialMatch(l)
	m.refreshes.DeletePartialMatch(l)
	m.parseErrors.DeletePartialMatch(l)
	m.lastRefresh.DeletePartialMatch(l)
	m.lastSuccess.DeletePartialMatch(l)
	m.regexes.DeletePartialMatch(l)
	m.hugeBytes.DeletePartialMatch(l)
	m.refreshDuration.DeletePartialMatch(l)
}
