package policy

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

func TestDecide(t *testing.T) {
	s := mustCompile(t, testConfig(), testLists(t))
	tests := []struct {
		name     string
		policy   string
		qname    string
		qtype    uint16 // 0: A
		action   query.Action
		list     string
		category string
		rule     string
		line     int
		reason   string
		ede      uint16
	}{
		{name: "no_match_open", policy: "default", qname: "example.org.", action: query.ActionNone},
		{name: "block_list", policy: "default", qname: "evil.example.", action: query.ActionBlock,
			list: "malware", category: "malware", rule: "||evil.example^", line: 3, reason: "list", ede: 15},
		{name: "block_subdomain_any_case_no_dot", policy: "default", qname: "WWW.Evil.Example",
			action: query.ActionBlock, list: "malware", category: "malware", reason: "list", ede: 15,
			rule: "||evil.example^", line: 3},
		{name: "allow_beats_block", policy: "default", qname: "safe.evil.example.", action: query.ActionAllow,
			list: "corp-allow", category: "corp", rule: "||safe.evil.example^", line: 3, reason: "list"},
		{name: "block_beats_alert", policy: "default", qname: "evil.example.", action: query.ActionBlock,
			list: "malware", category: "malware", rule: "||evil.example^", line: 3, reason: "list", ede: 15},
		{name: "alert", policy: "default", qname: "files.share.example.", action: query.ActionAlert,
			list: "file-sharing", category: "sharing", rule: "||share.example^", line: 2, reason: "list"},
		{name: "block_list_exception_allows", policy: "default", qname: "x.ok.ads.example.",
			action: query.ActionAllow, list: "ads", category: "ads", rule: "@@||ok.ads.example^", line: 3,
			reason: "list"},
		{name: "important_beats_exception_in_other_list", policy: "default", qname: "very.ok.ads.example.",
			action: query.ActionBlock, list: "malware", category: "malware",
			rule: "||very.ok.ads.example^$important", line: 5, reason: "list", ede: 15},
		{name: "allowlist_mode_not_allowed", policy: "sensitive", qname: "example.org.",
			action: query.ActionBlock, reason: "allowlist_mode", ede: 18},
		{name: "allowlist_mode_allowed", policy: "sensitive", qname: "bucket.s3.amazonaws.com.",
			action: query.ActionAllow, list: "aws-endpoints", category: "cloud", rule: "||s3.amazonaws.com^",
			line: 2, reason: "list"},
		{name: "allowlist_mode_block_list_names_list", policy: "sensitive", qname: "evil.example.",
			action: query.ActionBlock, list: "malware", category: "malware", rule: "||evil.example^", line: 3,
			reason: "list", ede: 15},
		{name: "allowlist_mode_exception_does_not_allow", policy: "sensitive", qname: "ok.ads.example.",
			action: query.ActionBlock, reason: "allowlist_mode", ede: 18},
		{name: "category_selects_lists", policy: "trusting", qname: "sts.amazonaws.com.",
			action: query.ActionAllow, list: "aws-endpoints", category: "cloud", rule: "||sts.amazonaws.com^",
			line: 3, reason: "list"},
		{name: "unknown_policy_falls_back_to_default", policy: "nope", qname: "ads.example.",
			action: query.ActionBlock, list: "ads", category: "ads", rule: "||ads.example^", line: 2,
			reason: "list", ede: 15},
		{name: "root_open", policy: "default", qname: ".", action: query.ActionNone},
		{name: "root_allowlist", policy: "sensitive", qname: ".", action: query.ActionBlock,
			reason: "allowlist_mode", ede: 18},
		{name: "empty_name", policy: "default", qname: "", action: query.ActionNone},
		{name: "arpa_reverse", policy: "default", qname: "1.0.0.10.in-addr.arpa.", action: query.ActionNone},
		{name: "qtype_blocked", policy: "sensitive", qname: "x.tunnel.example.", qtype: dns.TypeNULL,
			action: query.ActionBlock, rule: "NULL", reason: "qtype", ede: 15},
		{name: "qtype_block_beats_allow_list", policy: "sensitive", qname: "bucket.s3.amazonaws.com.",
			qtype: dns.TypeTXT, action: query.ActionBlock, rule: "TXT", reason: "qtype", ede: 15},
		{name: "qtype_rfc3597_form", policy: "sensitive", qname: "bucket.s3.amazonaws.com.", qtype: 65399,
			action: query.ActionBlock, rule: "TYPE65399", reason: "qtype", ede: 15},
		{name: "qtype_not_listed_goes_to_lists", policy: "sensitive", qname: "bucket.s3.amazonaws.com.",
			qtype: dns.TypeAAAA, action: query.ActionAllow, list: "aws-endpoints", category: "cloud",
			rule: "||s3.amazonaws.com^", line: 2, reason: "list"},
		{name: "qtype_blocks_only_its_policy", policy: "default", qname: "example.org.", qtype: dns.TypeTXT,
			action: query.ActionNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			qtype := tc.qtype
			if qtype == 0 {
				qtype = dns.TypeA
			}
			d := s.Decide(tc.policy, tc.qname, qtype)
			if d.Action != tc.action || d.List != tc.list || d.Category != tc.category ||
				d.Match.Rule != tc.rule || d.Reason != tc.reason || d.EDE != tc.ede {
				t.Fatalf("Decide(%q, %q) = %+v\nwant action %v list %q category %q rule %q reason %q ede %d",
					tc.policy, tc.qname, d, tc.action, tc.list, tc.category, tc.rule, tc.reason, tc.ede)
			}
			if tc.reason == ReasonQtype {
				if d.Match.Source != "policies."+tc.policy+".block_qtypes" {
					t.Errorf("Source = %q, want the config key", d.Match.Source)
				}
			} else if tc.rule != "" && (d.Match.Line != tc.line || d.Match.Source != tc.list+".txt") {
				t.Errorf("match position = %s:%d, want %s.txt:%d", d.Match.Source, d.Match.Line, tc.list, tc.line)
			}
			wantPolicy := tc.policy
			if wantPolicy == "nope" {
				wantPolicy = "default"
			}
			if d.Policy != wantPolicy {
				t.Errorf("Policy = %q, want %q", d.Policy, wantPolicy)
			}
		})
	}
}

