package main

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"
)

func defaults(set string, n int) options {
	return options{set: set, n: n, seed: 1, zone: "bench.test.", popular: 1000, zipf: 1.1, unique: 0.2}
}

// lines generates o and checks every line is "fqdn TYPE" that dnsperf and
// miekg/dns accept; it returns the names and types.
func lines(tb testing.TB, o options) (names, types []string) {
	tb.Helper()
	var buf bytes.Buffer
	if err := generate(&buf, o); err != nil {
		tb.Fatalf("generate %+v: %v", o, err)
	}
	for line := range strings.Lines(buf.String()) {
		f := strings.Fields(line)
		if len(f) != 2 {
			tb.Fatalf("line %q: want 2 fields", line)
		}
		if _, ok := dns.IsDomainName(f[0]); !ok || !dns.IsFqdn(f[0]) || !dns.IsSubDomain(dns.Fqdn(o.zone), f[0]) {
			tb.Fatalf("line %q: %q is not a valid name under %s", line, f[0], o.zone)
		}
		if _, ok := dns.StringToType[f[1]]; !ok {
			tb.Fatalf("line %q: unknown type %q", line, f[1])
		}
		names = append(names, f[0])
		types = append(types, f[1])
	}
	return names, types
}

func distinct(names []string) map[string]int {
	m := make(map[string]int, len(names))
	for _, n := range names {
		m[n]++
	}
	return m
}

func TestGenerateSets(t *testing.T) {
	tests := []struct {
		name         string
		opts         options
		wantLines    int
		wantDistinct int // -1: don't check
		check        func(t *testing.T, names, types []string)
	}{
		{name: "hits_distinct_names", opts: defaults("hits", 500), wantLines: 500, wantDistinct: 500,
			check: func(t *testing.T, _, types []string) {
				c := distinct(types)
				if c["A"] != 350 || c["AAAA"] != 100 || c["TXT"] != 50 {
					t.Errorf("type counts %v, want A 350 AAAA 100 TXT 50", c)
				}
			}},
		{name: "popular_once_each", opts: defaults("popular", 0), wantLines: 1000, wantDistinct: 1000},
		{name: "misses_all_unique", opts: defaults("misses", 20000), wantLines: 20000, wantDistinct: 20000},
		{name: "mix_unique_fraction_and_skew", opts: defaults("mix", 20000), wantLines: 20000, wantDistinct: -1,
			check: func(t *testing.T, names, _ []string) {
				unique, top := 0, 0
				for _, n := range names {
					if strings.Contains(n, ".u.mix.") {
						unique++
					}
					if n == "p0.pop.bench.test." {
						top++
					}
				}
				if frac := float64(unique) / float64(len(names)); frac < 0.18 || frac > 0.22 {
					t.Errorf("unique fraction %.3f, want about 0.2", frac)
				}
				counts := distinct(names)
				for n, c := range counts {
					if c > top {
						t.Errorf("%s seen %d times, more than rank 0 (%d): not Zipf", n, c, top)
					}
				}
			}},
		{name: "tunnel_long_labels", opts: defaults("tunnel", 2000), wantLines: 2000, wantDistinct: 2000,
			check: func(t *testing.T, names, types []string) {
				for _, n := range names {
					if len(dns.SplitDomainName(n)[0]) < 40 {
						t.Fatalf("%s: first label shorter than 40", n)
					}
				}
				if c := distinct(types); c["TXT"] < 1000 {
					t.Errorf("type counts %v, want mostly TXT", c)
				}
			}},
		{name: "zone_without_dot", opts: func() options { o := defaults("hits", 3); o.zone = "Load.Example"; return o }(),
			wantLines: 3, wantDistinct: 3,
			check: func(t *testing.T, names, _ []string) {
				if names[0] != "h0.hits.load.example." {
					t.Errorf("first name %q, want h0.hits.load.example.", names[0])
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			names, types := lines(t, tt.opts)
			if len(names) != tt.wantLines {
				t.Fatalf("%d lines, want %d", len(names), tt.wantLines)
			}
			if d := len(distinct(names)); tt.wantDistinct >= 0 && d != tt.wantDistinct {
				t.Errorf("%d distinct names, want %d", d, tt.wantDistinct)
			}
			if tt.check != nil {
				tt.check(t, names, types)
			}
		})
	}
}

func TestGenerateDeterministic(t *testing.T) {
	for _, set := range []string{"hits", "misses", "mix", "tunnel"} {
		t.Run(set, func(t *testing.T) {
			a, _ := lines(t, defaults(set, 300))
			b, _ := lines(t, defaults(set, 300))
			if strings.Join(a, ",") != strings.Join(b, ",") {
				t.Error("same seed gave different output")
			}
			other := defaults(set, 300)
			other.seed = 2
			c, _ := lines(t, other)
			if set != "hits" && strings.Join(a, ",") == strings.Join(c, ",") {
				t.Error("different seeds gave the same output")
			}
		})
	}
}

func TestMissesDisjointAcrossSeeds(t *testing.T) {
	a, _ := lines(t, defaults("misses", 5000))
	o := defaults("misses", 5000)
	o.seed = 2
	b, _ := lines(t, o)
	seen := distinct(a)
	for _, n := range b {
		if seen[n] > 0 {
			t.Fatalf("%s in both seed 1 and seed 2", n)
		}
	}
}

func TestGenerateList(t *testing.T) {
	o := defaults("list", 5000)
	o.zone = "list.test."
	var buf bytes.Buffer
	if err := generate(&buf, o); err != nil {
		t.Fatalf("generate: %v", err)
	}
	var names []string
	for line := range strings.Lines(buf.String()) {
		name := strings.TrimSuffix(line, "\n")
		if strings.HasSuffix(name, ".") || strings.ContainsAny(name, " \t") {
			t.Fatalf("line %q: want a bare domain name", line)
		}
		if _, ok := dns.IsDomainName(name); !ok || !dns.IsSubDomain("list.test.", dns.Fqdn(name)) {
			t.Fatalf("line %q: not a domain name under list.test", line)
		}
		names = append(names, name)
	}
	if len(names) != 5000 || len(distinct(names)) != 5000 {
		t.Fatalf("%d names, %d distinct, want 5000 and 5000", len(names), len(distinct(names)))
	}
	// A shorter list with the same seed is a prefix of the longer one.
	short := o
	short.n = 100
	var sb bytes.Buffer
	if err := generate(&sb, short); err != nil {
		t.Fatalf("generate: %v", err)
	}
	if !strings.HasPrefix(buf.String(), sb.String()) {
		t.Error("-n 100 is not a prefix of -n 5000 with the same seed")
	}
}

func TestGenerateRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		mod  func(*options)
	}{
		{name: "unknown_set", mod: func(o *options) { o.set = "nope" }},
		{name: "negative_n", mod: func(o *options) { o.n = -1 }},
		{name: "zipf_too_small", mod: func(o *options) { o.zipf = 1 }},
		{name: "unique_above_one", mod: func(o *options) { o.unique = 1.5 }},
		{name: "root_zone", mod: func(o *options) { o.zone = "." }},
		{name: "no_popular", mod: func(o *options) { o.popular = 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := defaults("mix", 10)
			tt.mod(&o)
			var buf bytes.Buffer
			if err := generate(&buf, o); !errors.Is(err, errUsage) {
				t.Errorf("generate = %v, want errUsage", err)
			}
		})
	}
}

func BenchmarkGenerateMisses(b *testing.B) {
	o := defaults("misses", 10000)
	b.ReportAllocs()
	for b.Loop() {
		if err := generate(discard{}, o); err != nil {
			b.Fatal(err)
		}
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }
