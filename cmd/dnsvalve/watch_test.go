package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestChangeOf(t *testing.T) {
	cfg := &Config{File: "/etc/dnsvalve/dnsvalve.yaml", Lists: []ListConfig{
		{Name: "malware", Sources: []string{"/etc/dnsvalve/lists/malware.txt", "https://feed.example/ioc.txt"}},
		{Name: "corp", Sources: []string{"/srv/allow/../allow/corp.txt"}},
		{Name: "adware", Sources: []string{"/etc/dnsvalve/lists/adware.txt"}},
		{Name: "local", Sources: []string{"/etc/dnsvalve/local.txt"}},
	}}
	files := watchedFiles(cfg)
	if len(files) != 5 {
		t.Errorf("watched files %v, want the config and four local sources (no URL)", files)
	}
	for _, tc := range []struct{ path, want string }{
		{"/etc/dnsvalve/dnsvalve.yaml", "file change"},
		{"/etc/dnsvalve/lists/malware.txt", "list file change: malware"},
		{"/etc/dnsvalve/lists/./malware.txt", "list file change: malware"},
		{"/srv/allow/corp.txt", "list file change: corp"},
		// A ConfigMap swap: the config's trigger when it is in the
		// directory, else the first list's in order.
		{"/etc/dnsvalve/lists/..data", "list file change: adware"},
		{"/etc/dnsvalve/lists/..2026_11_27_19_30_00.123", "list file change: adware"},
		{"/etc/dnsvalve/..data", "file change"},
		{"/etc/dnsvalve/local.txt", "list file change: local"},
		{"/etc/dnsvalve/lists/malware.txt.swp", ""},
		{"/etc/dnsvalve/lists/other.txt", ""},
		{"/tmp/..data", ""},
	} {
		if got := changeOf(files, tc.path); got != tc.want {
			t.Errorf("changeOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}

// TestWatchedFilesSymlink: a list file that is a symlink is watched at its
// target too, so an edit of the target in another directory counts.
func TestWatchedFilesSymlink(t *testing.T) {
	dir, elsewhere := t.TempDir(), t.TempDir()
	target := filepath.Join(elsewhere, "real.txt")
	if err := os.WriteFile(target, []byte("x.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "list.txt")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	files := watchedFiles(&Config{Lists: []ListConfig{{Name: "l", Sources: []string{link}}}})
	real, err := filepath.EvalSymlinks(target)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{link, real} {
		if files[f] != "list file change: l" {
			t.Errorf("%s: %q, want it watched (%v)", f, files[f], files)
		}
	}
}

// TestCatchUp: a file changed after the first load began but before the
// watch started (no event for it) queues a reload; an older one does not.
func TestCatchUp(t *testing.T) {
	dir := t.TempDir()
	list := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(list, []byte("x.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(list)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		since time.Time
		want  string
	}{
		{"changed_after_load", fi.ModTime(), "list file change: l"},
		{"older", fi.ModTime().Add(time.Second), ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := &app{reload: make(chan string, 1)}
			fw := &fileWatch{a: a, files: map[string]string{list: "list file change: l"}}
			fw.catchUp(tc.since)
			got := ""
			select {
			case got = <-a.reload:
			default:
			}
			if got != tc.want {
				t.Errorf("reload queued %q, want %q", got, tc.want)
			}
		})
	}
}