func TestIdentify(t *testing.T) {
	s := mustCompile(t, testConfig(), testLists(t))
	tests := []struct {
		name                string
		addr                string
		group, policy, wkld string
	}{
		{name: "v4_first_match_wins", addr: "10.0.8.5", group: "payments", policy: "sensitive", wkld: "payments-db-1"},
		{name: "v4_second_group", addr: "10.1.2.3", group: "wide", policy: "trusting"},
		{name: "v4_mapped_v6", addr: "::ffff:10.0.8.5", group: "payments", policy: "sensitive", wkld: "payments-db-1"},
		{name: "v6_cidr", addr: "fd00:8::5", group: "payments", policy: "sensitive", wkld: "payments-db-2"},
		{name: "v6_with_zone", addr: "fd00:8::7%eth0", group: "payments", policy: "sensitive"},
		{name: "v6_single_address", addr: "2001:db8::1", group: "wide", policy: "trusting"},
		{name: "v6_outside", addr: "2001:db8::2", policy: "default"},
		{name: "mapped_cidr_matches_v4", addr: "192.168.7.9", group: "lab", policy: "default"},
		{name: "no_group", addr: "192.0.2.1", policy: "default"},
		{name: "loopback", addr: "127.0.0.1", policy: "default"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g, p, n := s.Identify(mustAddr(t, tc.addr))
			if g != tc.group || p != tc.policy || n != tc.wkld {
				t.Errorf("Identify(%s) = (%q, %q, %q), want (%q, %q, %q)", tc.addr, g, p, n, tc.group, tc.policy, tc.wkld)
			}
		})
	}
	t.Run("invalid_addr", func(t *testing.T) {
		if g, p, n := s.Identify(netip.Addr{}); g != "" || p != "default" || n != "" {
			t.Errorf("Identify(invalid) = (%q, %q, %q)", g, p, n)
		}
	})
}

