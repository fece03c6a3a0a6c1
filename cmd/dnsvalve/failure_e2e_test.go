package main

import (
	"context"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// TestE2EFailureCache runs the binary against an upstream port nobody
// listens on: the first query fails upstream (SERVFAIL with an EDE), the
// second one within cache.failure_ttl gets the same failure, with EDE 13
// Cached Error, without a new upstream attempt, counted and logged as a
// cache "failure".
func TestE2EFailureCache(t *testing.T) {
	needTool(t, "dig")
	bin := buildBinary(t)
	dead := freePort(t) // nobody listens: ICMP port unreachable, a fast failure
	file, dnsAddr, httpAddr, logFile, _ := e2eConfig(t, dead)
	p := startDNSValve(t, bin, "serve", "--config", file)
	for i := range 2 {
		out := dig(t, dnsAddr, "fails.example", "A")
		// The second answer also says the failure is a cached one.
		if !strings.Contains(out, "status: SERVFAIL") || !strings.Contains(out, "EDE: 23") ||
			strings.Contains(out, "EDE: 13 (Cached Error)") != (i == 1) {
			t.Errorf("query %d:\n%s", i+1, out)
		}
	}
	if got := metricValue(t, httpAddr, "dnsvalve_cache_failure_hits_total"); got != 1 {
		t.Errorf("dnsvalve_cache_failure_hits_total = %v, want 1", got)
	}
	if got := metricValue(t, httpAddr, `dnsvalve_upstream_errors_total{kind="network",upstream="udp://`+dead+`"}`); got != 1 {
		t.Errorf("upstream network errors = %v, want 1 (the second query not sent)", got)
	}
	p.stop(t)
	var caches []string
	for _, r := range readLog(t, logFile) {
		if r["query_name"] == "fails.example." {
			dv, _ := r["dnsvalve"].(map[string]any)
			c, _ := dv["cache"].(string)
			caches = append(caches, c)
		}
	}
	if strings.Join(caches, ",") != "miss,failure" {
		t.Errorf("query log cache fields %q, want miss then failure", caches)
	}
}

// TestUpstreamUpForgetsFailures: when an upstream is marked up again, the
// failures the cache remembers from the outage are forgotten at once.
func TestUpstreamUpForgetsFailures(t *testing.T) {
	dead := freePort(t)
	dir := t.TempDir()
	file := writeFile(t, dir, "dnsvalve.yaml", "upstream:\n  servers: [\"udp://"+dead+"\"]\nstate_dir: "+dir+"\nquerylog:\n  sinks: []\n")
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, cfg)
	m := new(dns.Msg)
	m.SetQuestion("fails.example.", dns.TypeA)
	status := func() query.CacheStatus {
		_, st, _, _ := a.cache.Resolve(context.Background(), m)
		return st
	}
	if st := status(); st != query.CacheMiss {
		t.Fatalf("first query: %s, want a miss", st)
	}
	if st := status(); st != query.CacheFailure {
		t.Fatalf("second query: %s, want the remembered failure", st)
	}
	a.upstreamUp()
	if st := status(); st != query.CacheMiss {
		t.Errorf("after an upstream came back: %s, want a miss asking again", st)
	}
}
