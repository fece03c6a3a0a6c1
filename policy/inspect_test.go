package policy

import (
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

func answerMsg(tb testing.TB, qname string, rrs ...string) *dns.Msg {
	tb.Helper()
	m := new(dns.Msg)
	m.SetQuestion(qname, dns.TypeA)
	m.Response = true
	for _, s := range rrs {
		rr, err := dns.NewRR(s)
		if err != nil {
			tb.Fatalf("NewRR(%q): %v", s, err)
		}
		m.Answer = append(m.Answer, rr)
	}
	return m
}

func TestInspectResponse(t *testing.T) {
	s := mustCompile(t, testConfig(), testLists(t))
	tests := []struct {
		name   string
		policy string
		qname  string
		rrs    []string
		action query.Action
		reason string
		list   string
		cname  string
		ede    uint16
		addr   string
	}{
		// CNAME cloaking, open policy.
		{name: "cname_target_blocked", policy: "default", qname: "metrics.shop.example.",
			rrs:    []string{"metrics.shop.example. 60 IN CNAME x.Cloak.Tracker.example.", "x.cloak.tracker.example. 60 IN A 192.0.2.7"},
			action: query.ActionBlock, reason: "cname", list: "malware", cname: "x.Cloak.Tracker.example.", ede: 15},
		{name: "cname_second_hop_blocked", policy: "default", qname: "a.example.",
			rrs:    []string{"a.example. 60 IN CNAME b.example.", "b.example. 60 IN CNAME ads.example.", "ads.example. 60 IN A 192.0.2.8"},
			action: query.ActionBlock, reason: "cname", list: "ads", cname: "ads.example.", ede: 15},
		{name: "dname_target_blocked", policy: "default", qname: "www.alias.example.",
			rrs:    []string{"alias.example. 60 IN DNAME evil.example."},
			action: query.ActionBlock, reason: "cname", list: "malware", cname: "evil.example.", ede: 15},
		{name: "cname_target_clean", policy: "default", qname: "www.example.",
			rrs:    []string{"www.example. 60 IN CNAME www.cdn.example.", "www.cdn.example. 60 IN A 192.0.2.9"},
			action: query.ActionNone},
		{name: "cname_target_in_allow_list", policy: "default", qname: "www.example.",
			rrs:    []string{"www.example. 60 IN CNAME safe.evil.example."},
			action: query.ActionNone},
		{name: "cname_target_exception", policy: "default", qname: "www.example.",
			rrs:    []string{"www.example. 60 IN CNAME ok.ads.example."},
			action: query.ActionNone},
		{name: "allowed_qname_vouches_for_chain", policy: "default", qname: "app.corp.example.",
			rrs:    []string{"app.corp.example. 60 IN CNAME evil.example."},
			action: query.ActionNone},
		{name: "cname_target_alert", policy: "default", qname: "www.example.",
			rrs:    []string{"www.example. 60 IN CNAME dl.alert-target.example."},
			action: query.ActionAlert, reason: "cname", list: "file-sharing", cname: "dl.alert-target.example."},
		{name: "block_beats_alert_later_in_chain", policy: "default", qname: "www.example.",
			rrs:    []string{"www.example. 60 IN CNAME alert-target.example.", "alert-target.example. 60 IN CNAME evil.example."},
			action: query.ActionBlock, reason: "cname", list: "malware", cname: "evil.example.", ede: 15},
		// Allowlist mode.
		{name: "allowlist_inspect_target_not_allowed", policy: "sensitive", qname: "bucket.s3.amazonaws.com.",
			rrs:    []string{"bucket.s3.amazonaws.com. 60 IN CNAME s3-w.amazonaws.com.", "s3-w.amazonaws.com. 5 IN A 192.0.2.10"},
			action: query.ActionBlock, reason: "cname", cname: "s3-w.amazonaws.com.", ede: 18},
		{name: "allowlist_inspect_all_targets_allowed", policy: "sensitive", qname: "bucket.s3.amazonaws.com.",
			rrs:    []string{"bucket.s3.amazonaws.com. 60 IN CNAME s3-eu.s3.amazonaws.com.", "s3-eu.s3.amazonaws.com. 5 IN A 192.0.2.10"},
			action: query.ActionNone},
		{name: "allowlist_inspect_blocked_target_names_list", policy: "sensitive", qname: "sts.amazonaws.com.",
			rrs:    []string{"sts.amazonaws.com. 60 IN CNAME evil.example."},
			action: query.ActionBlock, reason: "cname", list: "malware", cname: "evil.example.", ede: 15},
		{name: "allowlist_trust_any_target", policy: "trusting", qname: "bucket.s3.amazonaws.com.",
			rrs:    []string{"bucket.s3.amazonaws.com. 60 IN CNAME s3-w.amazonaws.com.", "s3-w.amazonaws.com. 5 IN A 192.0.2.10"},
			action: query.ActionNone},
		// Rebinding, default policy has rebinding protection.
		{name: "rebinding_rfc1918", policy: "default", qname: "rebind.example.",
			rrs:    []string{"rebind.example. 1 IN A 10.0.0.1"},
			action: query.ActionBlock, reason: "rebinding", cname: "rebind.example.", ede: 17, addr: "10.0.0.1"},
		{name: "rebinding_loopback_v6", policy: "default", qname: "rebind.example.",
			rrs:    []string{"rebind.example. 1 IN AAAA ::1"},
			action: query.ActionBlock, reason: "rebinding", cname: "rebind.example.", ede: 17, addr: "::1"},
		{name: "rebinding_mapped_v4_in_aaaa", policy: "default", qname: "rebind.example.",
			rrs:    []string{"rebind.example. 1 IN AAAA ::ffff:192.168.1.1"},
			action: query.ActionBlock, reason: "rebinding", cname: "rebind.example.", ede: 17, addr: "192.168.1.1"},
		{name: "rebinding_link_local", policy: "default", qname: "rebind.example.",
			rrs:    []string{"rebind.example. 1 IN A 192.0.2.1", "rebind.example. 1 IN A 169.254.169.254"},
			action: query.ActionBlock, reason: "rebinding", cname: "rebind.example.", ede: 17, addr: "169.254.169.254"},
		{name: "rebinding_https_ipv4hint", policy: "default", qname: "rebind.example.",
			rrs:    []string{`rebind.example. 1 IN HTTPS 1 . alpn="h2" ipv4hint="192.0.2.1,10.9.8.7"`},
			action: query.ActionBlock, reason: "rebinding", cname: "rebind.example.", ede: 17, addr: "10.9.8.7"},
		{name: "rebinding_svcb_ipv6hint", policy: "default", qname: "_dns.rebind.example.",
			rrs:    []string{`_dns.rebind.example. 1 IN SVCB 1 dns.rebind.example. ipv6hint="fd00::53"`},
			action: query.ActionBlock, reason: "rebinding", cname: "_dns.rebind.example.", ede: 17, addr: "fd00::53"},
		{name: "https_public_hints_pass", policy: "default", qname: "fine.example.",
			rrs:    []string{`fine.example. 1 IN HTTPS 1 . alpn="h2" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1"`},
			action: query.ActionNone},
		{name: "rebinding_zero_network", policy: "default", qname: "rebind.example.",
			rrs:    []string{"rebind.example. 1 IN A 0.0.0.0"},
			action: query.ActionBlock, reason: "rebinding", cname: "rebind.example.", ede: 17, addr: "0.0.0.0"},
		{name: "rebinding_through_cname_into_private_zone", policy: "default", qname: "public.example.",
			rrs:    []string{"public.example. 60 IN CNAME host.internal.", "host.internal. 60 IN A 10.1.1.1"},
			action: query.ActionBlock, reason: "rebinding", cname: "host.internal.", ede: 17, addr: "10.1.1.1"},
		{name: "public_address_fine", policy: "default", qname: "www.example.",
			rrs: []string{"www.example. 60 IN A 192.0.2.80", "www.example. 60 IN AAAA 2001:db8::80"}, action: query.ActionNone},
		{name: "internal_zone", policy: "default", qname: "db.Internal.", rrs: []string{"db.internal. 60 IN A 10.0.0.5"},
			action: query.ActionNone},
		{name: "local_zone", policy: "default", qname: "printer.local.", rrs: []string{"printer.local. 60 IN A 192.168.1.20"},
			action: query.ActionNone},
		{name: "home_arpa_zone", policy: "default", qname: "nas.home.arpa.", rrs: []string{"nas.home.arpa. 60 IN A 192.168.1.21"},
			action: query.ActionNone},
		{name: "reverse_zone", policy: "default", qname: "5.0.0.10.in-addr.arpa.",
			rrs: []string{"5.0.0.10.in-addr.arpa. 60 IN CNAME 5.0-24.0.0.10.in-addr.arpa."}, action: query.ActionNone},
		{name: "single_label", policy: "default", qname: "nas.", rrs: []string{"nas. 60 IN A 192.168.1.22"},
			action: query.ActionNone},
		{name: "rebinding_exempt_domain", policy: "default", qname: "git.lab.example.",
			rrs: []string{"git.lab.example. 60 IN A 10.2.2.2"}, action: query.ActionNone},
		{name: "allow_listed_name_may_be_private", policy: "default", qname: "vpn.corp.example.",
			rrs: []string{"vpn.corp.example. 60 IN A 10.9.9.9"}, action: query.ActionNone},
		{name: "rebinding_off", policy: "trusting", qname: "s3.amazonaws.com.",
			rrs: []string{"s3.amazonaws.com. 60 IN A 10.0.0.1"}, action: query.ActionNone},
		{name: "empty_answer", policy: "default", qname: "rebind.example.", action: query.ActionNone},
		{name: "root_name", policy: "default", qname: ".", rrs: []string{". 60 IN A 10.0.0.1"},
			action: query.ActionNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := answerMsg(t, tc.qname, tc.rrs...)
			before := resp.String()
			d := s.InspectResponse(tc.policy, tc.qname, resp)
			if resp.String() != before {
				t.Errorf("InspectResponse modified the response")
			}
			addr := ""
			if d.Addr.IsValid() {
				addr = d.Addr.String()
			}
			if d.Action != tc.action || d.Reason != tc.reason || d.List != tc.list || d.CNAME != tc.cname ||
				d.EDE != tc.ede || addr != tc.addr || d.Policy != tc.policy {
				t.Errorf("InspectResponse = %+v\nwant action %v reason %q list %q cname %q ede %d addr %q",
					d, tc.action, tc.reason, tc.list, tc.cname, tc.ede, tc.addr)
			}
		})
	}
	t.Run("nil_response", func(t *testing.T) {
		if d := s.InspectResponse("default", "x.example.", nil); d.Action != query.ActionNone {
			t.Errorf("InspectResponse(nil) = %+v", d)
		}
	})
}
