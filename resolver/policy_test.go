package resolver_test

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

func TestServerPolicy(t *testing.T) {
	t.Parallel()
	ls := map[string]policy.Matcher{
		"ads":   buildList(t, "ads", "advertising", "# ad servers\nads.example\ntracker.example.net\n"),
		"corp":  buildList(t, "corp", "corp-allow", "corp.example\n"),
		"share": buildList(t, "share", "file-sharing", "files.share.example\n"),
	}
	// The upstream answers every name; cloak.shop.example hides behind a
	// CNAME to a blocked tracker.
	handler := func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		qn := r.Question[0].Name
		var rrs []string
		switch {
		case strings.HasPrefix(qn, "cloak."):
			rrs = []string{qn + " 300 IN CNAME edge.cdn.example.", "edge.cdn.example. 300 IN CNAME px.tracker.example.net.", "px.tracker.example.net. 300 IN A 192.0.2.66"}
		case strings.HasPrefix(qn, "shared."):
			rrs = []string{qn + " 300 IN CNAME files.share.example.", "files.share.example. 300 IN A 192.0.2.77"}
		default:
			rrs = []string{qn + " 300 IN A 192.0.2.1"}
		}
		for _, s := range rrs {
			rr, _ := dns.NewRR(s)
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	}
	open := policy.Config{Policies: map[string]policy.PolicyConfig{
		"default": {Block: []string{"ads"}, Alert: []string{"file-sharing"}, Allow: []string{"corp"}},
	}}
	allowlist := policy.Config{Policies: map[string]policy.PolicyConfig{
		"default": {Mode: policy.ModeAllowlist, Allow: []string{"corp-allow"}},
	}}
	sinkhole := policy.Config{Policies: map[string]policy.PolicyConfig{
		"default": {Block: []string{"ads"}, BlockResponse: policy.ResponseSinkhole},
	}}
	cases := []struct {
		name     string
		cfg      policy.Config
		qname    string
		bufsize  uint16
		rcode    int
		ede      uint16 // 0: none expected
		soa      bool   // SOA in authority
		answers  int
		upstream int64
		action   query.Action
		list     string
	}{
		{"block_exact", open, "ads.example.", 1232, dns.RcodeNameError, dns.ExtendedErrorCodeBlocked, true, 0, 0, query.ActionBlock, "ads"},
		{"block_subdomain_mixed_case", open, "Pixel.ADS.example.", 1232, dns.RcodeNameError, dns.ExtendedErrorCodeBlocked, true, 0, 0, query.ActionBlock, "ads"},
		{"block_no_edns", open, "ads.example.", 0, dns.RcodeNameError, 0, true, 0, 0, query.ActionBlock, "ads"},
		{"not_listed_forwarded", open, "www.example.org.", 1232, dns.RcodeSuccess, 0, false, 1, 1, query.ActionNone, ""},
		{"allow_list_forwarded", open, "app.corp.example.", 1232, dns.RcodeSuccess, 0, false, 1, 1, query.ActionAllow, "corp"},
		{"alert_answered", open, "files.share.example.", 1232, dns.RcodeSuccess, 0, false, 1, 1, query.ActionAlert, "share"},
		{"cname_chain_blocked", open, "cloak.shop.example.", 1232, dns.RcodeNameError, dns.ExtendedErrorCodeBlocked, true, 0, 1, query.ActionBlock, "ads"},
		{"cname_chain_alert", open, "shared.example.", 1232, dns.RcodeSuccess, 0, false, 2, 1, query.ActionAlert, "share"},
		{"allowlist_blocks_unlisted", allowlist, "www.example.org.", 1232, dns.RcodeNameError, dns.ExtendedErrorCodeProhibited, true, 0, 0, query.ActionBlock, ""},
		{"allowlist_allows_listed", allowlist, "Mail.Corp.Example.", 1232, dns.RcodeSuccess, 0, false, 1, 1, query.ActionAllow, "corp"},
		{"allowlist_cname_to_unlisted", allowlist, "cloak.corp.example.", 1232, dns.RcodeNameError, dns.ExtendedErrorCodeProhibited, true, 0, 1, query.ActionBlock, ""},
		{"sinkhole", sinkhole, "ads.example.", 1232, dns.RcodeSuccess, dns.ExtendedErrorCodeBlocked, false, 1, 0, query.ActionBlock, "ads"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, harnessConfig{policy: c.cfg, lists: ls, handler: handler})
			for _, network := range []string{"udp", "tcp"} {
				m := msg(c.qname, dns.TypeA, c.bufsize, false)
				r := h.exchange(t, network, m)
				wantRcode(t, r, c.rcode)
				if r.Id != m.Id || r.Question[0].Name != c.qname || !r.RecursionAvailable {
					t.Errorf("%s: id %#x question %v RA %v, want the client's id and spelling with RA", network, r.Id, r.Question, r.RecursionAvailable)
				}
				if c.ede != 0 {
					e := wantEDE(t, r, c.ede)
					if c.list != "" && !strings.Contains(e.ExtraText, c.list) {
						t.Errorf("%s: EDE text %q does not name list %q", network, e.ExtraText, c.list)
					}
				} else if len(ede(r)) != 0 {
					t.Errorf("%s: unexpected EDE %v", network, ede(r))
				}
				if c.bufsize == 0 && r.IsEdns0() != nil {
					t.Errorf("%s: client without EDNS0 got an OPT", network)
				}
				if got := len(r.Ns) == 1 && r.Ns[0].Header().Rrtype == dns.TypeSOA; got != c.soa {
					t.Errorf("%s: authority %v, want SOA %v", network, r.Ns, c.soa)
				}
				if len(r.Answer) != c.answers {
					t.Errorf("%s: answers %v, want %d", network, r.Answer, c.answers)
				}
				if c.name == "sinkhole" && len(r.Answer) == 1 {
					if a, ok := r.Answer[0].(*dns.A); !ok || !a.A.IsUnspecified() {
						t.Errorf("sinkhole answer %v, want 0.0.0.0", r.Answer[0])
					}
				}
				o := h.obs.next(t)
				if o.Info.Action != c.action || o.Info.List != c.list {
					t.Errorf("%s: observed action %v list %q, want %v %q", network, o.Info.Action, o.Info.List, c.action, c.list)
				}
				if c.action == query.ActionBlock && c.list != "" && o.Info.Rule == "" {
					t.Errorf("%s: block without the matched rule in Info", network)
				}
			}
			// The second query (TCP) of a forwarded name is a cache hit.
			if n := h.up.hits.Load(); n != c.upstream {
				t.Errorf("upstream asked %d times, want %d", n, c.upstream)
			}
		})
	}
}

