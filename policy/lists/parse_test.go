package lists

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// build parses src in format f and compiles it.
func build(tb testing.TB, src string, f Format) (Stats, *List) {
	tb.Helper()
	b := NewBuilder()
	st, err := Parse(strings.NewReader(src), "test.txt", f, b)
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	return st, b.Build("test", "")
}

type want struct {
	name   string
	ok     bool
	rule   string
	action Action
	line   int
	imp    bool
}

func checkMatches(t *testing.T, l *List, wants []want) {
	t.Helper()
	for _, w := range wants {
		m, ok := l.Match(w.name)
		if ok != w.ok {
			t.Errorf("Match(%q) ok = %v, want %v (%+v)", w.name, ok, w.ok, m)
			continue
		}
		if !ok {
			continue
		}
		if m.Rule != w.rule || m.Action != w.action || (w.line != 0 && m.Line != w.line) || m.Important != w.imp {
			t.Errorf("Match(%q) = %+v, want rule %q action %d line %d important %v", w.name, m, w.rule, w.action, w.line, w.imp)
		}
		if m.Source != "test.txt" {
			t.Errorf("Match(%q).Source = %q", w.name, m.Source)
		}
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name                      string
		format                    Format
		src                       string
		detect                    Format
		entries, invalid, skipped int
		matches                   []want
	}{
		{
			name:   "hosts_forms",
			format: FormatAuto,
			src: "\ufeff# comment\r\n0.0.0.0 ads.example.com tracker.example.net # inline\r\n127.0.0.1 localhost\r\n" +
				"::1 localhost ip6-localhost ip6-loopback\r\n:: v6.example.org\r\n0:0:0:0:0:0:0:0 zeros.example\r\n" +
				"0.0.0.0 0.0.0.0\r\n0.0.0.0 BAD_CASE.Example.COM.\r\n0.0.0.0 bad..name\r\nnot-an-ip name.example\r\n255.255.255.255 broadcasthost\r\n" +
				"127.0.0.1 localhost. localhost4 localhost4.localdomain4\r\n::1 localhost6 localhost6.localdomain6\r\n",
			detect: FormatHosts, entries: 5, invalid: 2, skipped: 11, // skipped: localhost x2, ip6-localhost, ip6-loopback, 0.0.0.0, broadcasthost, localhost. and RHEL's four
			matches: []want{
				{name: "ads.example.com", ok: true, rule: "ads.example.com", action: Block, line: 2},
				{name: "x.ADS.example.com.", ok: true, rule: "ads.example.com", action: Block, line: 2},
				{name: "tracker.example.net", ok: true, rule: "tracker.example.net", line: 2},
				{name: "v6.example.org", ok: true, rule: "v6.example.org", line: 5},
				{name: "zeros.example", ok: true, rule: "zeros.example", line: 6},
				{name: "bad_case.example.com", ok: true, rule: "bad_case.example.com", line: 8},
				{name: "localhost", ok: false},
				{name: "example.com", ok: false},
			},
		},
		{
			name:   "domains_plain_and_idn",
			format: FormatAuto,
			src:    "# list\n\nexample.com\nBücher.example\n*.wild.example\nx*y.example\nbad name\n" + strings.Repeat("a", 64) + ".com\n",
			detect: FormatDomains, entries: 4, invalid: 2,
			matches: []want{
				{name: "example.com", ok: true, rule: "example.com", line: 3},
				{name: "www.example.com", ok: true, rule: "example.com", line: 3},
				{name: "xn--bcher-kva.example", ok: true, rule: "xn--bcher-kva.example", line: 4},
				{name: "a.wild.example", ok: true, rule: "*.wild.example", line: 5},
				{name: "wild.example", ok: false},
				{name: "notexample.com", ok: false},
				{name: "x-and-y.example", ok: true, rule: "x*y.example", line: 6},
				{name: "a.xy.example", ok: true, rule: "x*y.example", line: 6},
				{name: "ax-y.example", ok: false},
			},
		},
		{
			name:   "wildcard_subdomains_only",
			format: FormatAuto,
			src:    "# Syntax: wildcard\n*.ads.example\n*.b.example\nplain.example\n",
			detect: FormatWildcard, entries: 3,
			matches: []want{
				{name: "ads.example", ok: false},
				{name: "x.ads.example", ok: true, rule: "*.ads.example", line: 2},
				{name: "y.x.ads.example.", ok: true, rule: "*.ads.example", line: 2},
				{name: "plain.example", ok: true, rule: "plain.example", line: 4},
			},
		},
		{
			name:   "adblock_rules",
			format: FormatAuto,
			src: "[Adblock Plus 2.0]\n! comment\n||ads.example^\n@@||ok.ads.example^\n||imp.example^$important\n@@||x.imp.example^\n" +
				"||*.wild.example^\n|exact.example^\n@@|allow.example^|\nexample.org##.banner\n||ads.example/path^\n|http://x.example^\n" +
				"||glob*.example^\n||third.example^$third-party\n||prefix.\n/^re[0-9]+\\.example$/\n||bad_.ex ample^\n##.generic\n" +
				"||both.example^\n@@||both.example^\nbare.example\n",
			detect: FormatAdblock, entries: 12, invalid: 1, skipped: 6,
			matches: []want{
				{name: "ads.example", ok: true, rule: "||ads.example^", line: 3},
				{name: "sub.ads.example", ok: true, rule: "||ads.example^", line: 3},
				{name: "ok.ads.example", ok: true, rule: "@@||ok.ads.example^", action: Allow, line: 4},
				{name: "a.ok.ads.example", ok: true, rule: "@@||ok.ads.example^", action: Allow, line: 4},
				{name: "x.imp.example", ok: true, rule: "||imp.example^$important", imp: true, line: 5},
				{name: "wild.example", ok: false},
				{name: "a.wild.example", ok: true, rule: "||*.wild.example^", line: 7},
				{name: "exact.example", ok: true, rule: "|exact.example^", line: 8},
				{name: "sub.exact.example", ok: false},
				{name: "allow.example", ok: true, rule: "@@|allow.example^", action: Allow, line: 9},
				{name: "third.example", ok: false},
				{name: "glob1.example", ok: true, rule: "||glob*.example^", line: 13},
				{name: "www.GLOB.x.Example.", ok: true, rule: "||glob*.example^", line: 13},
				{name: "noglob1.example", ok: false},
				{name: "re42.example", ok: true, rule: "/^re[0-9]+\\.example$/", line: 16},
				{name: "RE42.example.", ok: true, rule: "/^re[0-9]+\\.example$/", line: 16},
				{name: "both.example", ok: true, rule: "@@||both.example^", action: Allow, line: 20},
				{name: "bare.example", ok: true, rule: "bare.example", line: 21},
			},
		},
		{
			name:   "rpz_zone",
			format: FormatAuto,
			src: "$TTL 300\n$ORIGIN rpz.local.\n@ IN SOA ns.rpz.local. admin.rpz.local. (\n  2024010101 ; serial\n  3600 )\n  NS ns.rpz.local.\n" +
				"; comment\nnx.example CNAME .\n*.nx.example CNAME .\nnodata.example 60 IN CNAME *.\npass.nodata.example CNAME rpz-passthru.\n" +
				"abs.example.rpz.local. CNAME .\nlocal.example A 10.0.0.1\n32.1.0.0.127.rpz-ip CNAME .\nbad..example CNAME .\n",
			detect: FormatRPZ, entries: 5, invalid: 1, skipped: 2,
			matches: []want{
				{name: "nx.example", ok: true, rule: "nx.example", action: BlockNXDomain, line: 8},
				{name: "a.nx.example", ok: true, rule: "*.nx.example", action: BlockNXDomain, line: 9},
				{name: "nodata.example", ok: true, rule: "nodata.example", action: BlockNoData, line: 10},
				{name: "x.nodata.example", ok: false},
				{name: "pass.nodata.example", ok: true, rule: "pass.nodata.example", action: Allow, line: 11},
				{name: "abs.example", ok: true, rule: "abs.example", action: BlockNXDomain, line: 12},
				{name: "local.example", ok: false},
			},
		},
		{
			// What a zone transfer writes ("dig axfr", named-compilezone):
			// no $ORIGIN, every owner fully qualified under the SOA
			// owner, which is the apex the triggers are relative to
			// (draft-vixie-dnsop-dns-rpz, section 2), and the SOA again
			// at the end.
			name:   "rpz_zone_transfer_without_origin",
			format: FormatAuto,
			src: "; <<>> DiG <<>> axfr rpz.example\n" +
				"rpz.example.\t300\tIN\tSOA\tns.rpz.example. hostmaster.rpz.example. 1 3600 600 86400 300\n" +
				"rpz.example.\t300\tIN\tNS\tlocalhost.\n" +
				"bad.example.rpz.example.\t300\tIN\tCNAME\t.\n" +
				"*.bad.example.rpz.example.\t300\tIN\tCNAME\t.\n" +
				"nodata.example.RPZ.Example.\t300\tIN\tCNAME\t*.\n" +
				"32.1.0.0.127.rpz-ip.rpz.example.\t300\tIN\tCNAME\t.\n" +
				"rpz.example.\t300\tIN\tCNAME\t.\n" +
				"bad.example.other.example.\t300\tIN\tCNAME\t.\n" +
				"rpz.example.\t300\tIN\tSOA\tns.rpz.example. hostmaster.rpz.example. 1 3600 600 86400 300\n",
			detect: FormatRPZ, entries: 3, invalid: 2, skipped: 1, // invalid: the apex, a name outside it; skipped: rpz-ip
			matches: []want{
				{name: "bad.example", ok: true, rule: "bad.example", action: BlockNXDomain, line: 4},
				{name: "www.bad.example", ok: true, rule: "*.bad.example", action: BlockNXDomain, line: 5},
				{name: "nodata.example", ok: true, rule: "nodata.example", action: BlockNoData, line: 6},
				{name: "bad.example.rpz.example", ok: false},
				{name: "rpz.example", ok: false},
				{name: "bad.example.other.example", ok: false},
			},
		},
		{
			// Relative owners are relative to the $ORIGIN in force, the
			// trigger to the apex: "foo" under sub.rpz.local. is foo.sub.
			name:   "rpz_nested_origin",
			format: FormatAuto,
			src: "$ORIGIN rpz.local.\n@ SOA ns. h. 1 2 3 4 5\nbad.example CNAME .\n" +
				"$ORIGIN sub.rpz.local.\nfoo CNAME .\n@ CNAME .\nabs.example.rpz.local. CNAME .\n" +
				"$ORIGIN other.\nbar CNAME .\n$ORIGIN sub2\nbaz CNAME .\n",
			detect: FormatRPZ, entries: 4, invalid: 2, // invalid: bar.other. and baz.sub2.other., outside the zone
			matches: []want{
				{name: "bad.example", ok: true, rule: "bad.example", action: BlockNXDomain, line: 3},
				{name: "foo.sub", ok: true, rule: "foo.sub", action: BlockNXDomain, line: 5},
				{name: "sub", ok: true, rule: "sub", action: BlockNXDomain, line: 6},
				{name: "abs.example", ok: true, rule: "abs.example", action: BlockNXDomain, line: 7},
				{name: "foo", ok: false},
				{name: "bar", ok: false},
				{name: "baz.sub2", ok: false},
			},
		},
		{
			// Without an SOA the first $ORIGIN is the apex; an SOA owner
			// below it, once seen, is the apex instead.
			name:   "rpz_apex_from_origin_or_soa",
			format: FormatRPZ,
			src: "$ORIGIN example.\nrpz SOA ns. h. 1 2 3 4 5\nbad CNAME .\nbad.rpz CNAME .\n" +
				"bad.example.rpz.example. CNAME .\n",
			detect: FormatRPZ, entries: 2, invalid: 1, // invalid: bad.example., outside rpz.example.
			matches: []want{
				{name: "bad", ok: true, rule: "bad", action: BlockNXDomain, line: 4},
				{name: "bad.example", ok: true, rule: "bad.example", action: BlockNXDomain, line: 5},
				{name: "bad.rpz", ok: false},
			},
		},
		{
			// "@ SOA" before any $ORIGIN: the apex is unknown until the
			// first $ORIGIN, taken for it.
			name:   "rpz_soa_at_unknown_origin",
			format: FormatRPZ,
			src:    "@ SOA ns. h. 1 2 3 4 5\nbad CNAME .\n$ORIGIN rpz.local.\nfoo CNAME .\nfoo.bar.rpz.local. CNAME .\n",
			detect: FormatRPZ, entries: 3,
			matches: []want{
				{name: "bad", ok: true, rule: "bad", action: BlockNXDomain, line: 2},
				{name: "foo", ok: true, rule: "foo", action: BlockNXDomain, line: 4},
				{name: "foo.bar", ok: true, rule: "foo.bar", action: BlockNXDomain, line: 5},
			},
		},
		{
			name:   "rpz_no_soa_first_origin_is_apex",
			format: FormatRPZ,
			src:    "$ORIGIN rpz.local.\nbad CNAME .\n$ORIGIN sub.rpz.local.\nfoo CNAME .\n",
			detect: FormatRPZ, entries: 2,
			matches: []want{
				{name: "bad", ok: true, rule: "bad", action: BlockNXDomain, line: 2},
				{name: "foo.sub", ok: true, rule: "foo.sub", action: BlockNXDomain, line: 4},
			},
		},
		{
			name:   "regex_format",
			format: FormatRegex,
			src:    "# regexes\n/^ad[0-9]+\\./\n/(/\nplain.example\n",
			detect: FormatRegex, entries: 1, invalid: 2,
			matches: []want{
				{name: "ad1.example.com", ok: true, rule: "/^ad[0-9]+\\./", line: 2},
				{name: "xad1.example.com", ok: false},
			},
		},
		{
			name:   "overlong_line",
			format: FormatDomains,
			src:    "ok.example\n" + strings.Repeat("x", 100<<10) + "\nafter.example",
			detect: FormatDomains, entries: 2, invalid: 1,
			matches: []want{
				{name: "after.example", ok: true, rule: "after.example", line: 3},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, l := build(t, tc.src, tc.format)
			if st.Format != tc.detect || st.Entries != tc.entries || st.Invalid != tc.invalid || st.Skipped != tc.skipped {
				t.Errorf("stats = %+v, want format %s entries %d invalid %d skipped %d", st, tc.detect, tc.entries, tc.invalid, tc.skipped)
			}
			if len(st.FirstErrors) != min(tc.invalid, maxFirstErrors) {
				t.Errorf("FirstErrors = %q", st.FirstErrors)
			}
			for _, e := range st.FirstErrors {
				if !strings.HasPrefix(e, "test.txt:") {
					t.Errorf("error %q lacks source:line prefix", e)
				}
			}
			checkMatches(t, l, tc.matches)
		})
	}
}

