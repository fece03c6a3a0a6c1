package lists

import (
	"fmt"
	"math/rand/v2"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// buildSources parses each source text, in order, into one List.
func buildSources(tb testing.TB, f Format, srcs ...[2]string) *List {
	tb.Helper()
	b := NewBuilder()
	for _, s := range srcs {
		if _, err := Parse(strings.NewReader(s[1]), s[0], f, b); err != nil {
			tb.Fatalf("Parse %s: %v", s[0], err)
		}
	}
	return b.Build("test", "")
}

// TestMatchFields pins Rule, Source, Line, Action and Important for every
// format: the rule is rebuilt from the query name and the entry's shape,
// so each decoration and each input form (case, trailing dot) is checked.
func TestMatchFields(t *testing.T) {
	tests := []struct {
		name   string
		format Format
		srcs   [][2]string
		query  string
		want   Match
	}{
		{name: "hosts_subdomain", format: FormatHosts,
			srcs:  [][2]string{{"h.txt", "# c\n0.0.0.0 ads.example.com\n"}},
			query: "www.ads.example.com.", want: Match{Rule: "ads.example.com", Source: "h.txt", Line: 2}},
		{name: "hosts_upper_case_prefix", format: FormatHosts,
			srcs:  [][2]string{{"h.txt", "0.0.0.0 ads.example.com\n"}},
			query: "WWW.ads.example.com", want: Match{Rule: "ads.example.com", Source: "h.txt", Line: 1}},
		{name: "hosts_upper_case_match", format: FormatHosts,
			srcs:  [][2]string{{"h.txt", "0.0.0.0 ads.example.com\n"}},
			query: "www.ADS.Example.COM.", want: Match{Rule: "ads.example.com", Source: "h.txt", Line: 1}},
		{name: "domains_plain", format: FormatDomains,
			srcs:  [][2]string{{"d.txt", "\n\nexample.org\n"}},
			query: "example.org", want: Match{Rule: "example.org", Source: "d.txt", Line: 3}},
		{name: "wildcard_decorated", format: FormatWildcard,
			srcs:  [][2]string{{"w.txt", "*.wild.example\n"}},
			query: "A.Wild.Example.", want: Match{Rule: "*.wild.example", Source: "w.txt", Line: 1}},
		{name: "adblock_block", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "! x\n||ads.example^\n"}},
			query: "x.ads.example", want: Match{Rule: "||ads.example^", Source: "a.txt", Line: 2}},
		{name: "adblock_exception_pipe", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "||ads.example^\n@@||ok.ads.example^|\n"}},
			query: "ok.ads.example", want: Match{Rule: "@@||ok.ads.example^", Source: "a.txt", Line: 2, Action: Allow}},
		{name: "adblock_important", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "@@||x.imp.example^\n||imp.example^$important\n"}},
			query: "x.imp.example", want: Match{Rule: "||imp.example^$important", Source: "a.txt", Line: 2, Important: true}},
		{name: "adblock_important_exception", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "||imp.example^$important\n@@||imp.example^$important\n"}},
			query: "imp.example", want: Match{Rule: "@@||imp.example^$important", Source: "a.txt", Line: 2, Action: Allow, Important: true}},
		{name: "adblock_exact", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "|exact.example^\n"}},
			query: "EXACT.example", want: Match{Rule: "|exact.example^", Source: "a.txt", Line: 1}},
		{name: "adblock_wildcard", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "||*.w.example^\n"}},
			query: "a.b.w.example", want: Match{Rule: "||*.w.example^", Source: "a.txt", Line: 1}},
		{name: "adblock_bare_domain", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "||x.example^\nbare.example\n"}},
			query: "www.bare.example", want: Match{Rule: "bare.example", Source: "a.txt", Line: 2}},
		{name: "adblock_regex", format: FormatAdblock,
			srcs:  [][2]string{{"a.txt", "||x.example^\n/^ad[0-9]+\\./\n"}},
			query: "AD7.example", want: Match{Rule: "/^ad[0-9]+\\./", Source: "a.txt", Line: 2}},
		{name: "rpz_exact", format: FormatRPZ,
			srcs:  [][2]string{{"r.zone", "$TTL 60\nnx.example CNAME .\n"}},
			query: "nx.example.", want: Match{Rule: "nx.example", Source: "r.zone", Line: 2, Action: BlockNXDomain}},
		{name: "rpz_wildcard", format: FormatRPZ,
			srcs:  [][2]string{{"r.zone", "$TTL 60\nnx.example CNAME .\n*.nx.example CNAME *.\n"}},
			query: "a.nx.example", want: Match{Rule: "*.nx.example", Source: "r.zone", Line: 3, Action: BlockNoData}},
		{name: "rpz_passthru", format: FormatRPZ,
			srcs:  [][2]string{{"r.zone", "*.nx.example CNAME .\nok.nx.example CNAME rpz-passthru.\n"}},
			query: "ok.nx.example", want: Match{Rule: "ok.nx.example", Source: "r.zone", Line: 2, Action: Allow}},
		{name: "second_source", format: FormatDomains,
			srcs:  [][2]string{{"one.txt", "a.example\n"}, {"two.txt", "# c\nb.example\n"}},
			query: "x.b.example", want: Match{Rule: "b.example", Source: "two.txt", Line: 2}},
		{name: "duplicate_first_source_wins", format: FormatDomains,
			srcs:  [][2]string{{"one.txt", "x\nx\ndup.example\n"}, {"two.txt", "dup.example\n"}},
			query: "dup.example", want: Match{Rule: "dup.example", Source: "one.txt", Line: 3}},
		{name: "duplicate_first_line_wins", format: FormatDomains,
			srcs:  [][2]string{{"one.txt", "dup.example\ndup.example\n"}},
			query: "dup.example", want: Match{Rule: "dup.example", Source: "one.txt", Line: 1}},
		{name: "duplicate_stronger_wins", format: FormatAdblock,
			srcs:  [][2]string{{"one.txt", "||dup.example^\n"}, {"two.txt", "@@||dup.example^\n"}},
			query: "dup.example", want: Match{Rule: "@@||dup.example^", Source: "two.txt", Line: 1, Action: Allow}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := buildSources(t, tc.format, tc.srcs...)
			got, ok := l.Match(tc.query)
			if !ok || got != tc.want {
				t.Errorf("Match(%q) = %+v, %v; want %+v", tc.query, got, ok, tc.want)
			}
		})
	}
}

