package main

import (
	"encoding/base32"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/internal/redistest"
)

// fleetNode is one dnsvalve of the fleet.
type fleetNode struct {
	name                      string
	file, dns, http, queryLog string
	p                         *proc
	owner                     *testing.T // the test that owns the process (cleanup kills it)
}

const fleetSync = 100 * time.Millisecond

func newFleetNode(t *testing.T, bin, name, upstream, redisURL string) *fleetNode {
	t.Helper()
	dir := t.TempDir()
	n := &fleetNode{owner: t, name: name, dns: freePort(t), http: freePort(t), queryLog: filepath.Join(dir, "query.log")}
	n.file = writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf(`
server:
  listen: ["%s"]
http:
  listen: "%s"
upstream:
  servers: ["udp://%s"]
  timeout: 1s
state_dir: %s
detect:
  window: 60s
  shared: "%s"
  shared_sync: %s
  newly_seen:
    store: "%s"
    learn: -1s
querylog:
  sinks: ["file:%s"]
`, n.dns, n.http, upstream, dir, redisURL, fleetSync, redisURL, n.queryLog))
	n.start(t, bin)
	return n
}

func (n *fleetNode) start(t *testing.T, bin string) {
	t.Helper()
	n.p = startDNSValve(t, bin, "serve", "--config", n.file)
}

// restart stops the node with SIGTERM (a clean shutdown flushes its
// first-seen records) and starts it again on the same config.
func (n *fleetNode) restart(t *testing.T, bin string) {
	t.Helper()
	n.p.stop(t)
	n.start(n.owner, bin)
}

// ask sends one A query over UDP and returns the rcode (error: no answer).
func ask(addr, name string) (int, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	c := &dns.Client{Timeout: 2 * time.Second}
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return 0, err
	}
	return r.Rcode, nil
}

func mustAsk(t testing.TB, addr, name string) {
	t.Helper()
	if _, err := ask(addr, name); err != nil {
		t.Fatalf("query %s at %s: %v", name, addr, err)
	}
}

// logRecord waits for the query log record of qname (the last one) and
// returns its dnsvalve object.
func logRecord(t testing.TB, file, qname string) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var found map[string]any
		for _, r := range readLogLenient(t, file) {
			if r["query_name"] == dns.Fqdn(qname) {
				found, _ = r["dnsvalve"].(map[string]any)
			}
		}
		if found != nil {
			return found
		}
		if time.Now().After(deadline) {
			t.Fatalf("no query-log record of %s in %s", qname, file)
		}
		time.Sleep(50 * time.Millisecond) // the query log is written asynchronously
	}
}

// readLogLenient is readLog that tolerates a missing file and a partly
// written last line (the writer is asynchronous).
func readLogLenient(t testing.TB, file string) []map[string]any {
	t.Helper()
	if _, err := exec.Command("test", "-s", file).Output(); err != nil {
		return nil
	}
	return readLog(t, file)
}

// metricValue scrapes one sample ("name{labels}") from /metrics.
func metricValue(t testing.TB, httpAddr, sample string) float64 {
	t.Helper()
	for _, l := range strings.Split(httpGet(t, "http://"+httpAddr+"/metrics"), "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return -1
}

// waitMetric waits until sample equals want.
func waitMetric(t testing.TB, httpAddr, sample string, want float64) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for metricValue(t, httpAddr, sample) != want {
		if time.Now().After(deadline) {
			t.Fatalf("%s at %s never became %v", sample, httpAddr, want)
		}
		time.Sleep(50 * time.Millisecond) // polling a metric of another process
	}
}

// waitSeenInRedis waits until a first-seen record of domain reached Redis.
func waitSeenInRedis(t testing.TB, r *redistest.Server, domain string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if s, err := r.Do("ZSCORE", "dnsvalve:seen", domain); err == nil && s != "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never reached Redis", domain)
		}
		time.Sleep(20 * time.Millisecond) // polling another process's state
	}
}

// tunnelSession sends n encoded queries under domain, paced, to the nodes
// in turn, and returns the 0-based index of the first one whose log record
// has dnsvalve.alert (-1: none).
func tunnelSession(t *testing.T, nodes []*fleetNode, domain string, n int, pace time.Duration) int {
	t.Helper()
	rng := rand.New(rand.NewPCG(7, uint64(len(domain))))
	names := make([]string, n)
	for i := range n {
		var b [30]byte
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		names[i] = strings.ToLower(strings.TrimRight(base32.StdEncoding.EncodeToString(b[:]), "=")) + "." + domain
		mustAsk(t, nodes[i%len(nodes)].dns, names[i])
		time.Sleep(pace) // pacing the traffic generator
	}
	for i, name := range names {
		rec := logRecord(t, nodes[i%len(nodes)].queryLog, name)
		if a, _ := rec["alert"].(bool); a {
			return i
		}
	}
	return -1
}

