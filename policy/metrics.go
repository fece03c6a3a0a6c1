package policy

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// Metrics are the policy engine's Prometheus metrics. Labels are bounded
// by the configuration and the code: action, list category, policy name
// and decision reason.
type Metrics struct {
	decisions *prometheus.CounterVec
}

// NewMetrics creates the policy metrics and registers them with reg. It
// panics if they are already registered there, like prometheus.MustRegister.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve",
			Subsystem: "policy",
			Name:      "decisions_total",
			Help:      "Policy decisions by action (allow, block, alert, none), list category, policy and reason (list, allowlist_mode, qtype, cname, rebinding; empty for none).",
		}, []string{"action", "category", "policy", "reason"}),
	}
	reg.MustRegister(m.decisions)
	return m
}

// Observe counts one decision. Safe for concurrent use.
func (m *Metrics) Observe(d Decision) {
	m.decisions.WithLabelValues(actionLabel(d.Action), d.Category, d.Policy, d.Reason).Inc()
}

func actionLabel(a query.Action) string {
	switch a {
	case query.ActionAllow:
		return "allow"
	case query.ActionBlock:
		return "block"
	case query.ActionAlert:
		return "alert"
	}
	return "none"
}
