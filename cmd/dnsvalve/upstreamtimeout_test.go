package main

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestCacheFollowsUpstreamTimeout: the cache bounds its upstream exchanges
// by upstream.timeout from the start, and a reload that changes it moves
// the bound (the upstream group keeps the cache's context only when the
// two agree).
func TestCacheFollowsUpstreamTimeout(t *testing.T) {
	up := startFakeUpstream(t)
	dir := t.TempDir()
	write := func(timeout string) string {
		return writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf("upstream:\n  servers: [\"udp://%s\"]\n  timeout: %s\nstate_dir: %s\nquerylog:\n  sinks: []\n",
			up.addr, timeout, dir))
	}
	cfg, err := loadConfig(write("3s"), nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, cfg)
	if got := a.cache.UpstreamTimeout(); got != 3*time.Second {
		t.Fatalf("at start: the cache's exchange bound is %v, want upstream.timeout 3s", got)
	}
	write("7s")
	if err := a.reloadConfig(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	if got := a.cache.UpstreamTimeout(); got != 7*time.Second {
		t.Errorf("after the reload: the cache's exchange bound is %v, want 7s", got)
	}
}