func TestCompileDefaults(t *testing.T) {
	s := mustCompile(t, Config{Policies: map[string]PolicyConfig{"x": {}}}, nil)
	if got, want := s.Policies(), []string{"default", "x"}; !slices.Equal(got, want) {
		t.Errorf("Policies() = %v, want %v", got, want)
	}
	if d := s.Decide("default", "anything.example.", dns.TypeA); d.Action != query.ActionNone {
		t.Errorf("implicit default policy decided %+v", d)
	}
	if s.BlockTTL() != DefaultBlockTTL {
		t.Errorf("BlockTTL() = %s, want %s", s.BlockTTL(), DefaultBlockTTL)
	}
	if got := s.DetectMode("x"); got != "observe" {
		t.Errorf("DetectMode(x) = %q, want observe", got)
	}
	full := mustCompile(t, testConfig(), testLists(t))
	for p, want := range map[string]string{"sensitive": "enforce", "trusting": "off", "default": "observe", "nope": "observe"} {
		if got := full.DetectMode(p); got != want {
			t.Errorf("DetectMode(%s) = %q, want %q", p, got, want)
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Config)
		want []string
	}{
		{
			name: "unknown_list_or_category",
			edit: func(c *Config) {
				c.Policies["payments"] = PolicyConfig{Block: []string{"malwar", "malware"}, Alert: []string{"nope"}}
			},
			want: []string{`policies.payments.block: unknown list or category "malwar"`,
				`policies.payments.alert: unknown list or category "nope"`},
		},
		{
			name: "bad_enums",
			edit: func(c *Config) {
				c.Policies["x"] = PolicyConfig{Mode: "closed", BlockResponse: "drop", CNAME: "follow", Detect: "on"}
			},
			want: []string{`policies.x.mode: invalid value "closed" (want open | allowlist)`,
				`policies.x.block_response: invalid value "drop" (want nxdomain | nodata | refused | sinkhole)`,
				`policies.x.cname: invalid value "follow" (want inspect | trust)`,
				`policies.x.detect: invalid value "on" (want off | observe | enforce)`},
		},
		{
			name: "groups",
			edit: func(c *Config) {
				c.Groups = append(c.Groups,
					GroupConfig{Name: "payments", CIDRs: []string{"10.0.0/8", "10.9.0.0/33"}, Policy: "paymnets"},
					GroupConfig{CIDRs: nil},
				)
			},
			want: []string{`clients.groups[3].name: duplicate group "payments" (also clients.groups[0])`,
				`clients.groups[3].policy: unknown policy "paymnets"`,
				`clients.groups[3].cidrs[0]: invalid CIDR "10.0.0/8"`,
				`clients.groups[3].cidrs[1]: invalid CIDR "10.9.0.0/33"`,
				`clients.groups[4].name: required`,
				`clients.groups[4].cidrs: at least one CIDR required`},
		},
		{
			name: "names",
			edit: func(c *Config) { c.Names["10.0.8"] = "x"; c.Names["::ffff:10.0.8.5"] = "dup" },
			want: []string{`clients.names["10.0.8"]: invalid IP address`,
				`clients.names["::ffff:10.0.8.5"]: address 10.0.8.5 already named "payments-db-1"`},
		},
		{
			name: "block_qtypes",
			edit: func(c *Config) {
				c.Policies["x"] = PolicyConfig{BlockQtypes: []string{"NULL", "NUL", "AXFR", "OPT", "TYPE0", "TYPE70000", ""}}
			},
			want: []string{`policies.x.block_qtypes[1]: unknown query type "NUL" (want a type such as NULL, TXT or TYPE65399)`,
				`policies.x.block_qtypes[2]: AXFR queries are never forwarded (dnsvalve answers them itself, before any policy)`,
				`policies.x.block_qtypes[3]: OPT queries are never forwarded`,
				`policies.x.block_qtypes[4]: unknown query type "TYPE0"`,
				`policies.x.block_qtypes[5]: unknown query type "TYPE70000"`,
				`policies.x.block_qtypes[6]: empty query type (YAML reads a bare NULL as null: write "NULL", quoted)`},
		},
		{
			name: "block_ttl_and_sinkhole",
			edit: func(c *Config) {
				c.BlockTTL = 10 * time.Millisecond
				c.Sinkhole = []netip.Addr{{}, netip.MustParseAddr("fe80::1%eth0")}
			},
			want: []string{`block_ttl: 10ms is below one second`, `sinkhole[0]: invalid address`,
				`sinkhole[1]: address "fe80::1%eth0" must not have a zone`},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfig()
			tc.edit(&cfg)
			s, err := Compile(cfg, testLists(t))
			if err == nil {
				t.Fatalf("Compile succeeded: %v", s.Policies())
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not wrap ErrConfig: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
			if got := strings.Count(err.Error(), "\n") + 1; got != len(tc.want) {
				t.Errorf("got %d problems, want %d:\n%v", got, len(tc.want), err)
			}
		})
	}
	t.Run("nil_list", func(t *testing.T) {
		_, err := Compile(Config{}, map[string]Matcher{"broken": nil})
		if err == nil || !strings.Contains(err.Error(), "lists.broken: nil list") {
			t.Errorf("Compile = %v, want lists.broken error", err)
		}
	})
}