// TestMatchManyShapes uses more sources than a one-byte shape id holds.
func TestMatchManyShapes(t *testing.T) {
	b := NewBuilder()
	const n = 300
	for i := range n {
		src := fmt.Sprintf("src%d.txt", i)
		if _, err := Parse(strings.NewReader(fmt.Sprintf("# %d\nn%d.example\n", i, i)), src, FormatDomains, b); err != nil {
			t.Fatal(err)
		}
	}
	l := b.Build("many", "")
	if l.sids.w16 == nil {
		t.Fatalf("expected 16-bit shape ids for %d shapes", len(l.shapes))
	}
	for i := range n {
		q := fmt.Sprintf("www.n%d.example", i)
		m, ok := l.Match(q)
		want := Match{Rule: fmt.Sprintf("n%d.example", i), Source: fmt.Sprintf("src%d.txt", i), Line: 2}
		if !ok || m != want {
			t.Fatalf("Match(%q) = %+v, %v; want %+v", q, m, ok, want)
		}
	}
}

// TestMatchBigLines checks line numbers that do not fit in a key, and
// that lines past 32 bits (a source of 4 GiB or more) saturate.
func TestMatchBigLines(t *testing.T) {
	b := NewBuilder()
	src := b.source("big.txt")
	lines := map[string]int{"a.example": lineMask - 1, "b.example": lineMask, "d.example": 3}
	// Lines past 32 bits exist only where int has 64 (the test builds
	// on 32-bit platforms too).
	maxLine := uint64(1<<32 - 1)
	if strconv.IntSize == 64 {
		lines["c.example"] = int(maxLine)
		lines["e.example"] = int(maxLine + 8)
	}
	for name, line := range lines {
		b.add(src, line, kindSub, Block, false, "", name, "")
	}
	l := b.Build("big", "")
	for name, line := range lines {
		if uint64(line) > maxLine {
			line = int(maxLine)
		}
		m, ok := l.Match("x." + name)
		if !ok || m.Line != line || m.Rule != name || m.Source != "big.txt" {
			t.Errorf("Match(x.%s) = %+v, %v; want line %d", name, m, ok, line)
		}
	}
}