func TestE2EFleet(t *testing.T) {
	needTool(t, "redis-server")
	bin := buildBinary(t)
	up := startFakeUpstream(t)
	r := redistest.Start(t)
	url := r.URL()
	a := newFleetNode(t, bin, "A", up.addr, url)
	b := newFleetNode(t, bin, "B", up.addr, url)
	waitMetric(t, a.http, `dnsvalve_detect_shared_up{component="counters"}`, 1)
	waitMetric(t, b.http, `dnsvalve_detect_shared_up{component="counters"}`, 1)
	t.Cleanup(func() {
		if t.Failed() {
			for _, n := range []*fleetNode{a, b} {
				l := n.p.log()
				t.Logf("%s log (tail):\n%s", n.name, l[max(0, len(l)-3000):])
			}
		}
	})

	t.Run("first_seen_on_a_not_new_on_b", func(t *testing.T) {
		mustAsk(t, a.dns, "www.fleet-first.example")
		if rec := logRecord(t, a.queryLog, "www.fleet-first.example"); rec["newly_seen"] != true {
			t.Fatalf("A: first query not newly_seen: %v", rec)
		}
		waitSeenInRedis(t, r, "fleet-first.example")
		time.Sleep(3 * fleetSync) // B pulls within one round of the record reaching Redis
		mustAsk(t, b.dns, "api.fleet-first.example")
		if rec := logRecord(t, b.queryLog, "api.fleet-first.example"); rec["newly_seen"] != false {
			t.Errorf("B: a domain first seen on A is newly_seen on B: %v", rec)
		}
		mustAsk(t, b.dns, "www.only-on-b.example")
		if rec := logRecord(t, b.queryLog, "www.only-on-b.example"); rec["newly_seen"] != true {
			t.Errorf("B: a domain nobody saw is not newly_seen: %v", rec)
		}
	})

	t.Run("split_tunnel_alerts_like_one_resolver", func(t *testing.T) {
		pace := 3 * fleetSync / 2
		one := tunnelSession(t, []*fleetNode{a}, "t.tunnel-one.example", 40, pace)
		two := tunnelSession(t, []*fleetNode{a, b}, "t.tunnel-two.example", 40, pace)
		t.Logf("first alert: query %d on one resolver, %d alternating over two", one, two)
		if one < 0 || two < 0 {
			t.Fatalf("no alert: one resolver %d, two %d", one, two)
		}
		if d := two - one; float64(d) > 0.1*float64(one)+1 || float64(-d) > 0.1*float64(one)+1 {
			t.Errorf("two resolvers alert at query %d, one at %d: more than 10%% apart", two, one)
		}
	})

	t.Run("restart_keeps_first_seen", func(t *testing.T) {
		mustAsk(t, a.dns, "www.before-restart.example")
		if rec := logRecord(t, a.queryLog, "www.before-restart.example"); rec["newly_seen"] != true {
			t.Fatalf("first query not newly_seen: %v", rec)
		}
		a.restart(t, bin)
		mustAsk(t, a.dns, "api.before-restart.example")
		if rec := logRecord(t, a.queryLog, "api.before-restart.example"); rec["newly_seen"] != false {
			t.Errorf("after a restart a domain seen before is newly_seen again: %v", rec)
		}
	})

	t.Run("redis_outage_loses_no_answer", func(t *testing.T) {
		const n = 600
		var wg sync.WaitGroup
		var mu sync.Mutex
		var failures []string
		killAt, backAt := make(chan struct{}), make(chan struct{})
		wg.Go(func() {
			for i := range n {
				switch i {
				case n / 3:
					close(killAt)
				case 2 * n / 3:
					close(backAt)
				}
				node := []*fleetNode{a, b}[i%2]
				if _, err := ask(node.dns, fmt.Sprintf("q%d.outage-%d.example", i, i%7)); err != nil {
					mu.Lock()
					failures = append(failures, fmt.Sprintf("query %d at %s: %v", i, node.name, err))
					mu.Unlock()
				}
				time.Sleep(5 * time.Millisecond) // pacing the traffic generator
			}
		})
		<-killAt
		r.Stop()
		waitMetric(t, a.http, `dnsvalve_detect_shared_up{component="counters"}`, 0)
		if body := httpGet(t, "http://"+a.http+"/readyz"); !strings.Contains(body, `"shared_state"`) || !strings.Contains(body, `"ready": true`) {
			t.Errorf("/readyz during the outage:\n%s", body)
		}
		<-backAt
		r.Restart()
		wg.Wait()
		for _, f := range failures {
			t.Error(f)
		}
		for _, n := range []*fleetNode{a, b} {
			for _, c := range []string{"counters", "seen"} {
				waitMetric(t, n.http, `dnsvalve_detect_shared_up{component="`+c+`"}`, 1)
			}
			if e := metricValue(t, n.http, `dnsvalve_detect_shared_errors_total{component="counters"}`); e < 1 {
				t.Errorf("%s counted %v shared errors during the outage", n.name, e)
			}
			if c := strings.Count(n.p.log(), "shared detector state unavailable"); c > 2 {
				t.Errorf("%s logged the degradation %d times, want once per component", n.name, c)
			}
		}
	})
}
