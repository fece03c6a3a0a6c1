package lists

import (
	"math/rand/v2"
	"regexp"
	"regexp/syntax"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// TestRegexFilter: what the filter learns from a regex rule's syntax, and
// which names it turns away.
func TestRegexFilter(t *testing.T) {
	for _, tt := range []struct {
		expr                     string
		prefix, contains, suffix string
		minLen, maxLen           int
		first                    string // the possible first bytes, "" for any
		pass, reject             []string
	}{
		{`^139\.45\.197\.2(4[0-9]|5[0-4])`, "139.45.197.2", "139.45.197.2", "", 14, -1, "1",
			[]string{"139.45.197.245", "139.45.197.250.x"}, []string{"139.45.197.2", "39.45.197.245"}},
		{`^re[0-9]+\.example$`, "re", ".example", ".example", 11, -1, "r",
			[]string{"re1.example"}, []string{"re1.example.com", "re.example"}},
		{`\Aads\.`, "ads.", "ads.", "", 4, -1, "a", []string{"ads.x"}, []string{"xads."}},
		{`^(a|c)\.[0-9a-f]{56}\.com$`, "", ".com", ".com", 62, 62, "ac",
			[]string{"a." + strings.Repeat("0", 56) + ".com"}, []string{"b." + strings.Repeat("0", 56) + ".com", "a.0.com"}},
		{`^(mon|tue|wed|thu|fri|sat|sun)\d{1,2}\.\w{2}\d{1,6}\w{4}\.com$`, "", ".com", ".com", 16, 22, "fmstw",
			[]string{"mon1.ab1cdef.com", "wed12.ab123456cdef.com"}, []string{"example1234.com", "mon1.ab1cdef.net", "mon12.ab123456cdefgh.com"}},
		{`(https?:\/\/)213\.32\.115\..{100,}`, "", "213.32.115.", "", 118, -1, "", nil, []string{"213.32.115.1"}},
		{`62.76.25.2(7|8)`, "", "62", "", 11, -1, "", []string{"x62.76.25.27"}, nil},
		{`ads\.example`, "", "ads.example", "", 11, -1, "", []string{"my.ads.example.com"}, []string{"ads.example2"[:10]}},
		{`^(?i)ads\.`, "", "", "", 4, -1, "Aa", []string{"ads.x", "ADS.x"}, []string{"bds.x"}}, // case folded: no literals
		{`^(?i)kb`, "", "", "", 2, -1, "", []string{"kb", "\u212ab"}, nil},                     // 'k' folds to the Kelvin sign
		{`^`, "", "", "", 0, -1, "", []string{"", "x"}, nil},
		{`(`, "", "", "", 0, -1, "", []string{"x"}, nil}, // does not parse: passes everything
		{`(?m)^ads$`, "ads", "ads", "ads", 3, 3, "a", []string{"ads"}, []string{"ads.x"}},
		{`^a|^b`, "", "", "", 1, -1, "", []string{"a.x"}, nil},
		{`^a*b`, "", "b", "", 1, -1, "", []string{"b", "aab"}, nil}, // nullable first: no set
		{`^[a-c]{2,3}\.x{0,2}$`, "", ".", "", 3, 6, "abc", []string{"ab.", "abc.xx"}, []string{"d.x", "abcd.xx"}},
		{`^é`, "é", "é", "", 1, -1, "", []string{"é"}, []string{"e"}},
	} {
		f := newRegexFilter(tt.expr)
		firstSet := ""
		if f.firstSet {
			for c := range 128 {
				if f.first[c>>6]&(1<<(c&63)) != 0 {
					firstSet += string(rune(c))
				}
			}
		}
		if f.prefix != tt.prefix || f.contains != tt.contains || f.suffix != tt.suffix ||
			f.minLen != tt.minLen || f.maxLen != tt.maxLen || firstSet != tt.first {
			t.Errorf("newRegexFilter(%q) = prefix %q contains %q suffix %q len %d..%d first %q; want %q %q %q %d..%d %q",
				tt.expr, f.prefix, f.contains, f.suffix, f.minLen, f.maxLen, firstSet,
				tt.prefix, tt.contains, tt.suffix, tt.minLen, tt.maxLen, tt.first)
		}
		for _, n := range tt.pass {
			if !f.pass(n) {
				t.Errorf("%q: filter turns away %q", tt.expr, n)
			}
		}
		for _, n := range tt.reject {
			if f.pass(n) {
				t.Errorf("%q: filter passes %q", tt.expr, n)
			}
		}
	}
}

// TestRegexFilterNeverRejectsAMatch draws names that match each regex (a
// random walk of its syntax tree) and names that mostly do not, and checks
// that the filter passes every name the regexp matches. The regexes are
// the ones of the real lists and others chosen for their shapes.
func TestRegexFilterNeverRejectsAMatch(t *testing.T) {
	exprs := []string{
		`(https?:\/\/)213\.32\.115\..{100,}`, `193.200.64.24:`, `62.76.25.2(7|8)`,
		`^(a|c)\.[0-9a-f]{56}\.com$`, `^(mon|tue|wed|thu|fri|sat|sun)\d{1,2}\.\w{2}\d{1,6}\w{4}\.com$`,
		`^139\.45\.19[5-7]\.\d{1,3}`, `^142\.91\.159\.(1[5-9]\d|2[0-4]\d|250):(80|443)$`,
		`^23\.109\.170\.(18[7-9]|19[0-2])$`, `^88\.208\.22\.[1234]$`, `^https:\/\/(a|c)\.[0-9a-f]{56}\.com$`,
		`^(?i)kb`, `^(?i)[k-s]x`, `(?i)^ads?\d*\.`, `^a*b+`, `^(x|)y`, `^(ab)?c$`, `^\bads`, `(?m)^t.$`,
		`^[^a-z]{2}`, `^.{3,5}$`, `\.(com|net)$`, `^(?:ad|track)[0-9]{0,3}\.`, `^$`, `^é+\.x`,
	}
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := "abcdkmstx019.-:/é\u212a"
	for _, expr := range exprs {
		re := regexp.MustCompile(expr)
		ast, err := syntax.Parse(expr, syntax.Perl)
		if err != nil {
			t.Fatal(err)
		}
		ast = ast.Simplify()
		f := newRegexFilter(expr)
		matched, rejected := 0, 0
		for i := range 4000 {
			var name string
			if i%2 == 0 {
				var sb strings.Builder
				sample(r, ast, &sb)
				name = sb.String()
			} else {
				rs := []rune(alphabet)
				var sb strings.Builder
				for range r.IntN(12) {
					sb.WriteRune(rs[r.IntN(len(rs))])
				}
				name = sb.String()
			}
			if !re.MatchString(name) {
				if !f.pass(name) {
					rejected++
				}
				continue
			}
			matched++
			if !f.pass(name) {
				t.Fatalf("%q: filter turns away %q, which the regexp matches", expr, name)
			}
		}
		if matched == 0 {
			t.Errorf("%q: no sampled name matched; the sampler is broken", expr)
		}
		t.Logf("%-70q %4d matching names passed, %4d others turned away", expr, matched, rejected)
	}
}

// sample writes a random string that the simplified regexp re matches
// (word boundaries aside).
func sample(r *rand.Rand, re *syntax.Regexp, sb *strings.Builder) {
	switch re.Op {
	case syntax.OpLiteral:
		for _, c := range re.Rune {
			if re.Flags&syntax.FoldCase != 0 && r.IntN(2) == 0 {
				for range 1 + r.IntN(2) {
					c = unicode.SimpleFold(c)
				}
			}
			sb.WriteRune(c)
		}
	case syntax.OpCharClass:
		i := 2 * r.IntN(len(re.Rune)/2)
		lo, hi := re.Rune[i], re.Rune[i+1]
		if hi-lo > 1000 {
			hi = lo + 1000
		}
		c := lo + rune(r.IntN(int(hi-lo+1)))
		if !utf8.ValidRune(c) {
			c = lo
		}
		sb.WriteRune(c)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		sb.WriteByte("ax.9-"[r.IntN(5)])
	case syntax.OpCapture:
		sample(r, re.Sub[0], sb)
	case syntax.OpStar, syntax.OpPlus, syntax.OpQuest, syntax.OpRepeat:
		lo, hi := 0, 4
		switch re.Op {
		case syntax.OpPlus:
			lo = 1
		case syntax.OpQuest:
			hi = 1
		case syntax.OpRepeat:
			lo, hi = re.Min, re.Max
			if hi < 0 {
				hi = lo + 4
			}
		}
		for range lo + r.IntN(hi-lo+1) {
			sample(r, re.Sub[0], sb)
		}
	case syntax.OpConcat:
		for _, sub := range re.Sub {
			sample(r, sub, sb)
		}
	case syntax.OpAlternate:
		sample(r, re.Sub[r.IntN(len(re.Sub))], sb)
	}
}