// TestBadfilter: "rule$badfilter" disables rule (the same rule text
// without $badfilter: AdGuard's DNS filtering syntax) wherever it is in
// the list's sources, before or after the $badfilter rule.
func TestBadfilter(t *testing.T) {
	tests := []struct {
		name    string
		sources []string // adblock sources of one list
		// rollback drops the last source again, as the manager does with
		// a new copy it rejects
		rollback           bool
		badfilter, skipped int // summed over the sources
		len                int
		matches            []want
	}{
		{
			name:      "rule_after",
			sources:   []string{"||linksprf.com^$badfilter\n||other.example^\n||linksprf.com^\n"},
			badfilter: 1, len: 1,
			matches: []want{
				{name: "linksprf.com", ok: false},
				{name: "x.linksprf.com", ok: false},
				{name: "other.example", ok: true, rule: "||other.example^", line: 2},
			},
		},
		{
			name:      "rule_before",
			sources:   []string{"||linksprf.com^\n||linksprf.com^$badfilter\n"},
			badfilter: 1,
			matches:   []want{{name: "linksprf.com", ok: false}},
		},
		{
			name:      "rule_in_another_source",
			sources:   []string{"||a.example^\n||b.example^\n", "! other list\n||a.example^$badfilter\n"},
			badfilter: 1, len: 1,
			matches: []want{
				{name: "a.example", ok: false},
				{name: "b.example", ok: true, rule: "||b.example^", line: 2},
			},
		},
		{
			name:      "every_copy",
			sources:   []string{"||a.example^\n||a.example^\n", "||a.example^\n||a.example^$badfilter\n"},
			badfilter: 1,
			matches:   []want{{name: "a.example", ok: false}},
		},
		{
			// Only the same rule text: not "||wykop.pl^".
			name:      "bare_domain",
			sources:   []string{"wykop.pl$badfilter\nwykop.pl\n||wykop.pl^\n"},
			badfilter: 1, len: 1,
			matches: []want{{name: "wykop.pl", ok: true, rule: "||wykop.pl^", line: 3}},
		},
		{
			name: "other_rules_of_the_name_stay",
			sources: []string{"||z.example^$badfilter\n|z.example^\n||*.z.example^\n||sub.z.example^\n" +
				"||z.example^$important\n@@||z.example^\n||z.example^\n"},
			badfilter: 1, len: 4, // one entry per name and kind: the important block beats the exception
			matches: []want{
				{name: "z.example", ok: true, rule: "||z.example^$important", line: 5, imp: true},
			},
		},
		{
			name:      "important",
			sources:   []string{"||x.example^$important\n||x.example^\n||x.example^$badfilter,important\n"},
			badfilter: 1, len: 1,
			matches: []want{{name: "x.example", ok: true, rule: "||x.example^", line: 2}},
		},
		{
			name:      "important_modifiers_in_any_order",
			sources:   []string{"||x.example^$important\n||x.example^$important, badfilter\n"},
			badfilter: 1,
			matches:   []want{{name: "x.example", ok: false}},
		},
		{
			name:      "exception",
			sources:   []string{"||y.example^\n@@||y.example^\n@@||y.example^$badfilter\n"},
			badfilter: 1, len: 1,
			matches: []want{{name: "y.example", ok: true, rule: "||y.example^", line: 1}},
		},
		{
			name:      "wildcard_rule",
			sources:   []string{"||ads*.example^\n||ADS*.example^$badfilter\n||trk*.example^\n"},
			badfilter: 1, len: 1,
			matches: []want{
				{name: "ads1.example", ok: false},
				{name: "trk1.example", ok: true, rule: "||trk*.example^", line: 3},
			},
		},
		{
			name:      "regex",
			sources:   []string{"/^ad[0-9]+\\./\n/^ad[0-9]+\\./$badfilter\n/^tr[0-9]+\\./\n"},
			badfilter: 1, len: 1,
			matches: []want{
				{name: "ad1.example", ok: false},
				{name: "tr1.example", ok: true, rule: "/^tr[0-9]+\\./", line: 3},
			},
		},
		{
			// The rule it would disable is skipped for its modifier anyway.
			name:    "with_an_unsupported_modifier",
			sources: []string{"||q.example^\n||q.example^$third-party,badfilter\n"},
			skipped: 1, len: 1,
			matches: []want{{name: "q.example", ok: true, rule: "||q.example^", line: 1}},
		},
		{
			name:     "rolled_back",
			sources:  []string{"||a.example^\n", "||a.example^$badfilter\n"},
			rollback: true, len: 1,
			matches: []want{{name: "a.example", ok: true, rule: "||a.example^", line: 1}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBuilder()
			var badfilter, skipped int
			for i, src := range tc.sources {
				mk := b.mark()
				st, err := Parse(strings.NewReader(src), "test.txt", FormatAdblock, b)
				if err != nil {
					t.Fatal(err)
				}
				if st.Invalid != 0 {
					t.Errorf("source %d: %d invalid lines: %q", i, st.Invalid, st.FirstErrors)
				}
				if tc.rollback && i == len(tc.sources)-1 {
					b.rollback(mk)
					continue
				}
				badfilter += st.Badfilter
				skipped += st.Skipped
			}
			l := b.Build("test", "")
			if badfilter != tc.badfilter || skipped != tc.skipped || l.Len() != tc.len {
				t.Errorf("badfilter %d, skipped %d, Len %d; want %d, %d, %d", badfilter, skipped, l.Len(), tc.badfilter, tc.skipped, tc.len)
			}
			checkMatches(t, l, tc.matches)
		})
	}

	// AdGuard's DNS filter disables "||linksprf.com^" (line 28813) with
	// "||linksprf.com^$badfilter" (line 7430), and with four more
	// $badfilter rules, rules of its other filters: given as a second
	// source here.
	t.Run("adguard_dns_filter", func(t *testing.T) {
		path := filepath.Join(sharedTestdata(t), "adguard-dns-filter", "Filters", "filter.txt")
		f, err := os.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b := NewBuilder()
		if _, err := Parse(f, path, FormatAuto, b); err != nil {
			t.Fatal(err)
		}
		other := "||tn.porngo.xxx^\n||pl.ua^\n||fixtures.onet.pl^\nwykop.pl\n||kept.example^\n"
		if _, err := Parse(strings.NewReader(other), "other.txt", FormatAdblock, b); err != nil {
			t.Fatal(err)
		}
		l := b.Build("adguard", "")
		for _, name := range []string{"linksprf.com", "www.linksprf.com", "tn.porngo.xxx", "pl.ua", "fixtures.onet.pl", "wykop.pl"} {
			if m, ok := l.Match(name); ok {
				t.Errorf("Match(%q) = %+v, want no match: the filter disables the rule with $badfilter", name, m)
			}
		}
		if m, ok := l.Match("kept.example"); !ok || m.Source != "other.txt" {
			t.Errorf("Match(kept.example) = %+v, %v; want the other source's rule", m, ok)
		}
	})
}