func TestMatchAllocs(t *testing.T) {
	l := buildSources(t, FormatDomains, [2]string{"d.txt", "ads.example.com\n*.wild.example\nglob*.example.net\nglob*.example.org\n"})
	for _, tc := range []struct {
		query  string
		allocs float64
	}{
		{"www.ads.example.com.", 0}, // Rule is a substring of the query
		{"WWW.ads.example.com", 0},  // upper case outside the matched part
		{"miss.example.org", 0},
		{"MISS.EXAMPLE.ORG", 0},
		{"www.ADS.example.com", 1}, // lower-cased copy of the matched part
		{"a.wild.example", 0},      // "*." + name: stored text
		{"A.WILD.example", 0},
		{"x.glob12.example.net", 0}, // wildcard rule: stored text
		{"glob.example.org", 0},     // a glob tried, no match
	} {
		if got := testing.AllocsPerRun(100, func() { l.Match(tc.query) }); got != tc.allocs {
			t.Errorf("Match(%q): %v allocs, want %v", tc.query, got, tc.allocs)
		}
	}
}

func TestLastDot(t *testing.T) {
	for _, s := range []string{"", ".", "a", "a.b", "abcdefgh.ijklmnop.qrs", "........", "/////////.////////",
		"0123456789abcdef", "a.0123456789abcdef/", "\x80\xae.\xff\x2f", "-..-.-..-.-..-.-..-..."} {
		for end := 0; end <= len(s); end++ {
			if got, want := lastDot(s, end), strings.LastIndexByte(s[:end], '.'); got != want {
				t.Errorf("lastDot(%q, %d) = %d, want %d", s, end, got, want)
			}
		}
	}
}

// TestHashSuffixes checks that the incremental hash of each suffix seen
// by a Match walk equals the hash of that suffix computed on its own,
// including empty labels.
func TestHashSuffixes(t *testing.T) {
	x := newHasher()
	for _, s := range []string{"a", "a.b", "www.ads.example.co.uk", "x..y", ".lead", strings.Repeat("abcdefghij", 6) + ".long.example"} {
		h := uint64(hashInit)
		end := len(s)
		for {
			i := lastDot(s, end) + 1
			h = x.label(h, s[i:end])
			if want := x.name(s[i:]); h != want {
				t.Errorf("suffix %q of %q: %x != %x", s[i:], s, h, want)
			}
			if i == 0 {
				break
			}
			end = i - 1
		}
	}
	if x.name("ab.c") == x.name("a.bc") || x.name("a") == x.name("aaa") || x.name("a.b") == x.name("b.a") {
		t.Error("label boundaries, lengths or order do not change the hash")
	}
}

