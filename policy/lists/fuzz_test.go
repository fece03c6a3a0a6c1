package lists

import (
	"bytes"
	"strings"
	"testing"
)

// fuzzParse checks the parser never panics, never fails on bad lines,
// and that every entry it accepts is found again by Match.
func fuzzParse(f *testing.F, format Format, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := NewBuilder()
		type added struct {
			k    kind
			name string
		}
		var entries []added
		b.onAdd = func(k kind, name string) { entries = append(entries, added{k, strings.Clone(name)}) }
		st, err := Parse(bytes.NewReader(data), "fuzz", format, b)
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if st.Entries < 0 || st.Invalid < 0 || len(st.FirstErrors) > maxFirstErrors {
			t.Fatalf("bad stats %+v", st)
		}
		l := b.Build("fuzz", "")
		if l.Len() > st.Entries {
			t.Fatalf("Len %d > entries %d", l.Len(), st.Entries)
		}
		for _, line := range strings.Split(string(data), "\n") {
			l.Match(strings.TrimSpace(line)) // must not panic
		}
		for _, g := range l.globs {
			// Every '*' as "x": a name the rule must match.
			q := strings.ReplaceAll(g.pattern, "*", "x")
			if g.kind == kindWild {
				q = "sub." + q
			}
			if len(q) > 253 {
				continue
			}
			if m, ok := l.Match(q); !ok || m.Source != "fuzz" || m.Line < 1 {
				t.Fatalf("glob %q (kind %d) not matched by %q: %+v %v", g.pattern, g.kind, q, m, ok)
			}
		}
		for _, e := range entries {
			q := e.name
			if e.k == kindWild {
				q = "sub." + e.name
			}
			if len(q) > 253 {
				continue
			}
			m, ok := l.Match(q)
			if !ok {
				t.Fatalf("entry %q (kind %d) not matched by %q", e.name, e.k, q)
			}
			if m.Rule == "" || m.Source != "fuzz" || m.Line < 1 {
				t.Fatalf("Match(%q) = %+v", q, m)
			}
		}
	})
}

func FuzzParseHosts(f *testing.F) {
	fuzzParse(f, FormatHosts, "0.0.0.0 a.example b.example # c\n", "::1 localhost\r\n", "\ufeff127.0.0.1 x.Example.\n")
}

func FuzzParseDomains(f *testing.F) {
	fuzzParse(f, FormatDomains, "example.com\n*.wild.example\n", "Bücher.example\n", "a..b\n", "s3-*-w.*.example\n*.x*.example.\n", "00*..\n")
}

func FuzzParseWildcard(f *testing.F) {
	fuzzParse(f, FormatWildcard, "*.example.com\n", "*.*.x\n")
}

func FuzzParseAdblock(f *testing.F) {
	fuzzParse(f, FormatAdblock, "||a.example^\n@@||b.a.example^$important\n", "|x.example^|\n||*.w.example^\n/re/\n", "example.org##.ad\n",
		"||ads*.example^\n@@|s3-*-w.*.example^\n||*.c*.example^$important\n||*^\n")
}

func FuzzParseRPZ(f *testing.F) {
	fuzzParse(f, FormatRPZ, "$TTL 300\n@ SOA a. b. (1\n2 )\nx.example CNAME .\n*.x.example CNAME *.\n", "$ORIGIN rpz.\ny.example.rpz. CNAME rpz-passthru.\n")
}

func FuzzParseAuto(f *testing.F) {
	fuzzParse(f, FormatAuto, "! adblock\n||a^\n", "0.0.0.0 a\n", "a CNAME .\n")
}
