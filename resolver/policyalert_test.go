package resolver

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
)

// TestPolicyAlerts feeds PolicyAlerts a sequence of answered queries and
// checks which raise an alert: the configured actions only, never a
// detection block, once per client, action, reason, list and rule (or
// registered domain where no rule matched) per interval.
func TestPolicyAlerts(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	block := query.Info{Action: query.ActionBlock, List: "malware", Category: "malware", Rule: "evil.example", Source: "/lists/malware.txt", Line: 7}
	alert := query.Info{Action: query.ActionAlert, List: "sharing", Category: "file-sharing", Rule: "||share.example^", Source: "sharing.txt", Line: 1}
	unapproved := query.Info{Action: query.ActionBlock, PolicyReason: "allowlist_mode", Reason: "allowlist_mode"}
	// Later stages write Reason too; the alert goes by PolicyReason.
	alertAny := alert
	alertAny.Reason = "rfc8482"
	cname := query.Info{Action: query.ActionBlock, PolicyReason: "cname", Reason: "cname", Target: "track.c2.example."}
	type step struct {
		at     time.Duration // after t0
		client string
		name   string
		qtype  uint16
		info   query.Info
		raised bool
	}
	for _, tc := range []struct {
		name       string
		actions    []query.Action
		interval   time.Duration
		steps      []step
		suppressed float64
	}{
		{"alert_only_by_default", []query.Action{query.ActionAlert}, time.Hour, []step{
			{0, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, false},
			{0, "10.0.0.1", "dl.share.example.", dns.TypeA, alert, true},
			{0, "10.0.0.1", "ok.example.", dns.TypeA, query.Info{Action: query.ActionAllow, List: "corp"}, false},
			{0, "10.0.0.1", "ok.example.", dns.TypeA, query.Info{}, false},
			// Same rule, an ANY query whose Reason a later stage set.
			{0, "10.0.0.1", "dl.share.example.", dns.TypeANY, alertAny, false},
		}, 1},
		{"blocks_when_asked", []query.Action{query.ActionAlert, query.ActionBlock}, time.Hour, []step{
			{0, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, true},
			{0, "10.0.0.1", "exfil.example.net.", dns.TypeA, unapproved, true},
			{0, "10.0.0.1", "t.bad.example.", dns.TypeTXT, query.Info{Action: query.ActionBlock, List: "tunneling", Category: "tunneling", Reason: "tunneling"}, false},
		}, 0},
		{"one_alert_per_client_and_rule", []query.Action{query.ActionBlock}, time.Hour, []step{
			{0, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, true},
			{time.Minute, "10.0.0.1", "C2.EVIL.example.", dns.TypeA, block, false},
			{time.Minute, "10.0.0.1", "x7f3a9.evil.example.", dns.TypeTXT, block, false}, // a DGA's next name
			{2 * time.Minute, "10.0.0.2", "c2.evil.example.", dns.TypeA, block, true},
			{3 * time.Minute, "10.0.0.1", "a.other.example.net.", dns.TypeA, unapproved, true},
			{3 * time.Minute, "10.0.0.1", "b.other.example.net.", dns.TypeA, unapproved, false}, // same registered domain
			{3 * time.Minute, "10.0.0.1", "third.example.org.", dns.TypeA, unapproved, true},
			{4 * time.Minute, "10.0.0.1", "cdn.victim.example.", dns.TypeA, cname, true},
			{4 * time.Minute, "10.0.0.1", "www.victim.example.", dns.TypeA, cname, false}, // same target domain
			{59 * time.Minute, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, false},
			{61 * time.Minute, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, true},
			{62 * time.Minute, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, false},
		}, 6},
		{"interval_0_every_query", []query.Action{query.ActionBlock}, 0, []step{
			{0, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, true},
			{0, "10.0.0.1", "c2.evil.example.", dns.TypeA, block, true},
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []querylog.Alert
			p := NewPolicyAlerts(tc.actions, tc.interval, func(a querylog.Alert) { got = append(got, a) }, prometheus.NewRegistry())
			for i, s := range tc.steps {
				req := &query.Request{Msg: new(dns.Msg).SetQuestion(s.name, s.qtype), Start: t0.Add(s.at), Info: s.info,
					Client: query.Client{Addr: netip.MustParseAddr(s.client), Group: "ci", Policy: "default", Name: "runner"}}
				before := len(got)
				p.Observe(req, nil, 0)
				if raised := len(got) > before; raised != s.raised {
					t.Fatalf("step %d (%s %s %+v): raised %v, want %v", i, s.client, s.name, s.info, raised, s.raised)
				}
			}
			if n := testutil.ToFloat64(p.suppressed.WithLabelValues("repeat")); n != tc.suppressed {
				t.Errorf("suppressed repeats = %v, want %v", n, tc.suppressed)
			}
			for _, a := range got {
				if a.Reason != "list" && a.Reason != "allowlist_mode" && a.Reason != "cname" {
					t.Errorf("alert reason %q", a.Reason)
				}
			}
		})
	}
}

