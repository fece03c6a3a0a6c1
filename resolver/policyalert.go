package resolver

import (
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// PolicyAlerts turns policy decisions into alerts: a query that an alert
// rule decided (and, when configured, one a policy blocked) raises an
// alert record, the kind the detector raises, for the query log, the
// webhook and the operator's log.
//
// An alert is about a client meeting a rule, not about each name: one
// client, action, reason, list and rule raise one alert per interval (a
// workload retrying a blocked name every second, or a DGA walking random
// subdomains under one blocked domain, raises one alert an hour). Where no
// rule matched (allow-list-only mode, a CNAME or address the answer check
// refused), the registered domain of the name stands for the rule. On top
// of that, alerts are rate limited overall (policyAlertRate a second,
// bursts of policyAlertBurst), so that a client asking for thousands of
// unapproved domains cannot flood the webhook queue it shares with the
// detector, nor the log. Both kinds of repeats are counted, not sent; the
// query log still has every query.
//
// Only the final decision counts: a name on both an alert list and a
// block list is blocked (block beats alert), and raises a block alert if
// blocks alert. Detection blocks ("tunneling") raise the detector's own
// alert, not this one. PolicyAlerts is an Observer: it runs after the
// reply is written and returns at once for a query no alerting decision
// touched.
type PolicyAlerts struct {
	actions  [query.ActionAlert + 1]bool
	interval time.Duration
	send     func(querylog.Alert)

	mu     sync.Mutex
	last   *lru.Cache[policyAlertKey, time.Time] // when each key last raised an alert
	tokens float64                               // the overall rate limit's bucket
	filled time.Time                             // when tokens was last topped up

	raised           *prometheus.CounterVec
	suppressed       *prometheus.CounterVec
	repeats, limited prometheus.Counter // suppressed's two series
}

var _ Observer = (*PolicyAlerts)(nil)

// policyAlertKey is what makes two alerts the same.
type policyAlertKey struct {
	client  netip.Addr
	action  query.Action
	reason  string
	list    string
	subject string // the rule, or the registered domain where no rule matched
}

const (
	// maxPolicyAlertKeys bounds the keys PolicyAlerts remembers; beyond
	// it the least recently alerted are forgotten (and alert again when
	// they recur).
	maxPolicyAlertKeys = 100_000
	// policyAlertRate and policyAlertBurst bound the alerts sent, all
	// keys together.
	policyAlertRate  = 20
	policyAlertBurst = 200
)

// NewPolicyAlerts returns PolicyAlerts raising alerts for the decisions
// whose action is in actions (query.ActionBlock, query.ActionAlert), at
// most one per key per interval (0: every query, still rate limited),
// handed to send, which must not block. reg may be nil.
func NewPolicyAlerts(actions []query.Action, interval time.Duration, send func(querylog.Alert), reg prometheus.Registerer) *PolicyAlerts {
	p := &PolicyAlerts{interval: interval, send: send, tokens: policyAlertBurst,
		raised: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsvalve_policy_alerts_total",
			Help: "Policy alerts raised (alerts.policy), by action and category.",
		}, []string{"action", "category"}),
		suppressed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsvalve_policy_alerts_suppressed_total",
			Help: "Policy decisions that raised no alert: a repeat within alerts.policy_interval (repeat), or over the overall rate limit (rate).",
		}, []string{"reason"}),
	}
	p.last, _ = lru.New[policyAlertKey, time.Time](maxPolicyAlertKeys) // only errors on a size <= 0
	for _, a := range actions {
		if int(a) < len(p.actions) {
			p.actions[a] = true
		}
	}
	p.repeats = p.suppressed.WithLabelValues("repeat")
	p.limited = p.suppressed.WithLabelValues("rate")
	if reg != nil {
		reg.MustRegister(p.raised, p.suppressed)
	}
	return p
}

// Prime creates the alert counters of categories at 0, for the actions
// that alert, so that a rule's increase() sees the first alert of a
// category too (a series born at 1 shows no increase). The category ""
// (blocks with no list: allow-list-only mode, query types) is always
// primed.
func (p *PolicyAlerts) Prime(categories []string) {
	for a := range p.actions {
		if !p.actions[a] {
			continue
		}
		for _, c := range append([]string{""}, categories...) {
			p.raised.WithLabelValues(query.Action(a).String(), c)
		}
	}
}

// Observe implements Observer.
func (p *PolicyAlerts) Observe(req *query.Request, _ *dns.Msg, _ time.Duration) {
	info := &req.Info
	if int(info.Action) >= len(p.actions) || !p.actions[info.Action] || info.Reason == "tunneling" ||
		len(req.Msg.Question) == 0 {
		return
	}
	q := req.Msg.Question[0]
	reason := info.PolicyReason
	if reason == "" {
		reason = policy.ReasonList
	}
	key := policyAlertKey{client: req.Client.Addr, action: info.Action, reason: reason, list: info.List, subject: info.Rule}
	if key.subject == "" {
		switch {
		case reason == policy.ReasonCNAME && info.Target != "":
			key.subject = registered(info.Target)
		case info.Domain != "":
			key.subject = info.Domain
		default:
			key.subject = registered(q.Name)
		}
	}
	now := req.Start
	if now.IsZero() {
		now = time.Now()
	}
	p.mu.Lock()
	if at, ok := p.last.Get(key); ok && p.interval > 0 && now.Sub(at) < p.interval {
		p.mu.Unlock()
		p.repeats.Inc()
		return
	}
	if !p.take(now) {
		p.mu.Unlock()
		p.limited.Inc()
		return
	}
	// The key outlives the query: its strings must not be substrings of
	// a list's text (a rule), or it would keep a replaced list alive.
	key.list, key.subject = strings.Clone(key.list), strings.Clone(key.subject)
	p.last.Add(key, now)
	p.mu.Unlock()

	domain := info.Domain // the detector's, when it ran
	if domain == "" {
		domain = registered(q.Name)
	}

	p.raised.WithLabelValues(info.Action.String(), info.Category).Inc()
	p.send(querylog.Alert{
		Type: "alert", Timestamp: now.UTC().Format("2006-01-02T15:04:05.000Z07:00"),
		SrcAddr: req.Client.Addr.String(), SrcIDs: querylog.SrcIDs{Instance: req.Client.Name},
		Group: req.Client.Group, Policy: req.Client.Policy, Domain: domain,
		Signals: []string{}, SampleNames: []string{}, Action: info.Action.String(),
		Kind: "policy", QueryName: q.Name, QueryType: querylog.TypeString(q.Qtype), FirewallDomainListID: info.List,
		Category: info.Category, Rule: info.Rule, Source: querylog.RuleSource(info.Source, info.Line), Reason: reason,
		Target: info.Target,
	})
}

// take spends one token of the overall rate limit, reporting whether
// there was one. Callers hold mu.
func (p *PolicyAlerts) take(now time.Time) bool {
	if !p.filled.IsZero() {
		if d := now.Sub(p.filled); d > 0 {
			p.tokens = min(policyAlertBurst, p.tokens+d.Seconds()*policyAlertRate)
		}
	}
	if now.After(p.filled) {
		p.filled = now
	}
	if p.tokens < 1 {
		return false
	}
	p.tokens--
	return true
}

// registered returns name's registered domain (eTLD+1), lower case,
// without the trailing dot.
func registered(name string) string {
	var f detect.Features
	detect.Extract(strings.ToLower(name), 0, &f)
	return f.Registered
}
