package lists

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestReloadKeepsURLRefreshTimer: a config reload that leaves a URL list
// unchanged must not push its refresh timer back. clients.names_files
// (and local list files) trigger a full reload on every rewrite; with an
// inventory job rewriting its file more often than lists[].refresh, URL
// feeds would otherwise never refresh on their timer.
func TestReloadKeepsURLRefreshTimer(t *testing.T) {
	srv := newListServer(t)
	clock := &fakeClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	m := NewManager(t.TempDir(), srv.Client(), NewMetrics(prometheus.NewRegistry()), quietLogger(), clock.now)
	cfg := []Config{{Name: "ads", Sources: []string{srv.URL + "/ads.txt"}, Refresh: time.Hour, MaxBytes: 1000}}
	if _, err := m.Load(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	// A names file rewritten every 50 minutes: each rewrite reloads.
	for range 3 {
		clock.step(50 * time.Minute)
		if _, err := m.Load(context.Background(), cfg); err != nil {
			t.Fatal(err)
		}
	}
	// 2h30 after the first load, the 1h timer is long overdue.
	m.refreshDue(context.Background())
	srv.mu.Lock()
	n := len(srv.requests)
	srv.mu.Unlock()
	if n < 2 {
		t.Errorf("%d requests 2h30 after the first load with refresh 1h: the reloads kept postponing the refresh", n)
	}
}
