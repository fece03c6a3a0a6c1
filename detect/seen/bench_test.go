package seen

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkFileFull measures what a full file: store at the default bound
// (1,000,000 domains) costs: opening it (counting its keys: open-ms) and
// its flushes under a flood of 1,000 new domains a second (ns/op: one
// second's FirstSeen calls and their flush). Past the bound, one flush in
// about sixteen evicts (bound/64 domains, two scans of the file in one
// transaction): evict-ms is the slowest flush. file-MiB is the file's size
// at the end.
func BenchmarkFileFull(b *testing.B) {
	const bound, perFlush = 1_000_000, 1_000
	c := &clock{t: t0}
	path := filepath.Join(b.TempDir(), "seen.db")
	s, err := openBolt(path, 30*24*time.Hour, c.now, FileOptions{MaxDomains: bound}, false)
	if err != nil {
		b.Fatal(err)
	}
	for i := range bound {
		firstSeen(b, s, fmt.Sprintf("d%d.example", i), t0)
		if i%100_000 == 99_999 {
			if err := s.flush(); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	s, err = openBolt(path, 30*24*time.Hour, c.now, FileOptions{MaxDomains: bound}, false)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	opened := time.Since(start)
	n := 0
	var slowest time.Duration
	b.ResetTimer()
	for b.Loop() {
		for range perFlush {
			firstSeen(b, s, fmt.Sprintf("flood%d.example", n), t0.Add(time.Second))
			n++
		}
		start := time.Now()
		if err := s.flush(); err != nil {
			b.Fatal(err)
		}
		slowest = max(slowest, time.Since(start))
		if s.count > bound {
			b.Fatalf("%d domains after a flush, bound %d", s.count, bound)
		}
	}
	b.ReportMetric(float64(opened.Milliseconds()), "open-ms")
	if fi, err := os.Stat(path); err == nil {
		b.ReportMetric(float64(fi.Size())/(1<<20), "file-MiB")
	}
	b.ReportMetric(float64(slowest.Milliseconds()), "evict-ms")
}

// BenchmarkMemorySweepStall measures what a sweep of 1,000,000 expired
// domains costs the queries that arrive meanwhile: each op is one sweep,
// with FirstSeen called back to back until it ends. max-stall-us is the
// slowest of those calls (a query's worst wait for the store's lock),
// sweep-ms the sweep's duration, calls the FirstSeen calls made during it.
func BenchmarkMemorySweepStall(b *testing.B) {
	const n = 1_000_000
	var maxStall, sweepTime time.Duration
	calls := 0
	for b.Loop() {
		b.StopTimer()
		c := &clock{t: t0}
		s := OpenMemory(time.Hour, 0, nil, nil, c.now)
		m := s.(*memory)
		for i := range n {
			firstSeen(b, s, fmt.Sprintf("d%d.example", i), t0)
		}
		later := t0.Add(2 * time.Hour)
		b.StartTimer()
		start := time.Now()
		firstSeen(b, s, "trigger.example", later) // starts the sweep
		for i := 0; ; i++ {
			m.mu.Lock()
			sweep := m.set.sweeps.running()
			m.mu.Unlock()
			if sweep == nil {
				break
			}
			t := time.Now()
			firstSeen(b, s, fmt.Sprintf("q%d.example", i%1000), later)
			maxStall = max(maxStall, time.Since(t))
			calls++
		}
		sweepTime += time.Since(start)
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(maxStall.Microseconds()), "max-stall-us")
	b.ReportMetric(float64(sweepTime.Milliseconds())/float64(b.N), "sweep-ms")
	b.ReportMetric(float64(calls)/float64(b.N), "calls")
}