func TestStore(t *testing.T) {
	a := mustCompile(t, Config{}, nil)
	b := mustCompile(t, testConfig(), testLists(t))
	st := NewStore(a)
	if st.Load() != a {
		t.Fatal("Load did not return the initial snapshot")
	}
	held := st.Load()
	st.Swap(b)
	if st.Load() != b {
		t.Fatal("Load did not return the swapped snapshot")
	}
	if d := held.Decide("default", "evil.example.", dns.TypeA); d.Action != query.ActionNone {
		t.Errorf("old snapshot changed by swap: %+v", d)
	}
	if d := st.Load().Decide("default", "evil.example.", dns.TypeA); d.Action != query.ActionBlock {
		t.Errorf("new snapshot does not block: %+v", d)
	}
}

func TestDecideAllocs(t *testing.T) {
	s := mustCompile(t, testConfig(), testLists(t))
	for _, q := range []string{"www.evil.example.", "example.org.", "safe.evil.example.", "files.share.example."} {
		if n := testing.AllocsPerRun(100, func() { s.Decide("default", q, dns.TypeA) }); n != 0 {
			t.Errorf("Decide(%q) allocates %.0f times", q, n)
		}
	}
	for _, qt := range []uint16{dns.TypeNULL, 65399, dns.TypeA} {
		if n := testing.AllocsPerRun(100, func() { s.Decide("sensitive", "example.org.", qt) }); n != 0 {
			t.Errorf("Decide(sensitive, %s) allocates %.0f times", dns.TypeToString[qt], n)
		}
	}
}

// TestStoreConcurrent swaps snapshots while readers decide; run with -race.
func TestStoreConcurrent(t *testing.T) {
	open := mustCompile(t, Config{}, nil)
	strict := mustCompile(t, testConfig(), testLists(t))
	st := NewStore(open)
	done := make(chan struct{})
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				snap := st.Load()
				d := snap.Decide("default", "evil.example.", dns.TypeA)
				if snap == strict && d.Action != query.ActionBlock || snap == open && d.Action != query.ActionNone {
					bad.Add(1)
				}
			}
		})
	}
	for i := range 1000 {
		if i%2 == 0 {
			st.Swap(strict)
		} else {
			st.Swap(open)
		}
	}
	close(done)
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Errorf("%d decisions did not match the snapshot they loaded", n)
	}
}

// TestImportantExceptionAcrossLists: the block lists of a policy are one
// rule set: an important exception beats an important block whichever
// list holds each (README, adblock format), as within one list.
func TestImportantExceptionAcrossLists(t *testing.T) {
	ls := map[string]Matcher{
		"ads":      newList(t, "ads", "ads", "||tracker.example^$important\n"),
		"override": newList(t, "override", "override", "@@||tracker.example^$important\n"),
	}
	tests := []struct {
		name  string
		block []string
	}{
		{name: "exception_list_first", block: []string{"override", "ads"}},
		{name: "exception_list_last", block: []string{"ads", "override"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := mustCompile(t, Config{Policies: map[string]PolicyConfig{
				"default": {Block: tc.block},
			}}, ls)
			d := s.Decide("default", "tracker.example.", dns.TypeA)
			if d.Action != query.ActionAllow || d.List != "override" {
				t.Fatalf("Decide = %+v, want allow by list override (important exception beats everything)", d)
			}
			// The same two rules in one list do allow (lists.rank).
			one := mustCompile(t, Config{Policies: map[string]PolicyConfig{"default": {Block: []string{"both"}}}},
				map[string]Matcher{"both": newList(t, "both", "both",
					"||tracker.example^$important\n@@||tracker.example^$important\n")})
			if d := one.Decide("default", "tracker.example.", dns.TypeA); d.Action != query.ActionAllow {
				t.Fatalf("single list: Decide = %+v, want allow", d)
			}
		})
	}
}