func TestParseFormat(t *testing.T) {
	for _, s := range []string{"", "auto", "hosts", "domains", "plain", "wildcard", "adblock", "rpz", "regex", "HOSTS"} {
		if _, err := ParseFormat(s); err != nil {
			t.Errorf("ParseFormat(%q): %v", s, err)
		}
	}
	if _, err := ParseFormat("dnsmasq"); err == nil {
		t.Error("ParseFormat(dnsmasq) succeeded")
	}
}

// TestExcerpts parses the committed excerpts. Expected counts come from
// grep over the files: hosts.txt has 9 address lines (grep -cvE '^(#|$)')
// of which "127.0.0.1 localhost" and "::1 localhost" are skipped;
// hosts-compressed.txt has 27 names on its three 0.0.0.0 lines
// (awk '{n+=NF-1}'); domains.txt and wildcard.txt count their non-comment
// lines (18, 19); rpz.txt has 19 non-comment lines minus the $TTL, SOA and
// NS header = 16; adblock.txt has 31 rule lines (grep -vE '^(!|$)'): 20
// plain ||name^ / @@||name^| / $important lines, 5 /regex/ lines and the 3
// globs (*) are entries, the 2 unanchored .name^ are skipped, and
// "||tn.porngo.xxx^$badfilter" is a $badfilter rule (its rule is not in the
// excerpt: nothing is dropped).
func TestExcerpts(t *testing.T) {
	tests := []struct {
		file                      string
		format                    Format
		entries, invalid, skipped int
		badfilter                 int
		hit                       string
	}{
		{file: "hosts.txt", format: FormatHosts, entries: 7, skipped: 2, hit: "x.analytics.163.com"},
		{file: "hosts-compressed.txt", format: FormatHosts, entries: 27, hit: "dns.0ooo.icu"},
		{file: "domains.txt", format: FormatDomains, entries: 18, hit: "x.ns.00dani.me"},
		{file: "wildcard.txt", format: FormatWildcard, entries: 19, hit: "x.0000a-fast-proxy.de"},
		{file: "rpz.txt", format: FormatRPZ, entries: 16, hit: "mdca.co.ae"},
		{file: "adblock.txt", format: FormatAdblock, entries: 28, skipped: 2, badfilter: 1, hit: "sub.upbeatbut.com"},
	}
	for _, tc := range tests {
		t.Run(strings.TrimSuffix(tc.file, ".txt"), func(t *testing.T) {
			st, l := parseFile(t, filepath.Join("testdata", tc.file), FormatAuto)
			if st.Format != tc.format || st.Entries != tc.entries || st.Invalid != tc.invalid || st.Skipped != tc.skipped || st.Badfilter != tc.badfilter {
				t.Errorf("stats = %+v, want %s entries %d invalid %d skipped %d badfilter %d",
					st, tc.format, tc.entries, tc.invalid, tc.skipped, tc.badfilter)
			}
			if l.Len() != tc.entries {
				t.Errorf("Len = %d, want %d", l.Len(), tc.entries)
			}
			if _, ok := l.Match(tc.hit); !ok {
				t.Errorf("Match(%q) missed", tc.hit)
			}
		})
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
