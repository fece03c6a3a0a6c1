package lists

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
)

// buildEntry is one entry for Builder.add.
type buildEntry struct {
	src       string
	line      int
	kind      kind
	action    Action
	important bool
	pre, post string
	name      string
}

// buildFrom adds entries to a fresh Builder whose arrays are sized for
// capacity entries (as Parse sizes them from a source's size) and builds.
func buildFrom(tb testing.TB, entries []buildEntry, capacity int) *List {
	tb.Helper()
	b := NewBuilder()
	b.remaining = func() int { return capacity - len(b.hashes) }
	var src uint32
	for i, e := range entries {
		if i == 0 || e.src != entries[i-1].src {
			src = b.source(e.src) // a source's lines are numbered from its start
		}
		b.add(src, e.line, e.kind, e.action, e.important, e.pre, e.name, e.post)
	}
	if b.dropped != 0 {
		tb.Fatalf("%d entries dropped", b.dropped)
	}
	return b.Build("t", "")
}

// TestBuildInPlace builds the same entries twice: with the builder's
// arrays sized exactly (the table and prefilter are then built inside
// them) and with three times the room (built in a fresh array), and checks
// both lists answer every query alike.
func TestBuildInPlace(t *testing.T) {
	names := synthNames(40_000)
	plain := func(n, firstLine int) []buildEntry {
		out := make([]buildEntry, n)
		for i := range out {
			out[i] = buildEntry{src: "a.txt", line: firstLine + i, name: names[i]}
		}
		return out
	}
	// mixed: every kind, action and decoration, two sources, ~20 %
	// repeated names (some with another kind or strength).
	mixed := func() []buildEntry {
		r := rand.New(rand.NewPCG(7, 8))
		var out []buildEntry
		for i := range 30_000 {
			e := buildEntry{src: "a.txt", line: i + 1, name: names[i]}
			if i >= 15_000 {
				e.src, e.line = "b.txt", i-15_000+1
			}
			if i%5 == 4 {
				e.name = names[r.IntN(i)]
			}
			switch r.IntN(6) {
			case 0:
				e.kind, e.pre, e.post = kindExact, "|", "^"
			case 1:
				e.kind, e.pre = kindWild, "*."
			case 2:
				e.pre, e.post = "||", "^"
			case 3:
				e.action, e.pre, e.post = Allow, "@@||", "^"
			case 4:
				e.important, e.pre, e.post = true, "||", "^$important"
			}
			out = append(out, e)
		}
		return out
	}
	for _, tc := range []struct {
		name    string
		entries []buildEntry
	}{
		{"plain_names", plain(40_000, 1)},
		{"small_list", plain(300, 1)},
		{"big_line_numbers", plain(20_000, lineMask-10_000)},
		{"mixed_shapes_and_duplicates", mixed()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(tc.entries)
			in := buildFrom(t, tc.entries, n)
			fresh := buildFrom(t, tc.entries, 3*n)
			if !in.inPlace || fresh.inPlace {
				t.Fatalf("inPlace = %v for an exact builder, %v for a 3x one; want true, false", in.inPlace, fresh.inPlace)
			}
			if in.Len() != fresh.Len() {
				t.Fatalf("Len = %d in place, %d fresh", in.Len(), fresh.Len())
			}
			for i, e := range tc.entries {
				for _, q := range []string{e.name, "www." + e.name, fmt.Sprintf("absent%d.%s", i, e.name[len(e.name)/2:])} {
					m1, ok1 := in.Match(q)
					m2, ok2 := fresh.Match(q)
					if m1 != m2 || ok1 != ok2 {
						t.Fatalf("Match(%q) = %+v, %v in place; %+v, %v fresh", q, m1, ok1, m2, ok2)
					}
				}
			}
			if _, ok := in.Match(tc.entries[0].name); !ok && tc.entries[0].kind != kindWild {
				t.Fatalf("Match(%q) missed", tc.entries[0].name)
			}
		})
	}
}

// TestPlaceKeysInPlace places keys with crafted bucket counts (long spills
// at the end, empty stretches, full buckets) from the last words of the
// destination itself, as Build does, and from a separate array: the
// results must be the same.
func TestPlaceKeysInPlace(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	randomHomes := func(nb, m int) []uint32 {
		h := make([]uint32, nb)
		for range m {
			h[r.IntN(nb)]++
		}
		return h
	}
	for _, tc := range []struct {
		name  string
		homes []uint32
	}{
		{"spill_past_last_bucket", []uint32{0, 2, 14}},
		{"everything_in_last_bucket", []uint32{0, 0, 0, 0, 40}},
		{"everything_in_first_bucket", []uint32{30, 0, 0, 0}},
		{"full_buckets", []uint32{8, 8, 8, 8}},
		{"one_key", []uint32{0, 1}},
		{"random_load_0.75", randomHomes(1000, 6000)},
		{"random_load_0.95", randomHomes(1000, 7600)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nb := len(tc.homes)
			// The slots Build's first pass would give out, and the table
			// size it would end with.
			m, next := 0, 0
			for bk, c := range tc.homes {
				for range c {
					next = max(next, bk*slotsPerBucket) + 1
					m++
				}
			}
			nslots := max(nb*slotsPerBucket+slotsPerBucket, (next+slotsPerBucket-1)/slotsPerBucket*slotsPerBucket)
			src := make([]uint64, m)
			for i := range src {
				src[i] = r.Uint64() | 1
			}
			sep := make([]uint64, nb+7+nslots)
			wantKeys := placeKeys(sep, alignedIndex(sep, nb), nslots, tc.homes, slices.Clone(src))

			// In place: dst just long enough, garbage everywhere, the keys
			// in its last m words.
			dst := make([]uint64, nb+7+nslots)
			t0 := alignedIndex(dst, nb)
			dst = dst[:t0+nslots]
			for i := range dst {
				dst[i] = ^uint64(0)
			}
			copy(dst[len(dst)-m:], src)
			keys := placeKeys(dst, t0, nslots, tc.homes, dst[len(dst)-m:])
			if !slices.Equal(keys, wantKeys) {
				t.Fatalf("table differs in place:\n got %x\nwant %x", keys, wantKeys)
			}
			placed := 0
			for _, k := range keys {
				if k != 0 {
					placed++
				}
			}
			if placed != m {
				t.Fatalf("%d keys placed, want %d", placed, m)
			}
		})
	}
}