// TestRollbackDecorated drops a parsed source's entries, stored rule text
// included, the way Manager does for a rejected copy.
func TestRollbackDecorated(t *testing.T) {
	b := NewBuilder()
	parse := func(src, text string) {
		t.Helper()
		if _, err := Parse(strings.NewReader(text), src, FormatAdblock, b); err != nil {
			t.Fatal(err)
		}
	}
	parse("a.txt", "bare.example\n||keep.example^\n")
	mk := b.mark()
	parse("b.txt", "||dropped.example^\n||zzzzzzzzzzzzzzzzzzzzzz.example^\n")
	b.rollback(mk)
	parse("c.txt", "!\n@@||new.example^$important\n")
	l := b.Build("rb", "")
	if m, ok := l.Match("dropped.example"); ok {
		t.Errorf("rolled back entry matched: %+v", m)
	}
	for q, want := range map[string]Match{
		"x.bare.example": {Rule: "bare.example", Source: "a.txt", Line: 1},
		"keep.example":   {Rule: "||keep.example^", Source: "a.txt", Line: 2},
		"new.example":    {Rule: "@@||new.example^$important", Source: "c.txt", Line: 2, Action: Allow, Important: true},
	} {
		if m, ok := l.Match(q); !ok || m != want {
			t.Errorf("Match(%q) = %+v, %v; want %+v", q, m, ok, want)
		}
	}
}

// TestBuilderShapeRuns checks that each entry keeps its shape and line
// through the run table: shapes that change within a line, between
// sources, a source added twice, and a rolled-back source.
func TestBuilderShapeRuns(t *testing.T) {
	b := NewBuilder()
	type add struct {
		line      int
		pre, name string
		a         Action
	}
	type want struct {
		query, rule, source string
		line                int
		a                   Action
	}
	feed := func(source string, adds []add) {
		src := b.source(source)
		for _, e := range adds {
			b.add(src, e.line, kindSub, e.a, false, e.pre, e.name, "")
		}
	}
	feed("one.txt", []add{
		{1, "", "a.example", Block},
		{1, "@@||", "b.example", Allow}, // new shape on the same line
		{1, "", "c.example", Block},     // and back
		{2, "", "d.example", Block},
	})
	mk := b.mark()
	feed("gone.txt", []add{{1, "@@||", "gone.example", Allow}, {5, "", "gone2.example", Block}})
	b.rollback(mk)
	feed("two.txt", []add{{7, "||", "e.example", Block}, {9, "", "f.example", Block}})
	feed("one.txt", []add{{3, "", "g.example", Block}}) // the same source again
	l := b.Build("runs", "")
	for _, w := range []want{
		{"a.example", "a.example", "one.txt", 1, Block},
		{"b.example", "@@||b.example", "one.txt", 1, Allow},
		{"c.example", "c.example", "one.txt", 1, Block},
		{"d.example", "d.example", "one.txt", 2, Block},
		{"e.example", "||e.example", "two.txt", 7, Block},
		{"f.example", "f.example", "two.txt", 9, Block},
		{"g.example", "g.example", "one.txt", 3, Block},
	} {
		m, ok := l.Match("x." + w.query)
		if !ok || m.Rule != w.rule || m.Source != w.source || m.Line != w.line || m.Action != w.a {
			t.Errorf("Match(x.%s) = %+v, %v; want %+v", w.query, m, ok, w)
		}
	}
	for _, q := range []string{"gone.example", "gone2.example"} {
		if m, ok := l.Match(q); ok {
			t.Errorf("rolled-back entry %s matched: %+v", q, m)
		}
	}
}

