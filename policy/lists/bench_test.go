package lists

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"
)

// synthNames returns n distinct names shaped like real blocklist entries
// (one or two labels under a registrable domain, ~20 bytes on average).
func synthNames(n int) []string { return synthNamesFrom(0, n) }

// synthNamesFrom returns the names numbered start to start+n-1 (the same
// as synthNames for start 0; other starts draw their own random parts).
func synthNamesFrom(start, n int) []string {
	r := rand.New(rand.NewPCG(1, 2+uint64(start)))
	tlds := []string{"com", "net", "org", "io", "ru", "xyz", "co.uk", "de"}
	out := make([]string, n)
	for k := range out {
		i := start + k
		switch i % 3 {
		case 0:
			out[k] = fmt.Sprintf("d%x-%d.%s", r.Uint32()&0xfff, i, tlds[i%len(tlds)])
		case 1:
			out[k] = fmt.Sprintf("ads%d.track%x-%d.%s", i%97, r.Uint32()&0xff, i, tlds[i%len(tlds)])
		default:
			out[k] = fmt.Sprintf("x%d-%x.cdn.%s", i, r.Uint32()&0xffff, tlds[i%len(tlds)])
		}
	}
	return out
}

func synthList(names []string) []byte {
	var buf bytes.Buffer
	buf.Grow(len(names) * 24)
	for _, n := range names {
		buf.WriteString(n)
		buf.WriteByte('\n')
	}
	return buf.Bytes()
}

// load2M parses and compiles 2,000,000 names, reporting time and the
// growth of in-use heap (after GC, so only the List's own memory).
func load2M(tb testing.TB) (*List, []string, time.Duration, uint64) {
	tb.Helper()
	names := synthNames(2_000_000)
	data := synthList(names)
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	start := time.Now()
	b := NewBuilder()
	st, err := Parse(bytes.NewReader(data), "synthetic", FormatDomains, b)
	if err != nil || st.Entries != len(names) {
		tb.Fatalf("Parse: %v %+v", err, st)
	}
	l := b.Build("big", "")
	elapsed := time.Since(start)
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(data)
	return l, names, elapsed, after.HeapInuse - before.HeapInuse
}

// TestLoad2M reports how long 2M names take to load and how much heap the
// compiled List keeps. Skipped with -short.
func TestLoad2M(t *testing.T) {
	if testing.Short() {
		t.Skip("2M-name load test skipped in -short mode")
	}
	l, names, elapsed, heap := load2M(t)
	if l.Len() != len(names) {
		t.Fatalf("Len = %d, want %d", l.Len(), len(names))
	}
	t.Logf("2M names: load+compile %v, heap in use +%.1f MiB (%.1f bytes/entry; names average %.1f bytes)",
		elapsed, float64(heap)/(1<<20), float64(heap)/float64(len(names)), avgLen(names))
	for _, n := range names[:1000] {
		if _, ok := l.Match("www." + n); !ok {
			t.Fatalf("Match(www.%s) missed", n)
		}
	}
}

func avgLen(names []string) float64 {
	n := 0
	for _, s := range names {
		n += len(s)
	}
	return float64(n) / float64(len(names))
}

// BenchmarkMatch2M matches against a 2,000,000-name list. Besides ns/op
// each set reports dram-loads/op: ns/op over the latency of one load from
// a random line of a 20 MB array (BenchmarkLoadFloor's 20MB_ws128k),
// measured in the same run just before, a figure this shared machine's
// noise moves much less than ns/op.
func BenchmarkMatch2M(b *testing.B) {
	l, names, elapsed, heap := load2M(b)
	huge, herr := l.HugePageBytes()
	b.Logf("load %v, heap +%.1f MiB, %d MiB on huge pages (%v)", elapsed, float64(heap)/(1<<20), huge>>20, herr)
	benchMatchSets(b, l, names, 1<<16, func() float64 { return loadLatency(20<<20, 1<<17, 1<<21) })
}

