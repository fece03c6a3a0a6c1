package upstream

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the upstream metrics (subsystem "upstream"). Labels are
// bounded: upstream is a configured address, rcode a DNS rcode name, kind
// one of timeout, network, invalid, servfail, refused.
type Metrics struct {
	Requests         *prometheus.CounterVec   // dnsvalve_upstream_requests_total{upstream,rcode}
	Errors           *prometheus.CounterVec   // dnsvalve_upstream_errors_total{upstream,kind}
	Duration         *prometheus.HistogramVec // dnsvalve_upstream_request_duration_seconds{upstream}
	Healthy          *prometheus.GaugeVec     // dnsvalve_upstream_healthy{upstream}
	InvalidResponses *prometheus.CounterVec   // dnsvalve_upstream_invalid_responses_total{upstream}
	SocketsOpened    *prometheus.CounterVec   // dnsvalve_upstream_udp_sockets_opened_total{upstream}
	Overloaded       prometheus.Counter       // dnsvalve_upstream_overloaded_total
}

// NewMetrics creates the upstream metrics and registers them with reg.
// A nil reg leaves them unregistered (usable, not exported).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "dnsvalve", "upstream"
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "requests_total",
			Help: "Upstream queries that got a reply, by upstream and reply rcode.",
		}, []string{"upstream", "rcode"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "errors_total",
			Help: "Failed upstream queries by upstream and kind (timeout, network, invalid, servfail, refused).",
		}, []string{"upstream", "kind"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: ns, Subsystem: sub, Name: "request_duration_seconds",
			Help:    "Duration of upstream queries, successful or not.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"upstream"}),
		Healthy: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Namespace: ns, Subsystem: sub, Name: "healthy",
			Help: "1 if the upstream is considered up, 0 if it is marked down.",
		}, []string{"upstream"}),
		InvalidResponses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "invalid_responses_total",
			Help: "Upstream replies discarded because they did not match the query (ID, question) or did not parse.",
		}, []string{"upstream"}),
		SocketsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "udp_sockets_opened_total",
			Help: "UDP sockets opened for udp:// upstreams; against requests_total it shows how often a pooled socket was reused (upstream.udp_socket_lifetime).",
		}, []string{"upstream"}),
		Overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "overloaded_total",
			Help: "Queries rejected because the concurrent upstream query limit was reached.",
		}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Errors, m.Duration, m.Healthy, m.InvalidResponses, m.SocketsOpened, m.Overloaded)
	}
	return m
}
