package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
)

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// TestMetricsDocumentedAndLinted: every metric dnsvalve registers is named
// in the README, and the whole registry passes promlint.
func TestMetricsDocumentedAndLinted(t *testing.T) {
	cfg, err := loadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Upstream.Servers = []string{"udp://127.0.0.1:1"}
	cfg.StateDir = t.TempDir()
	a := newTestApp(t, cfg)

	readme, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range a.metReg.descs() {
		m := fqNameRE.FindStringSubmatch(d.String())
		if m == nil {
			t.Fatalf("cannot read name from %s", d)
		}
		names = append(names, m[1])
	}
	sort.Strings(names)
	if len(names) < 30 {
		t.Fatalf("only %d metrics registered: %v", len(names), names)
	}
	for _, n := range names {
		if !strings.HasPrefix(n, "dnsvalve_") {
			t.Errorf("metric %s lacks the dnsvalve_ prefix", n)
			continue
		}
		if !mentioned(string(readme), n) {
			t.Errorf("metric %s is not documented in README.md", n)
		}
	}

	mfs, err := a.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// mentioned reports whether the README names metric n, either in full or
// in the "dnsvalve_cache_hits_total, `_misses_total`" shorthand.
func mentioned(readme, n string) bool {
	if strings.Contains(readme, "`"+n+"`") {
		return true
	}
	for i := strings.Index(n, "_"); i > 0; {
		j := strings.Index(n[i+1:], "_")
		if j < 0 {
			break
		}
		i += j + 1
		if strings.Contains(readme, "`"+n[:i]) && strings.Contains(readme, "`"+n[i:]+"`") {
			return true
		}
	}
	return false
}