// loadChain returns an array of size bytes whose first word of each of use
// of its 64-byte lines (0: all) holds the index of the next line's, in a
// random cycle, and the index to start from.
func loadChain(size, use int) ([]uint64, uint64) {
	lines := size / 64
	arr := make([]uint64, lines*8)
	r := rand.New(rand.NewPCG(5, 6))
	perm := r.Perm(lines)
	if use > 0 {
		perm = perm[:use]
	}
	for i, ln := range perm {
		arr[ln*8] = uint64(perm[(i+1)%len(perm)]) * 8
	}
	return arr, uint64(perm[0]) * 8
}

// loadLatency returns the time of one dependent load, in ns, over n loads
// of a loadChain(size, use).
func loadLatency(size, use, n int) float64 {
	arr, p := loadChain(size, use)
	for range use { // warm the TLB and whatever cache holds
		p = arr[p]
	}
	start := time.Now()
	for range n {
		p = arr[p]
	}
	el := time.Since(start)
	runtime.KeepAlive(p)
	return float64(el.Nanoseconds()) / float64(n)
}

// benchMatchSets runs Match over q queries of each shape (a random listed
// name under "www.", a name not listed, the first in upper case) as
// sub-benchmarks; q must be a power of two.
//
// Each set's names lie back to back in one array, read in order, so the
// name itself is in cache when Match runs (the hardware prefetcher streams
// it), as a server's query name is: it was just unpacked from the packet.
// Strings allocated one by one would put a cache miss on the name before
// Match (~60 ns per hit here) that no server pays. Each loop also reads a
// byte of the name eight queries ahead, as the prefetcher alone does not
// always keep up (a load that overlaps the match, as a server's unpacking
// of the next packet would).
//
// With floor set, each set also reports dram-loads/op (ns/op over what
// floor returns, called just before the set runs).
func benchMatchSets(b *testing.B, l *List, names []string, q int, floor func() float64) {
	r := rand.New(rand.NewPCG(3, 4))
	hits := make([]string, q)
	misses := make([]string, q)
	upper := make([]string, q)
	for i := range hits {
		hits[i] = "www." + names[r.IntN(len(names))] + "."
		misses[i] = fmt.Sprintf("miss%d.example%d.com.", i, r.Uint32())
		upper[i] = strings.ToUpper(hits[i])
	}
	hits, misses, upper = backToBack(hits), backToBack(misses), backToBack(upper)
	for _, bc := range []struct {
		name string
		qs   []string
		ok   bool
	}{{"hit", hits, true}, {"miss", misses, false}, {"hit_uppercase", upper, true}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			dram := 0.0
			if floor != nil {
				dram = floor()
			}
			i := 0
			var ahead byte
			for b.Loop() {
				ahead += bc.qs[(i+8)&(q-1)][0]
				if _, ok := l.Match(bc.qs[i&(q-1)]); ok != bc.ok {
					b.Fatalf("Match(%q) = %v", bc.qs[i&(q-1)], ok)
				}
				i++
			}
			runtime.KeepAlive(ahead)
			if dram > 0 {
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/dram, "dram-loads/op")
			}
		})
	}
}

// backToBack returns qs as substrings of one string, in order.
func backToBack(qs []string) []string {
	all := strings.Join(qs, "")
	out := make([]string, len(qs))
	for i, q := range qs {
		out[i], all = all[:len(q)], all[len(q):]
	}
	return out
}

func BenchmarkParseAdblock(b *testing.B) {
	var buf bytes.Buffer
	for _, n := range synthNames(100_000) {
		fmt.Fprintf(&buf, "||%s^\n", n)
	}
	data := buf.Bytes()
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		bl := NewBuilder()
		if _, err := Parse(bytes.NewReader(data), "bench", FormatAuto, bl); err != nil {
			b.Fatal(err)
		}
		bl.Build("b", "")
	}
}

// BenchmarkMatchCached measures Match's compute alone: the same query
// shapes as BenchmarkMatch2M against a list small enough (4096 names,
// ~40 KB of matcher) to stay in L1/L2, so memory latency drops out.
func BenchmarkMatchCached(b *testing.B) {
	names := synthNames(4096)
	bl := NewBuilder()
	if _, err := Parse(bytes.NewReader(synthList(names)), "synthetic", FormatDomains, bl); err != nil {
		b.Fatal(err)
	}
	l := bl.Build("small", "")
	benchMatchSets(b, l, names, 1<<10, nil)
}

