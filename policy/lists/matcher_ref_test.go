package lists

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// refEntry is one entry as the reference matcher sees it: the whole text.
type refEntry struct {
	name, pre, post string
	k               kind
	a               Action
	important       bool
	src             string
	line            int
	seq             int // add order
}

// refList is the contract of List.Match written the slow, obvious way
// over the entries' text: dedupe per (name, kind) keeping the strongest,
// first added; walk the suffixes shortest first and, within a suffix, the
// kinds in order (sub, exact, wild), taking an entry of rank >= the best
// so far; a list made only of name-and-subdomain entries stops at the
// first suffix that reaches its strongest rank.
type refList struct {
	win     map[refKey]refEntry
	onlySub bool
	maxRank int
}

type refKey struct {
	name string
	k    kind
}

func newRefList(entries []refEntry) *refList {
	win := map[refKey]refEntry{}
	onlySub, maxRank := true, 0
	for _, e := range entries {
		if e.k != kindSub {
			onlySub = false
		}
		r := rank(e.a, e.important)
		maxRank = max(maxRank, r)
		kk := refKey{e.name, e.k}
		if w, ok := win[kk]; !ok || r > rank(w.a, w.important) || (r == rank(w.a, w.important) && e.seq < w.seq) {
			win[kk] = e
		}
	}
	return &refList{win: win, onlySub: onlySub, maxRank: maxRank}
}

func (ref *refList) match(q string) (Match, bool) {
	q = strings.ToLower(strings.TrimSuffix(q, "."))
	if q == "" || len(q) > 253 {
		return Match{}, false
	}
	var best *refEntry
	bestRank := -1
	for i := len(q); i >= 0; i-- {
		if i != 0 && q[i-1] != '.' {
			continue
		}
		suffix := q[i:]
		for k := kindSub; k <= kindWild; k++ {
			if (k == kindExact && i != 0) || (k == kindWild && i == 0) {
				continue
			}
			e, ok := ref.win[refKey{suffix, k}]
			if !ok {
				continue
			}
			if r := rank(e.a, e.important); best == nil || r >= bestRank {
				best, bestRank = &e, r
			}
		}
		if best != nil && ref.onlySub && bestRank == ref.maxRank {
			break
		}
	}
	if best == nil {
		return Match{}, false
	}
	return Match{Rule: best.pre + best.name + best.post, Source: best.src, Line: best.line, Action: best.a, Important: best.important}, true
}

// TestMatchReference compares Match with refList.match on random lists whose
// names share many suffixes, with every kind, action, decoration and
// source mix, on queries that hit, miss, differ in case or carry a
// trailing dot.
func TestMatchReference(t *testing.T) {
	labels := []string{"a", "b", "ex", "com", "x-1", "longerlabel", "0123456789abcdefghij", "zz", "miss", ""}
	tests := []struct {
		name    string
		kinds   []kind
		actions []Action
		decor   bool
		sources int
	}{
		{name: "plain_block", kinds: []kind{kindSub}, actions: []Action{Block}, sources: 1},
		{name: "plain_two_sources", kinds: []kind{kindSub}, actions: []Action{Block}, sources: 2},
		{name: "rpz_mix", kinds: []kind{kindExact, kindWild}, actions: []Action{BlockNXDomain, BlockNoData, Allow}, sources: 1},
		{name: "adblock_mix", kinds: []kind{kindSub, kindExact, kindWild}, actions: []Action{Block, Allow}, decor: true, sources: 3},
		{name: "sub_allow_and_block", kinds: []kind{kindSub}, actions: []Action{Block, Allow}, decor: true, sources: 2},
	}
	for ti, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(uint64(ti), 7))
			// Entries have two or three labels (no empty ones); queries
			// draw from more labels, so some of their suffixes are in
			// the list and some are not.
			randName := func(minLabels, maxLabels, nLabels int) string {
				parts := make([]string, minLabels+r.IntN(maxLabels-minLabels+1))
				for i := range parts {
					parts[i] = labels[r.IntN(nLabels)]
				}
				return strings.Join(parts, ".")
			}
			b := NewBuilder()
			var entries []refEntry
			for s := range tc.sources {
				src := fmt.Sprintf("src%d.txt", s)
				si := b.source(src)
				line := 0
				for range 300 {
					line += 1 + r.IntN(3)
					e := refEntry{name: randName(2, 3, 7), k: tc.kinds[r.IntN(len(tc.kinds))], a: tc.actions[r.IntN(len(tc.actions))],
						src: src, line: line, seq: len(entries)}
					if tc.decor && r.IntN(2) == 0 {
						e.pre, e.post = "||", "^"
						if e.a == Allow {
							e.pre = "@@||"
						}
						if r.IntN(4) == 0 {
							e.important, e.post = true, "^$important"
						}
					}
					entries = append(entries, e)
					b.add(si, e.line, e.k, e.a, e.important, e.pre, e.name, e.post)
				}
			}
			l := b.Build("ref", "")
			ref := newRefList(entries)
			var queries []string
			for range 3000 {
				q := randName(1, 4, len(labels))
				switch r.IntN(6) {
				case 0:
					q = strings.ToUpper(q)
				case 1:
					q += "."
				case 2:
					q = "." + q // an empty label
				}
				queries = append(queries, q)
			}
			hits := 0
			for _, q := range queries {
				got, gotOK := l.Match(q)
				want, wantOK := ref.match(q)
				if got != want || gotOK != wantOK {
					t.Fatalf("Match(%q) = %+v, %v; reference %+v, %v", q, got, gotOK, want, wantOK)
				}
				if gotOK {
					hits++
				}
			}
			if hits < len(queries)/10 || hits == len(queries) {
				t.Fatalf("%d of %d queries matched: the generator does not exercise both outcomes", hits, len(queries))
			}
		})
	}
}
