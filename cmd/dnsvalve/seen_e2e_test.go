package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	bolt "go.etcd.io/bbolt"
)

// TestE2ESeenFileBound runs the binary with a file: first-seen store bound
// by detect.newly_seen.max_domains and asks for more registered domains
// than it holds: the store evicts (counted, warned once) and the file on
// disk keeps at most the bound once the binary has stopped.
func TestE2ESeenFileBound(t *testing.T) {
	const bound, asked = 64, 200
	bin := buildBinary(t)
	up := startFakeUpstream(t)
	file, dnsAddr, httpAddr, _, _ := e2eConfig(t, up.addr)
	dir := filepath.Dir(file)
	seenDB := filepath.Join(dir, "seen.db")
	cfg, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cfg = append(cfg, fmt.Sprintf(`detect:
  newly_seen:
    store: "file:%s"
    max_domains: %d
`, seenDB, bound)...)
	if err := os.WriteFile(file, cfg, 0o600); err != nil {
		t.Fatal(err)
	}
	p := startDNSValve(t, bin, "serve", "--config", file)

	c := &dns.Client{Timeout: 3 * time.Second}
	for i := range asked {
		m := new(dns.Msg)
		m.SetQuestion(fmt.Sprintf("www.flood%d.com.", i), dns.TypeA)
		r, _, err := c.Exchange(m, dnsAddr)
		if err != nil || r.Rcode != dns.RcodeSuccess {
			t.Fatalf("query %d: %v %v", i, r, err)
		}
	}
	// Each write (every second) evicts down to 1/64 under the bound.
	deadline := time.Now().Add(15 * time.Second)
	for metricValue(t, httpAddr, "dnsvalve_detect_seen_store_evictions_total") < asked-bound {
		if time.Now().After(deadline) {
			t.Fatalf("evictions = %v, want at least %d\n%s", metricValue(t, httpAddr, "dnsvalve_detect_seen_store_evictions_total"), asked-bound, p.log())
		}
		time.Sleep(50 * time.Millisecond) // polling a metric of another process
	}
	p.waitLog(t, "newly-seen file store full")
	p.stop(t)
	if n := strings.Count(p.log(), "newly-seen file store full"); n != 1 {
		t.Errorf("full warning logged %d times, want once", n)
	}

	db, err := bolt.Open(seenDB, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var n int
	_ = db.View(func(tx *bolt.Tx) error { n = tx.Bucket([]byte("seen")).Stats().KeyN; return nil })
	if n > bound || n < bound-bound/64 {
		t.Errorf("%d domains in %s after the flood, want %d..%d", n, seenDB, bound-bound/64, bound)
	}
}