// TestServerPolicySwap checks that a new snapshot applies to the next
// query without restarting anything.
func TestServerPolicySwap(t *testing.T) {
	t.Parallel()
	ls := map[string]policy.Matcher{"ads": buildList(t, "ads", "advertising", "ads.example\n")}
	h := newHarness(t, harnessConfig{lists: ls})
	wantRcode(t, h.exchange(t, "udp", msg("ads.example.", dns.TypeA, 0, false)), dns.RcodeSuccess)
	snap, err := policy.Compile(policy.Config{Policies: map[string]policy.PolicyConfig{"default": {Block: []string{"ads"}}}}, ls)
	if err != nil {
		t.Fatal(err)
	}
	h.store.Swap(snap)
	r := h.exchange(t, "udp", msg("ads.example.", dns.TypeA, 1232, false))
	wantRcode(t, r, dns.RcodeNameError)
	wantEDE(t, r, dns.ExtendedErrorCodeBlocked)
}

// TestServerStripHints checks that a policy blocking AAAA strips the
// ipv6hint of HTTPS answers, over UDP and from the cache over TCP, and
// that the cached answer itself keeps it for policies that do not.
func TestServerStripHints(t *testing.T) {
	t.Parallel()
	handler := func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		qn := r.Question[0].Name
		if r.Question[0].Qtype == dns.TypeHTTPS {
			rr, err := dns.NewRR(qn + ` 300 IN HTTPS 1 . alpn="h2,h3" ipv4hint="192.0.2.1" ipv6hint="2001:db8::1"`)
			if err != nil {
				panic(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		_ = w.WriteMsg(m)
	}
	noAAAA := policy.Config{Policies: map[string]policy.PolicyConfig{"default": {BlockQtypes: []string{"AAAA"}}}}
	h := newHarness(t, harnessConfig{policy: noAAAA, handler: handler})
	params := func(network string) string {
		r := h.exchange(t, network, msg("www.example.org.", dns.TypeHTTPS, 1232, false))
		wantRcode(t, r, dns.RcodeSuccess)
		if len(r.Answer) != 1 {
			t.Fatalf("%s: answers %v, want one HTTPS", network, r.Answer)
		}
		https, ok := r.Answer[0].(*dns.HTTPS)
		if !ok {
			t.Fatalf("%s: answer %v is no HTTPS record", network, r.Answer[0])
		}
		var keys []string
		for _, kv := range https.Value {
			keys = append(keys, kv.Key().String()+"="+kv.String())
		}
		return strings.Join(keys, " ")
	}
	const stripped, whole = "alpn=h2,h3 ipv4hint=192.0.2.1", "alpn=h2,h3 ipv4hint=192.0.2.1 ipv6hint=2001:db8::1"
	for _, network := range []string{"udp", "tcp"} { // a miss, then a cache hit
		if got := params(network); got != stripped {
			t.Errorf("%s: HTTPS params %q, want %q", network, got, stripped)
		}
	}
	r := h.exchange(t, "udp", msg("www.example.org.", dns.TypeAAAA, 1232, false))
	wantRcode(t, r, dns.RcodeSuccess)
	if e := wantEDE(t, r, dns.ExtendedErrorCodeBlocked); e.ExtraText != "query type AAAA blocked by policy default" || len(r.Answer) != 0 {
		t.Errorf("AAAA: EDE text %q, answers %v; want the qtype block, NODATA", e.ExtraText, r.Answer)
	}
	snap, err := policy.Compile(policy.Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	h.store.Swap(snap)
	if got := params("udp"); got != whole {
		t.Errorf("after the swap: HTTPS params %q, want the cached record whole %q", got, whole)
	}
	if n := h.up.hits.Load(); n != 1 {
		t.Errorf("upstream asked %d times, want 1 (the AAAA query is blocked, the rest are cache hits)", n)
	}
}
