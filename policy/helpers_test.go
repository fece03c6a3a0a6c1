package policy

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/dnsvalve/dnsvalve/policy/lists"
)

// newList builds a real list named name in category from adblock lines;
// the source is name+".txt".
func newList(tb testing.TB, name, category, text string) Matcher {
	tb.Helper()
	return newListFormat(tb, name, category, lists.FormatAdblock, text)
}

// newListFormat is newList for any list format; every line must parse.
func newListFormat(tb testing.TB, name, category string, format lists.Format, text string) *lists.List {
	tb.Helper()
	b := lists.NewBuilder()
	st, err := lists.Parse(strings.NewReader(text), name+".txt", format, b)
	if err != nil {
		tb.Fatalf("parse list %s: %v", name, err)
	}
	if st.Invalid != 0 || st.Skipped != 0 {
		tb.Fatalf("parse list %s: %d invalid, %d skipped lines: %v", name, st.Invalid, st.Skipped, st.FirstErrors)
	}
	return b.Build(name, category)
}

// testLists are the lists behind testConfig.
func testLists(tb testing.TB) map[string]Matcher {
	tb.Helper()
	ls := []Matcher{
		newList(tb, "corp-allow", "corp", `
||corp.example^
||safe.evil.example^
||cdn.corp-partner.example^
`),
		newList(tb, "aws-endpoints", "cloud", `
||s3.amazonaws.com^
||sts.amazonaws.com^
||ec2.internal^
`),
		newList(tb, "malware", "malware", `
! malware domains
||evil.example^
||cloak.tracker.example^
||very.ok.ads.example^$important
`),
		newList(tb, "ads", "ads", `
||ads.example^
@@||ok.ads.example^
`),
		newList(tb, "ads-extra", "ads", `
||banners.example^
`),
		newList(tb, "file-sharing", "sharing", `
||share.example^
||evil.example^
||alert-target.example^
`),
	}
	m := map[string]Matcher{}
	for _, l := range ls {
		m[l.Name()] = l
	}
	return m
}

// testConfig has: an open default policy with allow, block (a list and a
// category), alert and rebinding protection; an allowlist policy
// "sensitive" (cname inspect) and "trusting" (cname trust); groups
// payments (v4 + v6) before wide (10/8).
func testConfig() Config {
	return Config{
		Groups: []GroupConfig{
			{Name: "payments", CIDRs: []string{"10.0.8.0/24", "fd00:8::/64"}, Policy: "sensitive"},
			{Name: "wide", CIDRs: []string{"10.0.0.0/8", "2001:db8::1"}, Policy: "trusting"},
			{Name: "lab", CIDRs: []string{"::ffff:192.168.7.0/120"}},
		},
		Names: map[string]string{
			"10.0.8.5":  "payments-db-1",
			"fd00:8::5": "payments-db-2",
		},
		Policies: map[string]PolicyConfig{
			"default": {
				Allow:           []string{"corp-allow"},
				Block:           []string{"malware", "ads"},
				Alert:           []string{"file-sharing"},
				Rebinding:       true,
				RebindingExempt: []string{"Lab.Example."},
			},
			"sensitive": {Mode: "allowlist", Allow: []string{"aws-endpoints"}, Block: []string{"malware"},
				BlockResponse: "refused", Detect: "enforce", Rebinding: true,
				BlockQtypes: []string{"null", "TXT", "TYPE65399", "txt"}},
			"trusting": {Mode: "allowlist", Allow: []string{"cloud"}, CNAME: "trust", BlockResponse: "nodata",
				Detect: "off"},
		},
	}
}

func mustCompile(tb testing.TB, cfg Config, ls map[string]Matcher) *Snapshot {
	tb.Helper()
	s, err := Compile(cfg, ls)
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return s
}

func mustAddr(tb testing.TB, s string) netip.Addr {
	tb.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
