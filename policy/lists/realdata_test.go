package lists

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// sharedTestdata finds /work/shared/testdata: the repo root's parent +
// /shared/testdata, located relative to this package.
func sharedTestdata(tb testing.TB) string {
	tb.Helper()
	_, file, _, _ := runtime.Caller(0)
	dir := filepath.Join(filepath.Dir(file), "..", "..", "..", "shared", "testdata", "blocklists")
	if _, err := os.Stat(dir); err != nil {
		tb.Skipf("real-world lists not present at %s (the repo root's parent + /shared/testdata/blocklists): %v", dir, err)
	}
	return dir
}

func parseFile(tb testing.TB, path string, f Format) (Stats, *List) {
	tb.Helper()
	fh, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	b := NewBuilder()
	st, err := Parse(fh, path, f, b)
	if err != nil {
		tb.Fatal(err)
	}
	return st, b.Build(filepath.Base(path), "")
}

// TestRealLists parses every real-world list. The expected counts were
// computed independently of this parser with grep/awk (run in the
// blocklists directory):
//   - hosts: grep -cE '^0\.0\.0\.0 ' FILE (one name per line); AdAway:
//     grep -cE '^(127\.0\.0\.1|::1)[[:space:]]' = 6542, of which 2 are
//     "localhost" (skipped); doh-compressed: awk '/^0\.0\.0\.0/{n+=NF-1}' = 3857.
//   - plain domains: grep -cvE '^(#|$)' FILE. hagezi/whitelist.txt: 2173
//     rule lines, 431 contain '*': 296 are "*.name" (wildcard entries), 135
//     are globs (entries); 1 line is a URL (invalid): 1742-1+296+135 = 2172.
//   - wildcard: grep -cE '^\*\.[a-z0-9._-]+$' FILE, nothing else.
//   - adblock (hagezi, urlhaus, blocklistproject): grep -cE
//     '^\|\|[a-z0-9._-]+\^$' FILE with no other rule lines.
//     hagezi/adblock/whitelist.txt: 2617 rule lines, 136 globs (entries)
//     and 2 URL rules ("@@|https://...", skipped): 2615 entries.
//     AdGuard filter.txt: 71101 rule lines (grep -vE '^(!|#|$)'); 20 are
//     /regex/, 70817 match '^(@@)?\|\|?(\*\.)?NAME(\^\|?|\|)?$' after
//     removing a trailing $important, 1 is a bare domain, 160 are globs
//     (the 162 anchored lines of [a-z0-9._*-] with a '*' past a leading
//     "*.", less the 3 prefix rules "||adx-*.dbankcloud." and the like,
//     plus "||iphone-caviar.ru*entranceId"); 5 are $badfilter rules
//     (grep -cE '\$badfilter$'), of which only "||linksprf.com^$badfilter"
//     names a rule of the file (grep -cxF '||linksprf.com^' = 1; the other
//     four disable rules of other AdGuard filters); the other 98 (.name^,
//     ://name^, other modifiers, prefix rules "||name.") are skipped:
//     70998 entries, 70984 distinct, 70983 once ||linksprf.com^ is dropped.
//     exceptions.txt: 164 rule lines, 153 '^@@\|\|?NAME\^\|?(\$important)?$',
//     10 globs, 1 unanchored (skipped).
//   - RPZ: grep -cE ' CNAME \.$' FILE (hagezi's include "*.name CNAME .").
func TestRealLists(t *testing.T) {
	dir := sharedTestdata(t)
	tests := []struct {
		file                      string
		format                    Format
		entries, invalid, skipped int
		badfilter                 int
		distinct                  int // List.Len when it differs from entries
		hit, miss                 string
		action                    Action
	}{
		{file: "adaway/hosts.txt", format: FormatHosts, entries: 6540, skipped: 2, hit: "analytics.163.com", miss: "163.com"},
		{file: "hagezi-legacy/hosts/light.txt", format: FormatHosts, entries: 89931, hit: "sub.0-0-0checkmate.com", miss: "example.com"},
		{file: "hagezi-legacy/hosts/doh-compressed.txt", format: FormatHosts, entries: 3857, hit: "dns.0ooo.icu", miss: "example.com"},
		{file: "hagezi-legacy/domains/light.txt", format: FormatDomains, entries: 89931, hit: "0-0asia.com", miss: "example.com"},
		{file: "hagezi-legacy/domains/doh.txt", format: FormatDomains, entries: 3857, hit: "ns.00dani.me", miss: "00dani.me"},
		{file: "hagezi/adblock/light.txt", format: FormatAdblock, entries: 69751, hit: "x.000webhost.com", miss: "example.com"},
		{file: "hagezi/adblock/tif.medium.txt", format: FormatAdblock, entries: 21712, hit: "0-day.us", miss: "example.com"},
		{file: "hagezi/adblock/whitelist.txt", format: FormatAdblock, entries: 2615, skipped: 2, hit: "tags.tiqcdn.com", miss: "x.tags.tiqcdn.com", action: Allow},
		{file: "hagezi/adblock/dyndns.txt", format: FormatAdblock, entries: 1509, hit: "a.0rg.us", miss: "example.com"},
		{file: "hagezi/whitelist.txt", format: FormatDomains, entries: 2172, invalid: 1, hit: "x.cc-api-data.adobe.io", miss: "cc-api-data.adobe.io"},
		{file: "hagezi/wildcard/tif.medium.txt", format: FormatWildcard, entries: 21712, hit: "a.0-day.us", miss: "0-day.us"},
		{file: "hagezi/wildcard/tif.medium-onlydomains.txt", format: FormatDomains, entries: 21712, hit: "0-day.us", miss: "example.com"},
		{file: "hagezi/wildcard/gambling.txt", format: FormatWildcard, entries: 168582, hit: "www.0-bet.com", miss: "0-bet.com"},
		{file: "hagezi/wildcard/doh-vpn-proxy-bypass.txt", format: FormatWildcard, entries: 2506, hit: "x.0x3d.lu", miss: "0x3d.lu"},
		{file: "hagezi/rpz/tif.light.txt", format: FormatRPZ, entries: 4490, hit: "mdca.co.ae", miss: "co.ae", action: BlockNXDomain},
		{file: "hagezi/rpz/doh.txt", format: FormatRPZ, entries: 1448, hit: "x.shield.afixer.app", miss: "afixer.app", action: BlockNXDomain},
		{file: "urlhaus-filter/urlhaus-filter-hosts.txt", format: FormatHosts, entries: 2689, hit: "0daydreams.net", miss: "example.com"},
		{file: "urlhaus-filter/urlhaus-filter-domains.txt", format: FormatDomains, entries: 25768, hit: "1.0.209.238", miss: "example.com"},
		{file: "urlhaus-filter/urlhaus-filter-agh.txt", format: FormatAdblock, entries: 25768, hit: "05webinvite.com", miss: "example.com"},
		{file: "urlhaus-filter/urlhaus-filter-rpz.conf", format: FormatRPZ, entries: 2689, hit: "0daydreams.net", miss: "x.0daydreams.net", action: BlockNXDomain},
		{file: "adguard-dns-filter/Filters/filter.txt", format: FormatAdblock, entries: 70998, skipped: 98, badfilter: 5, distinct: 70983, hit: "adsrvmedia.adk2.co", miss: "linksprf.com"},
		{file: "adguard-dns-filter/Filters/exceptions.txt", format: FormatAdblock, entries: 163, skipped: 1, hit: "click.avs.io", miss: "example.com", action: Allow},
		{file: "adaway/hosts.txt", format: FormatHosts, entries: 6540, skipped: 2, hit: "crash.163.com", miss: "localhost"},
		{file: "blocklistproject/crypto.txt", format: FormatHosts, entries: 1274, hit: "0slot.trade", miss: "example.com"},
		{file: "blocklistproject/ransomware.txt", format: FormatHosts, entries: 1904, hit: "25z5g623wpqpdwis.onion.to", miss: "onion.to"},
		{file: "blocklistproject/scam.txt", format: FormatHosts, entries: 8527, hit: "0-google.com", miss: "google.com"},
		{file: "blocklistproject/piracy.txt", format: FormatHosts, entries: 2154, hit: "0daycn.net", miss: "example.com"},
		{file: "blocklistproject/alt-version/phishing-nl.txt", format: FormatDomains, entries: 190215, hit: "0.01.2.13.3.sydneypropertyinvestors.com", miss: "sydneypropertyinvestors.com"},
		{file: "blocklistproject/alt-version/tracking-nl.txt", format: FormatDomains, entries: 143876, hit: "0001-metrics1-data-hicloud-com.geac.dbankedge.cn", miss: "dbankedge.cn"},
		{file: "blocklistproject/adguard/ransomware-ags.txt", format: FormatAdblock, entries: 1904, hit: "27c73bq66y4xqoh7.dorfact.at", miss: "dorfact.at"},
	}
	for _, tc := range tests {
		t.Run(strings.NewReplacer("/", "_", ".", "_", "-", "_").Replace(tc.file), func(t *testing.T) {
			st, l := parseFile(t, filepath.Join(dir, tc.file), FormatAuto)
			t.Logf("%s: format=%s lines=%d entries=%d invalid=%d skipped=%d badfilter=%d distinct=%d regexes=%d",
				tc.file, st.Format, st.Lines, st.Entries, st.Invalid, st.Skipped, st.Badfilter, l.Len(), l.Regexps())
			if st.Format != tc.format || st.Entries != tc.entries || st.Invalid != tc.invalid || st.Skipped != tc.skipped || st.Badfilter != tc.badfilter {
				t.Errorf("stats = format %s entries %d invalid %d skipped %d badfilter %d, want %s %d %d %d %d (first errors %q)",
					st.Format, st.Entries, st.Invalid, st.Skipped, st.Badfilter, tc.format, tc.entries, tc.invalid, tc.skipped, tc.badfilter, st.FirstErrors)
			}
			distinct := tc.distinct
			if distinct == 0 {
				distinct = tc.entries
			}
			if l.Len() != distinct {
				t.Errorf("Len = %d, want %d", l.Len(), distinct)
			}
			m, ok := l.Match(tc.hit)
			if !ok || m.Action != tc.action {
				t.Errorf("Match(%q) = %+v, %v; want action %d", tc.hit, m, ok, tc.action)
			}
			if m, ok := l.Match(tc.miss); ok {
				t.Errorf("Match(%q) = %+v, want no match", tc.miss, m)
			}
		})
	}
}

// BenchmarkMatchAdGuard matches popular legitimate names (the miss path of
// real traffic) against AdGuard's DNS filter, which has 160 wildcard rules
// and 20 regexes besides its 70,838 names.
func BenchmarkMatchAdGuard(b *testing.B) {
	dir := sharedTestdata(b)
	_, l := parseFile(b, filepath.Join(dir, "adguard-dns-filter", "Filters", "filter.txt"), FormatAdblock)
	data, err := os.ReadFile(filepath.Join(dir, "..", "legit", "umbrella-top-100k.txt"))
	if err != nil {
		b.Skipf("legit names: %v", err)
	}
	var names []string
	for _, line := range strings.Split(string(data), "\n") {
		if name := strings.TrimSpace(line); strings.Contains(name, ".") {
			names = append(names, name)
		}
		if len(names) == 4096 {
			break
		}
	}
	if len(names) == 0 {
		b.Skip("no legit names parsed")
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Match(names[i%len(names)])
		i++
	}
}
