package resolver

import (
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// PolicyAlerts turns policy decisions into alerts: a query that an alert
// rule matched (and, when configured, one a policy blocked) raises an
// alert record, the kind the detector raises, for the query log, the
// webhook and the operator's log. A workload that retries a blocked name
// every second would raise 3,600 alerts an hour, so one client, name and
// rule raise one alert per interval; the repeats are counted, not sent.
//
// Detection blocks ("tunneling") raise the detector's own alert, not this
// one. PolicyAlerts is an Observer: it runs after the reply is written,
// and does nothing for a query no alerting decision touched.
type PolicyAlerts struct {
	actions  [query.ActionAlert + 1]bool
	interval time.Duration
	send     func(querylog.Alert)

	mu   sync.Mutex
	last *lru.Cache[policyAlertKey, time.Time] // when each key last raised an alert

	raised     *prometheus.CounterVec
	suppressed prometheus.Counter
}

var _ Observer = (*PolicyAlerts)(nil)

// policyAlertKey is what makes two alerts the same: the client, the
// question and the rule.
type policyAlertKey struct {
	client     string
	name       string
	qtype      uint16
	action     query.Action
	list, rule string
	reason     string
}

// maxPolicyAlertKeys bounds the keys PolicyAlerts remembers; beyond it the
// least recently alerted are forgotten (and alert again when they recur).
const maxPolicyAlertKeys = 100_000

// NewPolicyAlerts returns PolicyAlerts raising alerts for the decisions
// whose action is in actions (query.ActionBlock, query.ActionAlert), at
// most one per key per interval (0: every query), handed to send, which
// must not block. reg may be nil.
func NewPolicyAlerts(actions []query.Action, interval time.Duration, send func(querylog.Alert), reg prometheus.Registerer) *PolicyAlerts {
	p := &PolicyAlerts{interval: interval, send: send,
		raised: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsvalve_policy_alerts_total",
			Help: "Policy alerts raised (alerts.policy), by action and category.",
		}, []string{"action", "category"}),
		suppressed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dnsvalve_policy_alerts_suppressed_total",
			Help: "Policy decisions that repeated an alert raised within alerts.policy_interval, not sent again.",
		}),
	}
	p.last, _ = lru.New[policyAlertKey, time.Time](maxPolicyAlertKeys) // only errors on a size <= 0
	for _, a := range actions {
		if int(a) < len(p.actions) {
			p.actions[a] = true
		}
	}
	if reg != nil {
		reg.MustRegister(p.raised, p.suppressed)
	}
	return p
}

// Observe implements Observer.
func (p *PolicyAlerts) Observe(req *query.Request, _ *dns.Msg, _ time.Duration) {
	info := &req.Info
	if int(info.Action) >= len(p.actions) || !p.actions[info.Action] || info.Reason == "tunneling" ||
		len(req.Msg.Question) == 0 {
		return
	}
	q := req.Msg.Question[0]
	reason := info.Reason
	if reason == "" {
		reason = "list"
	}
	key := policyAlertKey{client: req.Client.Addr.String(), name: strings.ToLower(q.Name), qtype: q.Qtype,
		action: info.Action, list: info.List, rule: info.Rule, reason: reason}
	now := req.Start
	if now.IsZero() {
		now = time.Now()
	}
	p.mu.Lock()
	if at, ok := p.last.Get(key); ok && p.interval > 0 && now.Sub(at) < p.interval {
		p.mu.Unlock()
		p.suppressed.Inc()
		return
	}
	p.last.Add(key, now)
	p.mu.Unlock()

	domain := info.Domain
	if domain == "" {
		var f detect.Features
		detect.Extract(key.name, q.Qtype, &f)
		domain = f.Registered
	}
	p.raised.WithLabelValues(info.Action.String(), info.Category).Inc()
	p.send(querylog.Alert{
		Type: "alert", Timestamp: now.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		SrcAddr: key.client, SrcIDs: querylog.SrcIDs{Instance: req.Client.Name},
		Group: req.Client.Group, Policy: req.Client.Policy, Domain: domain,
		Signals: []string{}, SampleNames: []string{}, Action: info.Action.String(),
		Kind: "policy", QueryName: q.Name, QueryType: querylog.TypeString(q.Qtype), FirewallDomainListID: info.List,
		Category: info.Category, Rule: info.Rule, Source: querylog.RuleSource(info.Source, info.Line), Reason: reason,
	})
}
