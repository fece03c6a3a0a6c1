package main

import (
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNamesFiles: the first file wins an address named twice; a file that
// can no longer be read or parsed keeps its last good names; one never
// read names nobody; a file no longer configured is forgotten.
func TestNamesFiles(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.txt", "10.0.0.1 a-one\n10.0.0.2 a-two\n")
	b := writeFile(t, dir, "b.txt", "10.0.0.2 b-two\n10.0.0.3 b-three\nnot-an-ip x\n")
	missing := filepath.Join(dir, "missing.txt")
	n := newNamesFiles(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	check := func(step string, got map[netip.Addr]string, want map[string]string) {
		t.Helper()
		if len(got) != len(want) {
			t.Errorf("%s: %d names, want %d: %v", step, len(got), len(want), got)
		}
		for ip, name := range want {
			if got[netip.MustParseAddr(ip)] != name {
				t.Errorf("%s: %s named %q, want %q", step, ip, got[netip.MustParseAddr(ip)], name)
			}
		}
	}
	check("first load", n.load([]string{a, b, missing}),
		map[string]string{"10.0.0.1": "a-one", "10.0.0.2": "a-two", "10.0.0.3": "b-three"})
	if v := testutil.ToFloat64(n.invalid.WithLabelValues(b)); v != 1 {
		t.Errorf("invalid lines of b = %v, want 1", v)
	}
	if v := testutil.ToFloat64(n.errors.WithLabelValues(missing)); v != 1 {
		t.Errorf("errors of the missing file = %v, want 1", v)
	}

	// a is replaced by an unreadable copy (a directory), b by a file with
	// an overlong line: both keep their last good names.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(a, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, append(make([]byte, 5000), '\n'), 0o644); err != nil {
		t.Fatal(err)
	}
	check("broken files", n.load([]string{a, b, missing}),
		map[string]string{"10.0.0.1": "a-one", "10.0.0.2": "a-two", "10.0.0.3": "b-three"})

	// Fixed and changed: read again; the missing file appears.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "a.txt", "10.0.0.1 a-one-v2\n")
	writeFile(t, dir, "b.txt", "10.0.0.2 b-two\n")
	writeFile(t, dir, "missing.txt", "10.0.0.9 late\n")
	check("fixed", n.load([]string{a, b, missing}),
		map[string]string{"10.0.0.1": "a-one-v2", "10.0.0.2": "b-two", "10.0.0.9": "late"})
	if v := testutil.ToFloat64(n.entries.WithLabelValues(missing)); v != 1 {
		t.Errorf("names of the once-missing file = %v, want 1", v)
	}

	// A file caught mid-rewrite (empty) keeps its last good names.
	writeFile(t, dir, "missing.txt", "")
	check("emptied", n.load([]string{a, b, missing}),
		map[string]string{"10.0.0.1": "a-one-v2", "10.0.0.2": "b-two", "10.0.0.9": "late"})

	// b dropped from the config: forgotten, its series gone.
	check("b dropped", n.load([]string{a}), map[string]string{"10.0.0.1": "a-one-v2"})
	if _, ok := n.last[b]; ok {
		t.Error("a dropped file's names are still kept")
	}
	if c := testutil.CollectAndCount(n.entries); c != 1 {
		t.Errorf("%d entries series, want 1 (the dropped files' are deleted)", c)
	}

	// An unchanged file is not read again: same size and time, other
	// content, old names.
	st, err := os.Stat(a)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "a.txt", "10.0.0.1 a-one-v3\n")
	if err := os.Chtimes(a, time.Time{}, st.ModTime()); err != nil {
		t.Fatal(err)
	}
	check("unchanged", n.load([]string{a}), map[string]string{"10.0.0.1": "a-one-v2"})
}