// TestAllowListOfExceptions: allow lists are commonly published as
// exceptions (hagezi's "@@|tags.tiqcdn.com^", AdGuard's "@@||name^"), and
// AdGuard Home reads them as allow rules: so does an allow: list here, in
// open and allowlist mode.
func TestAllowListOfExceptions(t *testing.T) {
	ls := map[string]Matcher{
		"hagezi-allow": newList(t, "hagezi-allow", "allow", "! Title: HaGeZi's Allowlist\n@@|tags.tiqcdn.com^\n@@||cc-api-data.adobe.io^\n"),
		"ads":          newList(t, "ads", "ads", "||tiqcdn.com^\n"),
	}
	s := mustCompile(t, Config{Policies: map[string]PolicyConfig{
		"default": {Allow: []string{"hagezi-allow"}, Block: []string{"ads"}},
		"strict":  {Mode: ModeAllowlist, Allow: []string{"allow"}},
	}}, ls)
	tests := []struct {
		name, policy, qname string
	}{
		{name: "open_allow_beats_block", policy: "default", qname: "tags.tiqcdn.com."},
		{name: "allowlist_mode_listed", policy: "strict", qname: "tags.tiqcdn.com."},
		{name: "allowlist_mode_listed_subdomain", policy: "strict", qname: "x.cc-api-data.adobe.io."},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := s.Decide(tc.policy, tc.qname, dns.TypeA)
			if d.Action != query.ActionAllow {
				t.Fatalf("Decide(%s, %s) = %+v, want allow by list hagezi-allow", tc.policy, tc.qname, d)
			}
		})
	}
}

// TestExceptionDoesNotSilenceAlert: a block list's exception undoes its
// blocks, not another list's alert: an ad list unblocking a name must not
// hide it from a security alert list.
func TestExceptionDoesNotSilenceAlert(t *testing.T) {
	ls := map[string]Matcher{
		"ads":   newList(t, "ads", "ads", "||files.example^\n@@||files.example^\n||ads.example^\n@@||ok.ads.example^\n"),
		"files": newList(t, "files", "filesharing", "||files.example^\n"),
	}
	s := mustCompile(t, Config{Policies: map[string]PolicyConfig{
		"default": {Block: []string{"ads"}, Alert: []string{"files"}},
	}}, ls)
	for _, tc := range []struct {
		qname, want, list string
	}{
		{"files.example.", query.ActionAlert.String(), "files"},
		{"ok.ads.example.", query.ActionAllow.String(), "ads"},
		{"x.ads.example.", query.ActionBlock.String(), "ads"},
	} {
		d := s.Decide("default", tc.qname, dns.TypeA)
		if d.Action.String() != tc.want || d.List != tc.list {
			t.Errorf("Decide(%s) = %s by %q, want %s by %q", tc.qname, d.Action, d.List, tc.want, tc.list)
		}
	}
}

func TestTypeFromString(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint16
		ok   bool
	}{
		{"AAAA", dns.TypeAAAA, true},
		{"null", dns.TypeNULL, true},
		{"Https", dns.TypeHTTPS, true},
		{"TYPE65399", 65399, true},
		{"type1", dns.TypeA, true},
		{"TYPE65535", 65535, true},
		{"TYPE0", 0, false},
		{"TYPE65536", 0, false},
		{"TYPE", 0, false},
		{"TYPE+1", 0, false},
		{"BOGUS", 0, false},
		{"", 0, false},
	} {
		if got, ok := TypeFromString(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("TypeFromString(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
