package detect

import (
	"fmt"
	"net/netip"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/dnsvalve/dnsvalve/detect/internal/corpus"
	"github.com/dnsvalve/dnsvalve/detect/seen"
)

const legitList = "/work/shared/testdata/legit/umbrella-top-100k.txt"

type evalPair struct {
	client netip.Addr
	domain string
}

// runSessions feeds sessions one after another (each from its own base
// time, hours apart) through d and returns, per session, the index and
// offset of the first query answered with Alert, and the set of alerted pairs.
func runSessions(tb testing.TB, d *Detector, sessions []corpus.Session, base time.Time) (first []int, at []time.Duration, pairs map[evalPair]bool) {
	tb.Helper()
	pairs = map[evalPair]bool{}
	first = make([]int, len(sessions))
	at = make([]time.Duration, len(sessions))
	for i, s := range sessions {
		first[i] = -1
		c := Client{Addr: s.Client}
		for j, q := range s.Queries {
			now := base.Add(q.At)
			r := d.Observe(now, c, q.Name, q.Qtype)
			if q.NX {
				d.ObserveRcode(now, s.Client, q.Name, 3)
			} else {
				d.ObserveRcode(now, s.Client, q.Name, 0)
			}
			if r.Ignored {
				continue
			}
			k := evalPair{s.Client, r.Domain}
			if _, ok := pairs[k]; !ok {
				pairs[k] = false
			}
			if r.Alert {
				pairs[k] = true
				if first[i] < 0 {
					first[i], at[i] = j, q.At
				}
			}
		}
		base = base.Add(s.Duration() + 3*time.Hour)
	}
	return first, at, pairs
}

func newEvalDetector(tb testing.TB) *Detector {
	tb.Helper()
	st, err := seen.Open("memory:", 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	d, err := New(Config{Learn: -1}, st, nil, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { d.Close(); st.Close() })
	return d
}

// TestEvaluation measures per-pair detection and false-positive rates on the
// generated corpus (and the legit list when present) and asserts the targets:
// >= 99.5% of tunnel sessions detected (bulk: within 60 s or 100 queries;
// low-and-slow: within 30 min), <= 0.01% of benign pairs alerted, and no
// alert at all on legit-list domains.
func TestEvaluation(t *testing.T) {
	perTool, benignN := 100, 60
	if testing.Short() {
		perTool, benignN = 15, 10
	}
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

	t.Run("tunnels", func(t *testing.T) {
		sessions := corpus.Tunnels(1, perTool)
		first, at, _ := runSessions(t, newEvalDetector(t), sessions, base)
		type agg struct {
			n, hit  int
			delays  []time.Duration
			queries []int
		}
		byKind := map[string]*agg{}
		total, hits := 0, 0
		for i, s := range sessions {
			key := s.Kind + map[bool]string{true: "/slow", false: "/bulk"}[s.Slow]
			a := byKind[key]
			if a == nil {
				a = &agg{}
				byKind[key] = a
			}
			a.n++
			total++
			ok := first[i] >= 0 && (s.Slow && at[i] <= 30*time.Minute || !s.Slow && (at[i] <= time.Minute || first[i] < 100))
			if ok {
				a.hit++
				hits++
				a.delays = append(a.delays, at[i])
				a.queries = append(a.queries, first[i]+1)
			} else if s.Slow {
				t.Errorf("low-and-slow %s session %d not alerted within 30 min (%d queries, first alert query %d at %v)", key, i, len(s.Queries), first[i], at[i])
			} else {
				t.Logf("missed %s session %d (%d queries, first alert query %d at %v)", key, i, len(s.Queries), first[i], at[i])
			}
		}
		keys := make([]string, 0, len(byKind))
		for k := range byKind {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			a := byKind[k]
			sort.Slice(a.delays, func(i, j int) bool { return a.delays[i] < a.delays[j] })
			sort.Ints(a.queries)
			med := func() string {
				if len(a.delays) == 0 {
					return "-"
				}
				return fmt.Sprintf("median %v / %d queries", a.delays[len(a.delays)/2].Round(time.Second), a.queries[len(a.queries)/2])
			}()
			t.Logf("%-28s detected %3d/%3d  time to alert %s", k, a.hit, a.n, med)
		}
		rate := float64(hits) / float64(total)
		t.Logf("tunnel sessions detected: %d/%d = %.2f%%", hits, total, 100*rate)
		if rate < 0.995 {
			t.Errorf("detection rate %.2f%% < 99.5%%", 100*rate)
		}
	})

	t.Run("benign", func(t *testing.T) {
		sessions := corpus.Benign(2, benignN)
		_, _, pairs := runSessions(t, newEvalDetector(t), sessions, base)
		kinds := map[evalPair]string{}
		for _, s := range sessions {
			for _, q := range s.Queries {
				var f Features
				Extract(q.Name, q.Qtype, &f)
				kinds[evalPair{s.Client, f.Registered}] = s.Kind
			}
		}
		alerted := 0
		for p, a := range pairs {
			if a {
				alerted++
				t.Logf("false positive: %s pair %v %s", kinds[p], p.client, p.domain)
			}
		}
		fp := float64(alerted) / float64(len(pairs))
		t.Logf("benign hard-negative pairs alerted: %d/%d = %.4f%%", alerted, len(pairs), 100*fp)
		if fp > 0.0001 {
			t.Errorf("false-positive rate %.4f%% > 0.01%%", 100*fp)
		}
	})

	t.Run("legit", func(t *testing.T) {
		f, err := os.Open(legitList)
		if err != nil {
			t.Skipf("legit list absent (%v): see /work/shared/testdata/legit/SOURCES.md", err)
		}
		defer f.Close()
		maxNames := 0
		if testing.Short() {
			maxNames = 20000
		}
		sessions, err := corpus.LegitSessions(3, f, 5000, maxNames)
		if err != nil {
			t.Fatal(err)
		}
		_, _, pairs := runSessions(t, newEvalDetector(t), sessions, base)
		alerted := 0
		for p, a := range pairs {
			if a {
				alerted++
				t.Errorf("alert on legit domain %s (client %v)", p.domain, p.client)
			}
		}
		t.Logf("legit-list pairs alerted: %d/%d", alerted, len(pairs))
	})
}
