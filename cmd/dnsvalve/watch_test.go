package main

import "testing"

func TestChangeOf(t *testing.T) {
	cfg := &Config{File: "/etc/dnsvalve/dnsvalve.yaml", Lists: []ListConfig{
		{Name: "malware", Sources: []string{"/etc/dnsvalve/lists/malware.txt", "https://feed.example/ioc.txt"}},
		{Name: "corp", Sources: []string{"/srv/allow/../allow/corp.txt"}},
	}}
	files := watchedFiles(cfg)
	if len(files) != 3 {
		t.Errorf("watched files %v, want the config and two local sources (no URL)", files)
	}
	for _, tc := range []struct{ path, want string }{
		{"/etc/dnsvalve/dnsvalve.yaml", "file change"},
		{"/etc/dnsvalve/lists/malware.txt", "list file change: malware"},
		{"/etc/dnsvalve/lists/./malware.txt", "list file change: malware"},
		{"/srv/allow/corp.txt", "list file change: corp"},
		{"/etc/dnsvalve/lists/..data", "list file change: malware"}, // ConfigMap swap
		{"/etc/dnsvalve/lists/..2026_11_27_19_30_00.123", "list file change: malware"},
		{"/etc/dnsvalve/..data", "file change"},
		{"/etc/dnsvalve/lists/malware.txt.swp", ""},
		{"/etc/dnsvalve/lists/other.txt", ""},
		{"/tmp/..data", ""},
	} {
		if got := changeOf(files, tc.path); got != tc.want {
			t.Errorf("changeOf(%q) = %q, want %q", tc.path, got, tc.want)
		}
	}
}
