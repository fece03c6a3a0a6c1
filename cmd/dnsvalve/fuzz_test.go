package main

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoadConfig: no config file, however broken, crashes the loader; it
// either loads or returns an error.
func FuzzLoadConfig(f *testing.F) {
	for _, p := range []string{"../../testdata/dnsvalve.yaml", "../../deploy/docker/dnsvalve.yaml", "default.yaml"} {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("server: [\n"))
	f.Add([]byte("cache:\n  size: -1\n  min_ttl: 1x\n"))
	f.Add([]byte("lists:\n  - {name: a, sources: []}\n  - 7\n"))
	f.Add([]byte("policies:\n  default: 3\nclients:\n  names:\n    ::1: x\n    bad: y\n"))
	f.Add([]byte("&a [*a, *a]"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		file := filepath.Join(dir, "fuzz.yaml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		cfg, err := loadConfig(file, nil)
		if err == nil && cfg == nil {
			t.Fatal("nil config without an error")
		}
	})
}