// BenchmarkLoadFloor measures the memory floor under a hit: the latency
// of one load from a random cache line of an array, as a chain of
// dependent loads so each op pays one full miss. "20MB_all" visits every
// line of an array the size of a 2M-entry matcher; "20MB_ws128k" cycles
// over 131072 of its lines, the working set BenchmarkMatch2M's 65536 hit
// queries touch when each probes two random lines; "2MB" is an array the
// size of a one-byte-per-entry prefilter.
func BenchmarkLoadFloor(b *testing.B) {
	for _, bc := range []struct {
		name      string
		size, use int // bytes; lines visited (0: all)
	}{{"20MB_all", 20 << 20, 0}, {"20MB_ws128k", 20 << 20, 1 << 17}, {"2MB", 2 << 20, 0}, {"512KB", 512 << 10, 0}} {
		b.Run(bc.name, func(b *testing.B) {
			arr, p := loadChain(bc.size, bc.use)
			for b.Loop() {
				p = arr[p]
			}
			runtime.KeepAlive(p)
		})
	}
}

// BenchmarkProbeFloor bounds what BenchmarkMatch2M/hit can reach with
// this table: the same hit queries, probed by a bare loop (prefilter
// word, then the keys from the home bucket on) with none of Match's other
// work.
// "hashes_given" has every suffix's hash computed beforehand, so only the
// memory accesses remain; "hashing" hashes the suffixes from the name as
// Match does. Out-of-order execution overlaps the DRAM loads of
// consecutive queries only as far as the work between them lets it, so
// the gap between the two (and between "hashing" and Match) is the
// compute that keeps the loads from overlapping.
func BenchmarkProbeFloor(b *testing.B) {
	l, names, _, _ := load2M(b)
	r := rand.New(rand.NewPCG(3, 4))
	const q = 1 << 16
	qs := make([]string, q)
	// Every query's suffix hashes, shortest first, back to back in one
	// array (query i's are hs[off[i]:off[i+1]]), read in order like qs.
	var hs []uint64
	off := make([]int, q+1)
	for i := range qs {
		qs[i] = "www." + names[r.IntN(len(names))]
		h := uint64(hashInit)
		labels := strings.Split(qs[i], ".")
		for j := len(labels) - 1; j >= 0; j-- {
			h = l.hash.label(h, labels[j])
			hs = append(hs, h)
		}
		off[i+1] = len(hs)
	}
	qs = backToBack(qs)
	// probe is the bare lookup of one suffix hash: true when it is listed.
	probe := func(h uint64) bool {
		if m := bloomMask(h); l.bloom[bloomWord(h, uint64(len(l.bloom)))]&m != m {
			return false
		}
		fp, slot := fingerprint(h), int(l.home(h))*slotsPerBucket
		for _, key := range l.keys[slot:min(slot+l.span, len(l.keys))] {
			if key == 0 {
				return false
			}
			if key>>lineBits == fp {
				return true
			}
		}
		return false
	}
	run := func(b *testing.B, hit func(i int) bool) {
		floor := loadLatency(20<<20, 1<<17, 1<<21)
		i := 0
		for b.Loop() {
			if !hit(i & (q - 1)) {
				b.Fatalf("%q not found", qs[i&(q-1)])
			}
			i++
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/floor, "dram-loads/op")
	}
	b.Run("hashes_given", func(b *testing.B) {
		run(b, func(i int) bool {
			for _, h := range hs[off[i]:off[i+1]] {
				if probe(h) {
					return true
				}
			}
			return false
		})
	})
	b.Run("hashing", func(b *testing.B) {
		run(b, func(i int) bool {
			s, h := qs[i], uint64(hashInit)
			for end := len(s); end >= 0; {
				k := lastDot(s, end) + 1
				h = l.hash.label(h, s[k:end])
				end = k - 1
				if probe(h) {
					return true
				}
			}
			return false
		})
	})
}
