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
	Retransmits      *prometheus.CounterVec   // dnsvalve_upstream_udp_retransmits_total{upstream}
	Overloaded       prometheus.Counter       // dnsvalve_upstream_overloaded_total
	EDNSFallbacks    *prometheus.CounterVec   // dnsvalve_upstream_edns_fallbacks_total{upstream}
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
		Retransmits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "udp_retransmits_total",
			Help: "Queries to udp:// upstreams sent again within one try because no reply came within the retransmission timeout (lost datagrams, or a slow upstream).",
		}, []string{"upstream"}),
		Overloaded: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "overloaded_total",
			Help: "Queries rejected because the concurrent upstream query limit was reached.",
		}),
		EDNSFallbacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: ns, Subsystem: sub, Name: "edns_fallbacks_total",
			Help: "Queries sent once more without EDNS0 because the upstream rejected them with EDNS0 (FORMERR or NOTIMP without an OPT record, RFC 6891 section 7).",
		}, []string{"upstream"}),
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.Errors, m.Duration, m.Healthy, m.InvalidResponses, m.SocketsOpened, m.Retransmits, m.Overloaded, m.EDNSFallbacks)
	}
	return m
}

// Forget removes every series of the upstream named name, one a reload
// removed, so that it does not stay exported (as "down", say) until the
// next restart.
func (m *Metrics) Forget(name string) {
	l := prometheus.Labels{"upstream": name}
	for _, v := range []interface{ DeletePartialMatch(prometheus.Labels) int }{
		m.Requests, m.Errors, m.Duration, m.Healthy, m.InvalidResponses, m.SocketsOpened, m.Retransmits, m.EDNSFallbacks,
	} {
		v.DeletePartialMatch(l)
	}
}
