package resolver

import (
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Metrics are the server's Prometheus metrics (subsystem "server").
type Metrics struct {
	Queries     *prometheus.CounterVec // qtype, rcode, transport
	Duration    *prometheus.HistogramVec
	Panics      prometheus.Counter
	Malformed   *prometheus.CounterVec // reason
	WriteErrors prometheus.Counter
	Dropped     prometheus.Counter
	Refused     *prometheus.CounterVec // reason
	UDPStuck    prometheus.Counter
	TCPRejected *prometheus.CounterVec // reason

	// children caches resolved Queries children so the hot path does not
	// hash label values per query.
	children [len(qtypeLabels)][len(rcodeLabels)][4]atomic.Pointer[prometheus.Counter]
	durs     [4]atomic.Pointer[prometheus.Observer]
}

var qtypeLabels = [...]uint16{dns.TypeNone, dns.TypeA, dns.TypeAAAA, dns.TypeCNAME, dns.TypeMX, dns.TypeTXT,
	dns.TypeNS, dns.TypeSOA, dns.TypePTR, dns.TypeSRV, dns.TypeHTTPS, dns.TypeSVCB, dns.TypeANY,
	dns.TypeNULL, dns.TypeCAA, dns.TypeDS, dns.TypeDNSKEY, dns.TypeKEY}

var rcodeLabels = [...]int{dns.RcodeSuccess, dns.RcodeFormatError, dns.RcodeServerFailure, dns.RcodeNameError,
	dns.RcodeNotImplemented, dns.RcodeRefused, dns.RcodeBadVers, -1 /* dropped */, -2 /* other */}

// NewMetrics registers the server metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "queries_total",
			Help: "Queries answered, by query type, response code (\"DROPPED\" when no reply was sent) and client transport.",
		}, []string{"qtype", "rcode", "transport"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "request_duration_seconds",
			Help:    "Time from receiving a query to writing its reply, by client transport.",
			Buckets: []float64{.00005, .0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"transport"}),
		Panics: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "panics_total",
			Help: "Panics recovered while answering a query (answered SERVFAIL).",
		}),
		Malformed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "malformed_total",
			Help: "Messages rejected before the chain as malformed (response, counts, unpack, proxy) and queries for a type that is no question (meta_type), by reason.",
		}, []string{"reason"}),
		WriteErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "write_errors_total",
			Help: "Replies that could not be written to the client.",
		}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "dropped_total",
			Help: "Queries deliberately not answered (access control or rate limit in drop mode).",
		}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "refused_total",
			Help: "Queries refused by access control or as not served, by reason (not_allowed, rate_limited, class, zone_transfer).",
		}, []string{"reason"}),
		TCPRejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "tcp_rejected_total",
			Help: "TCP connections closed as soon as they were accepted, by reason (max_connections, max_per_client, not_allowed).",
		}, []string{"reason"}),
		UDPStuck: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "server", Name: "udp_stuck_total",
			Help: "Times every UDP reader of a listener sat in one batch, nothing served, for two on-time watcher ticks (or 1 s), and a read permit was added: a stage that waits without query.BeforeWait, or readers starved of CPU by other goroutines (a burst of upstream replies).",
		}),
	}
	reg.MustRegister(m.Queries, m.Duration, m.Panics, m.Malformed, m.WriteErrors, m.Dropped, m.Refused, m.UDPStuck, m.TCPRejected)
	return m
}

func (m *Metrics) udpStuck() {
	if m != nil {
		m.UDPStuck.Inc()
	}
}

func (m *Metrics) tcpRejected(reason string) {
	if m != nil {
		m.TCPRejected.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) malformed(reason string) {
	if m != nil {
		m.Malformed.WithLabelValues(reason).Inc()
	}
}

func qtypeIndex(t uint16) int {
	for i, q := range qtypeLabels {
		if q == t {
			return i
		}
	}
	return 0
}

func rcodeIndex(rc int) int {
	for i, r := range rcodeLabels {
		if r == rc {
			return i
		}
	}
	return len(rcodeLabels) - 1
}

// observe counts one finished query. resp nil means no reply was sent.
func (m *Metrics) observe(req *query.Request, resp *dns.Msg, latency time.Duration) {
	if m == nil {
		return
	}
	qi := 0
	if len(req.Msg.Question) == 1 {
		qi = qtypeIndex(req.Msg.Question[0].Qtype)
	}
	ri := rcodeIndex(-1)
	if resp != nil {
		ri = rcodeIndex(resp.Rcode)
	} else {
		m.Dropped.Inc()
	}
	p := int(req.Proto) & 3
	slot := &m.children[qi][ri][p]
	c := slot.Load()
	if c == nil {
		qt := "OTHER"
		if qi != 0 {
			qt = dns.TypeToString[qtypeLabels[qi]]
		}
		rc := "OTHER"
		switch r := rcodeLabels[ri]; {
		case r == -1:
			rc = "DROPPED"
		case r >= 0:
			rc = query.RcodeString(r)
		}
		cc := m.Queries.WithLabelValues(qt, rc, req.Proto.String())
		c = &cc
		slot.Store(c)
	}
	(*c).Inc()
	d := m.durs[p].Load()
	if d == nil {
		o := m.Duration.WithLabelValues(req.Proto.String())
		d = &o
		m.durs[p].Store(d)
	}
	(*d).Observe(latency.Seconds())
}