func TestLastUpperIndex(t *testing.T) {
	want := func(s string) int {
		for i := len(s) - 1; i >= 0; i-- {
			if 'A' <= s[i] && s[i] <= 'Z' {
				return i
			}
		}
		return -1
	}
	var all [256]byte
	for i := range all {
		all[i] = byte(i)
	}
	for _, s := range []string{"", "a", "A", "Z", "@", "[", "abcdefgh", "Abcdefgh", "abcdefgH", "abcdefghI",
		"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "www.EXAMPLE.com", "\xc1\xda\xdb\x80\xff@[`{", "\xc1\xda.example.com.\xc1\xda\xff",
		string(all[:]), string(all[:91]), string(all[:90]), string(all[64:])} {
		for end := 0; end <= len(s); end++ {
			if got, w := lastUpperIndex(s[:end]), want(s[:end]); got != w {
				t.Errorf("lastUpperIndex(%q) = %d, want %d", s[:end], got, w)
			}
		}
	}
}

// TestGlobMatch: '*' stands for any run of bytes, dots included; kinds
// anchor the pattern at the whole name (exact), at any label (sub), or at
// a label below the apex (wild).
func TestGlobMatch(t *testing.T) {
	tests := []struct {
		kind          kind
		pattern, name string
		want          bool
	}{
		{kindSub, "ads*.example.com", "ads1.example.com", true},
		{kindSub, "ads*.example.com", "ads.example.com", true}, // '*' may be empty
		{kindSub, "ads*.example.com", "x.ads-1.example.com", true},
		{kindSub, "ads*.example.com", "xads1.example.com", false},  // not at a label
		{kindSub, "ads*.example.com", "ads.a.b.example.com", true}, // '*' spans dots
		{kindSub, "s3-*-w.*.amazonaws.com", "s3-eu-w.x.amazonaws.com", true},
		{kindSub, "s3-*-w.*.amazonaws.com", "s3-eu-w.amazonaws.com", false},
		{kindSub, "a*b*c", "aXbYc", true},
		{kindSub, "a*b*c", "abc", true},
		{kindSub, "a*b*c", "acb", false},
		{kindSub, "a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", false}, // backtracks to the last '*' only
		{kindSub, "ads.*", "ads.example", true},
		{kindSub, "ads.*", "ads", false},
		{kindExact, "api*.amazonalexa.com", "api1.amazonalexa.com", true},
		{kindExact, "api*.amazonalexa.com", "x.api1.amazonalexa.com", false},
		{kindWild, "c*.example", "c1.example", false},
		{kindWild, "c*.example", "x.c1.example", true},
	}
	for _, tt := range tests {
		g := newGlob(tt.kind, tt.pattern)
		if got := g.matchName(tt.name); got != tt.want {
			t.Errorf("glob %q (kind %d) matchName(%q) = %v, want %v", tt.pattern, tt.kind, tt.name, got, tt.want)
		}
	}
	for _, tt := range []struct{ pattern, suffix string }{
		{"ads*.example.com", "example.com"},
		{"st-n.ads*-adnow.com", "com"},
		{"ads.example.*", ""},
		{"putrr*com", ""},
		{"*.x.example", "x.example"},
	} {
		if got := globSuffix(tt.pattern); got != tt.suffix {
			t.Errorf("globSuffix(%q) = %q, want %q", tt.pattern, got, tt.suffix)
		}
	}
}

// TestGlobRules: wildcard rules from the list excerpts and their place in
// the precedence (exceptions, $important, hashed entries).
func TestGlobRules(t *testing.T) {
	l := buildSources(t, FormatAdblock, [2]string{"a.txt", "||counter*.stat.ovh^\n||putrr*.com^\n" +
		"@@||ok*.stat.ovh^\n||ok9.stat.ovh^$important\n||tracker.example^\n@@||t*.example^\n" +
		"||*.w*.example^\n|ex*.example^\n"})
	tests := []struct {
		query string
		ok    bool
		want  Match
	}{
		{"counter12.stat.ovh", true, Match{Rule: "||counter*.stat.ovh^", Source: "a.txt", Line: 1}},
		{"www.COUNTER.x.stat.ovh.", true, Match{Rule: "||counter*.stat.ovh^", Source: "a.txt", Line: 1}},
		{"putrr7.com", true, Match{Rule: "||putrr*.com^", Source: "a.txt", Line: 2}},
		{"putrr7.net", false, Match{}},
		{"ok1.stat.ovh", true, Match{Rule: "@@||ok*.stat.ovh^", Source: "a.txt", Line: 3, Action: Allow}},
		{"ok9.stat.ovh", true, Match{Rule: "||ok9.stat.ovh^$important", Source: "a.txt", Line: 4, Important: true}},
		{"tracker.example", true, Match{Rule: "@@||t*.example^", Source: "a.txt", Line: 6, Action: Allow}},
		{"w1.example", false, Match{}},
		{"a.w1.example", true, Match{Rule: "||*.w*.example^", Source: "a.txt", Line: 7}},
		{"ex1.example", true, Match{Rule: "|ex*.example^", Source: "a.txt", Line: 8}},
		{"a.ex1.example", false, Match{}},
	}
	for _, tt := range tests {
		got, ok := l.Match(tt.query)
		if ok != tt.ok || got != tt.want {
			t.Errorf("Match(%q) = %+v, %v; want %+v, %v", tt.query, got, ok, tt.want, tt.ok)
		}
	}
}

// globWorstCase is a rule and a 253-byte name that make globMatch
// backtrack at every position.
func globWorstCase() (globEntry, string) {
	return newGlob(kindSub, "a*"+strings.Repeat("a.", 60)+"c*a"), strings.Repeat("a.", 126) + "a"
}

// TestGlobMatchWorstCase: the pathological rule does not match and does
// not allocate; BenchmarkGlobWorstCase gives its cost (two quadratic
// passes; trying every label start took ~450 µs per query).
func TestGlobMatchWorstCase(t *testing.T) {
	g, name := globWorstCase()
	if g.matchName(name) {
		t.Fatalf("%q matched %q", g.pattern, name)
	}
	if got := testing.AllocsPerRun(10, func() { g.matchName(name) }); got != 0 {
		t.Errorf("matchName allocates %v", got)
	}
}

func BenchmarkGlobWorstCase(b *testing.B) {
	g, name := globWorstCase()
	b.ReportAllocs()
	for b.Loop() {
		g.matchName(name)
	}
}

// TestGlobDuplicates: a wildcard rule listed twice (in one source or two)
// is one entry, the first; Len counts distinct rules.
func TestGlobDuplicates(t *testing.T) {
	l := buildSources(t, FormatAdblock, [2]string{"a.txt", "||ads*.example^\n||ads*.example^\n@@||ads*.example^\n"},
		[2]string{"b.txt", "||ADS*.example^\n"})
	if l.Len() != 2 {
		t.Errorf("Len = %d, want 2 (the block and the exception)", l.Len())
	}
	m, ok := l.Match("ads1.example")
	if want := (Match{Rule: "@@||ads*.example^", Source: "a.txt", Line: 3, Action: Allow}); !ok || m != want {
		t.Errorf("Match = %+v, %v; want %+v", m, ok, want)
	}
}

// TestGlobMatchReference compares matchName with a regexp built from the
// same pattern ('*' as ".*", anchored per kind) on random patterns and
// names over a small alphabet, so that over-matching, empty '*' runs and
// '*' across dots are all exercised.
func TestGlobMatchReference(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	word := func(alphabet string, n int) string {
		b := make([]byte, n)
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		return string(b)
	}
	for range 20000 {
		pattern := word("ab.*", 1+r.IntN(7))
		if !strings.Contains(pattern, "*") {
			pattern += "*"
		}
		name := word("ab.", 1+r.IntN(9))
		k := kind(r.IntN(3))
		body := strings.ReplaceAll(regexp.QuoteMeta(pattern), `\*`, ".*")
		expr := map[kind]string{kindSub: `^(.*\.)?` + body + `$`, kindExact: `^` + body + `$`, kindWild: `^.*\.` + body + `$`}[k]
		g := newGlob(k, pattern)
		if got, want := g.matchName(name), regexp.MustCompile(expr).MatchString(name); got != want {
			t.Fatalf("glob %q (kind %d) matchName(%q) = %v, regexp %s says %v", pattern, k, name, got, expr, want)
		}
	}
}
