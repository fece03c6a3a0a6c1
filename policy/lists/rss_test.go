package lists

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procMem is the process's memory as the OS and the runtime see it.
type procMem struct {
	rss, hwm uint64 // VmRSS, VmHWM (bytes)
	mapped   uint64 // runtime/metrics total minus released (bytes)
}

func readProcMem(tb testing.TB) procMem {
	tb.Helper()
	var m procMem
	raw, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseUint(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.rss = kb << 10
		case "VmHWM:":
			m.hwm = kb << 10
		}
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	m.mapped = s[0].Value.Uint64() - s[1].Value.Uint64()
	return m
}

// resetPeak resets VmHWM to the current RSS (Linux clear_refs 5), so a
// later VmHWM is the peak since this call; it reports whether that worked.
func resetPeak() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// settle collects garbage and returns every free page to the OS, so two
// readings compare live memory plus the runtime's fixed overhead.
func settle() {
	runtime.GC()
	debug.FreeOSMemory()
}

// writeSynthFile writes n synthetic names to path, one per line, without
// holding them in memory, and returns the last one.
func writeSynthFile(tb testing.TB, path string, n int, extra string) string {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	last := ""
	const chunk = 100_000
	for i := 0; i < n; i += chunk {
		names := synthNamesFrom(i, min(chunk, n-i))
		for _, s := range names {
			w.WriteString(s)
			w.WriteByte('\n')
		}
		last = names[len(names)-1]
	}
	w.WriteString(extra)
	if err := w.Flush(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return last
}

func mib(b uint64, base uint64) string {
	return fmt.Sprintf("%+.1f MiB", (float64(b)-float64(base))/(1<<20))
}

// TestManagerLoad2MProcessMemory loads a 2M-name file through
// Manager.Load (cache dir on disk, as the server does) and reports load
// time and process-level memory: VmRSS and the runtime's mapped-minus-
// released bytes right after Load, after a GC + FreeOSMemory, and the
// peak (VmHWM); then the same around a refresh of the changed file through
// Run. Skipped with -short.
func TestManagerLoad2MProcessMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("2M-name process memory test skipped in -short mode")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "list.txt")
	last := writeSynthFile(t, path, 2_000_000, "")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewManager(filepath.Join(dir, "cache"), nil, nil, quietLogger(), clock.now)
	cfg := []Config{{Name: "big", Sources: []string{path}, Format: "domains", Refresh: time.Minute, MaxBytes: 256 << 20}}

	settle()
	base := readProcMem(t)
	peakOK := resetPeak()
	start := time.Now()
	lists, err := m.Load(context.Background(), cfg)
	elapsed := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	loaded := readProcMem(t)
	if mt, ok := lists["big"].Match(last); !ok || mt.Line != 2_000_000 {
		t.Fatalf("Match(%q) = %+v, %v; want line 2000000", last, mt, ok)
	}
	if n := lists["big"].Len(); n != 2_000_000 {
		t.Fatalf("Len = %d, want 2000000", n)
	}
	settle()
	settled := readProcMem(t)
	t.Logf("file %.1f MiB; Load %v", float64(fi.Size())/(1<<20), elapsed)
	t.Logf("after Load:        VmRSS %s, mapped-released %s", mib(loaded.rss, base.rss), mib(loaded.mapped, base.mapped))
	t.Logf("after GC+FreeOS:   VmRSS %s, mapped-released %s", mib(settled.rss, base.rss), mib(settled.mapped, base.mapped))
	if peakOK {
		t.Logf("peak during Load:  VmHWM %s", mib(loaded.hwm, base.rss))
	}

	// Refresh: one more name appended; Run rebuilds and calls onChange.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("refreshed-probe.list.test\n")
	f.Close()
	os.Chtimes(path, clock.now().Add(time.Second), clock.now().Add(time.Second))
	clock.step(time.Minute)
	settle()
	steady := readProcMem(t)
	peakOK = resetPeak()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan struct{})
	go func() {
		m.Run(ctx, func(l map[string]*List) {
			lists = l // the caller swaps its snapshot: the old list is garbage
			cancel()  // Run returns after this refresh is finished
		})
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("refresh never reported the changed list")
	}
	after := readProcMem(t)
	if _, ok := lists["big"].Match("refreshed-probe.list.test"); !ok {
		t.Fatal("refreshed list misses the new name")
	}
	t.Logf("refresh: steady VmRSS %.1f MiB (process), after refresh %s, mapped-released %s",
		float64(steady.rss)/(1<<20), mib(after.rss, steady.rss), mib(after.mapped, steady.mapped))
	if peakOK {
		t.Logf("refresh: peak VmHWM %s (%.2fx steady)", mib(after.hwm, steady.rss), float64(after.hwm)/float64(steady.rss))
	}
}