// TestPolicyAlertRateLimit: distinct rules beyond the overall rate are
// counted, not sent, and the bucket refills with time.
func TestPolicyAlertRateLimit(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	sent := 0
	p := NewPolicyAlerts([]query.Action{query.ActionBlock}, time.Hour, func(querylog.Alert) { sent++ }, nil)
	ask := func(at time.Duration, i int) {
		name := fmt.Sprintf("d%d.example.", i)
		p.Observe(&query.Request{Msg: new(dns.Msg).SetQuestion(name, dns.TypeA), Start: t0.Add(at),
			Client: query.Client{Addr: netip.MustParseAddr("10.0.0.1")},
			Info:   query.Info{Action: query.ActionBlock, PolicyReason: "allowlist_mode"}}, nil, 0)
	}
	for i := range policyAlertBurst + 50 {
		ask(0, i)
	}
	if sent != policyAlertBurst {
		t.Errorf("%d alerts sent at once, want the burst, %d", sent, policyAlertBurst)
	}
	if n := testutil.ToFloat64(p.suppressed.WithLabelValues("rate")); n != 50 {
		t.Errorf("rate-limited = %v, want 50", n)
	}
	for i := range 2 * policyAlertRate {
		ask(time.Second, 1000+i)
	}
	if sent != policyAlertBurst+policyAlertRate {
		t.Errorf("a second later %d alerts sent in all, want %d", sent, policyAlertBurst+policyAlertRate)
	}
}

// TestPolicyAlertPrime: primed counters exist at 0 for the alerting
// actions only.
func TestPolicyAlertPrime(t *testing.T) {
	reg := prometheus.NewRegistry()
	p := NewPolicyAlerts([]query.Action{query.ActionBlock}, time.Hour, func(querylog.Alert) {}, reg)
	p.Prime([]string{"malware", "ads"})
	if n := testutil.CollectAndCount(p.raised); n != 3 {
		t.Errorf("%d primed series, want 3 (BLOCK × \"\", malware, ads)", n)
	}
	if v := testutil.ToFloat64(p.raised.WithLabelValues("BLOCK", "malware")); v != 0 {
		t.Errorf("primed counter = %v", v)
	}
}

// TestPolicyAlertRecord checks every field of a policy alert record.
func TestPolicyAlertRecord(t *testing.T) {
	var got []querylog.Alert
	p := NewPolicyAlerts([]query.Action{query.ActionBlock}, time.Hour, func(a querylog.Alert) { got = append(got, a) }, nil)
	at := time.Date(2026, 3, 1, 12, 0, 0, 123e6, time.FixedZone("CET", 3600))
	for _, req := range []*query.Request{
		{Msg: new(dns.Msg).SetQuestion("C2.Evil.Example.", 65399), Start: at,
			Client: query.Client{Addr: netip.MustParseAddr("10.0.8.5"), Group: "payments", Policy: "sensitive", Name: "payments-db-1"},
			Info:   query.Info{Action: query.ActionBlock, List: "urlhaus", Category: "malware", Rule: "||evil.example^", Source: "https://feed.example/u.txt", Line: 17}},
		// Detection ran: its registered domain is used.
		{Msg: new(dns.Msg).SetQuestion("x.y.blocked.co.uk.", dns.TypeA), Start: at,
			Client: query.Client{Addr: netip.MustParseAddr("fd00::5")},
			Info:   query.Info{Action: query.ActionBlock, Reason: "cname", PolicyReason: "cname", Target: "x.tracker.example.", Domain: "blocked.co.uk"}},
	} {
		p.Observe(req, nil, 0)
	}
	want := []querylog.Alert{{
		Type: "alert", Timestamp: "2026-03-01T11:00:00.123Z", SrcAddr: "10.0.8.5", SrcIDs: querylog.SrcIDs{Instance: "payments-db-1"},
		Group: "payments", Policy: "sensitive", Domain: "evil.example", Signals: []string{}, SampleNames: []string{},
		Action: "BLOCK", Kind: "policy", QueryName: "C2.Evil.Example.", QueryType: "TYPE65399", FirewallDomainListID: "urlhaus",
		Category: "malware", Rule: "||evil.example^", Source: "https://feed.example/u.txt:17", Reason: "list",
	}, {
		Type: "alert", Timestamp: "2026-03-01T11:00:00.123Z", SrcAddr: "fd00::5", Domain: "blocked.co.uk",
		Signals: []string{}, SampleNames: []string{}, Action: "BLOCK", Kind: "policy", QueryName: "x.y.blocked.co.uk.",
		QueryType: "A", Reason: "cname", Target: "x.tracker.example.",
	}}
	if len(got) != len(want) {
		t.Fatalf("got %d alerts, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if string(querylog.AppendAlert(nil, &got[i])) != string(querylog.AppendAlert(nil, &want[i])) {
			t.Errorf("alert %d\n got %s\nwant %s", i, querylog.AppendAlert(nil, &got[i]), querylog.AppendAlert(nil, &want[i]))
		}
	}
}
