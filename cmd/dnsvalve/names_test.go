package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestNamesFiles: the first file wins an address named twice; a file that
// can no longer be read or parsed keeps its last good names; one never
// read names nobody; a file no longer configured is forgotten once a
// config without it is in force, and one never read too.
func TestNamesFiles(t *testing.T) {
	dir := t.TempDir()
	a := writeFile(t, dir, "a.txt", "10.0.0.1 a-one\n10.0.0.2 a-two\n")
	b := writeFile(t, dir, "b.txt", "10.0.0.2 b-two\n10.0.0.3 b-three\nnot-an-ip x\n")
	missing := filepath.Join(dir, "missing.txt")
	n := newNamesFiles(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	load := func(paths []string) map[netip.Addr]string { // as a successful reload does
		names := n.load(paths)
		n.commit(paths)
		return names
	}
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
	check("first load", load([]string{a, b, missing}),
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
	check("broken files", load([]string{a, b, missing}),
		map[string]string{"10.0.0.1": "a-one", "10.0.0.2": "a-two", "10.0.0.3": "b-three"})

	// Fixed and changed: read again; the missing file appears.
	if err := os.Remove(a); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "a.txt", "10.0.0.1 a-one-v2\n")
	writeFile(t, dir, "b.txt", "10.0.0.2 b-two\n")
	writeFile(t, dir, "missing.txt", "10.0.0.9 late\n")
	check("fixed", load([]string{a, b, missing}),
		map[string]string{"10.0.0.1": "a-one-v2", "10.0.0.2": "b-two", "10.0.0.9": "late"})
	if v := testutil.ToFloat64(n.entries.WithLabelValues(missing)); v != 1 {
		t.Errorf("names of the once-missing file = %v, want 1", v)
	}
	if c := testutil.CollectAndCount(n.errors); c != 3 {
		t.Errorf("%d error series, want 3: every file in force has one, at 0 until it fails", c)
	}

	// A file caught mid-rewrite (empty) keeps its last good names.
	writeFile(t, dir, "missing.txt", "")
	check("emptied", load([]string{a, b, missing}),
		map[string]string{"10.0.0.1": "a-one-v2", "10.0.0.2": "b-two", "10.0.0.9": "late"})

	// b dropped from the config: forgotten, its series gone.
	check("b dropped", load([]string{a}), map[string]string{"10.0.0.1": "a-one-v2"})
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
	check("unchanged", load([]string{a}), map[string]string{"10.0.0.1": "a-one-v2"})
}

// TestNamesFileNeverReadDropped: a names file that never could be read
// and is then removed from clients.names_files leaves no series behind.
func TestNamesFileNeverReadDropped(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "typo.txt")
	n := newNamesFiles(prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	n.load([]string{missing})
	n.commit([]string{missing})
	if c := testutil.CollectAndCount(n.errors); c != 1 {
		t.Errorf("%d error series for the unreadable file, want 1", c)
	}
	n.load(nil)
	n.commit(nil)
	for name, c := range map[string]int{"entries": testutil.CollectAndCount(n.entries), "invalid": testutil.CollectAndCount(n.invalid), "errors": testutil.CollectAndCount(n.errors)} {
		if c != 0 {
			t.Errorf("%d %s series after the file left the config, want 0", c, name)
		}
	}
}

// TestFailedReloadKeepsNamesFileState: a reload that drops a names file
// from the config but then fails (the policy names an unknown list)
// leaves the running config, which still reads the file: its last good
// read and its series stay (from a reviewer).
func TestFailedReloadKeepsNamesFileState(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.txt", "a-listed.example\n")
	names := writeFile(t, dir, "workloads.txt", "10.0.0.5 payments-db\n")
	write := func(namesFiles, block string) string {
		return writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf("upstream:\n  servers: [\"udp://127.0.0.1:1\"]\nstate_dir: %s\nquerylog:\n  sinks: []\nclients:\n  names_files: [%s]\nlists:\n  - name: a\n    sources: [a.txt]\npolicies:\n  default:\n    block: [%s]\n", dir, namesFiles, block))
	}
	file := write("workloads.txt", "a")
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, cfg)
	workload := func() string {
		_, _, name := a.store.Load().Identify(mustAddr(t, "10.0.0.5"))
		return name
	}
	if got := workload(); got != "payments-db" {
		t.Fatalf("workload = %q, want payments-db", got)
	}

	// An edit drops the names file and breaks the policy: rejected.
	write("", "a, malwar")
	if err := a.reloadConfig(context.Background(), "test"); err == nil || !strings.Contains(err.Error(), "malwar") {
		t.Fatalf("reload = %v, want the unknown list named", err)
	}
	if got := workload(); got != "payments-db" {
		t.Fatalf("after the failed reload, workload = %q", got)
	}
	if v := testutil.ToFloat64(a.names.entries.WithLabelValues(names)); v != 1 {
		t.Errorf("dnsvalve_clients_names{file=workloads.txt} = %v after the failed reload, want 1 (its names are in force)", v)
	}

	// The edit is undone while the inventory job's file is briefly gone
	// (or caught empty mid-rewrite): the last good read must stay.
	write("workloads.txt", "a")
	if err := os.Remove(names); err != nil {
		t.Fatal(err)
	}
	if err := a.reloadConfig(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if got := workload(); got != "payments-db" {
		t.Errorf("workload = %q, want payments-db: the failed reload forgot the file's last good read", got)
	}
}
