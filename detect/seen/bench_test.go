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
