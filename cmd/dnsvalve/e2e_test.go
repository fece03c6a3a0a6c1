package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// e2eConfig writes a config for the binary: listeners on a free loopback
// port, the fake upstream, a block list, an allowlist group for 127.0.0.2,
// and a file query log.
func e2eConfig(t *testing.T, upstream string) (file, dnsAddr, httpAddr, logFile, listFile string) {
	t.Helper()
	dir := t.TempDir()
	dnsAddr, httpAddr = freePort(t), freePort(t)
	logFile = filepath.Join(dir, "query.log")
	listFile = writeFile(t, dir, "malware.txt", "0.0.0.0 malware.example\n")
	writeFile(t, dir, "allow.txt", "allowed.example\n")
	file = writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf(`
server:
  listen: ["%s"]
http:
  listen: "%s"
upstream:
  servers: ["udp://%s"]
  timeout: 1s
state_dir: %s
lists:
  - name: malware
    sources: [malware.txt]
  - name: corp
    sources: [allow.txt]
clients:
  groups:
    - name: locked
      cidrs: ["127.0.0.2/32"]
      policy: sensitive
  names:
    127.0.0.1: test-workload
policies:
  default:
    block: [malware]
  sensitive:
    mode: allowlist
    allow: [corp]
    block_qtypes: ["NULL"]
querylog:
  sinks: ["file:%s"]
log:
  level: debug
`, dnsAddr, httpAddr, upstream, dir, logFile))
	return
}

func TestE2EServe(t *testing.T) {
	needTool(t, "dig")
	bin := buildBinary(t)
	up := startFakeUpstream(t)
	file, dnsAddr, httpAddr, logFile, _ := e2eConfig(t, up.addr)
	p := startDNSValve(t, bin, "serve", "--config", file)

	digs := 0 // queries sent, each one query-log record
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"udp_forward", []string{"example.com", "A"}, []string{"status: NOERROR", "192.0.2.1", "(UDP)"}},
		{"tcp_forward", []string{"+tcp", "example.com", "A"}, []string{"status: NOERROR", "192.0.2.1", "(TCP)"}},
		{"negative", []string{"nx.example.com", "A"}, []string{"status: NXDOMAIN"}},
		{"blocked_by_list", []string{"www.malware.example", "A"}, []string{"status: NXDOMAIN", "EDE: 15 (Blocked)", "malware", "SOA"}},
		{"blocked_tcp", []string{"+tcp", "malware.example", "A"}, []string{"status: NXDOMAIN", "EDE: 15"}},
		{"allowlist_denied", []string{"-b", "127.0.0.2", "example.com", "A"}, []string{"status: NXDOMAIN", "EDE: 18 (Prohibited)"}},
		{"allowlist_allowed", []string{"-b", "127.0.0.2", "allowed.example", "A"}, []string{"status: NOERROR", "192.0.2.1"}},
		{"qtype_blocked", []string{"-b", "127.0.0.2", "allowed.example", "NULL"},
			[]string{"status: NOERROR", "ANSWER: 0", "EDE: 15 (Blocked): (query type NULL blocked by policy sensitive)", "SOA"}},
		{"cname_to_blocked", []string{"cname-to-malware.test", "A"}, []string{"status: NXDOMAIN", "EDE: 15"}},
		{"edns_advertised", []string{"example.com", "A"}, []string{"udp: 1232"}},
		{"any_minimal", []string{"example.com", "ANY"}, []string{"status: NOERROR", "HINFO", "RFC8482"}},
		{"chaos_refused", []string{"version.bind", "CH", "TXT"}, []string{"status: REFUSED", "EDE: 21 (Not Supported)", "class CH is not served"}},
		// A blocked name: refused as a transfer before the policy sees it.
		{"axfr_refused", []string{"+tcp", "malware.example", "AXFR"}, []string{"Transfer failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := dig(t, dnsAddr, tc.args...)
			digs++
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("dig %v: output lacks %q:\n%s", tc.args, w, out)
				}
			}
		})
	}

	// Cache: the second identical query is not forwarded.
	before := up.queries.Load()
	dig(t, dnsAddr, "cached.example", "A")
	dig(t, dnsAddr, "cached.example", "A")
	digs += 2
	if got := up.queries.Load() - before; got != 1 {
		t.Errorf("two identical queries reached the upstream %d times, want 1", got)
	}

	// Health and metrics.
	for path, want := range map[string]string{
		"/healthz": "ok",
		"/readyz":  `"ready": true`,
		"/metrics": "dnsvalve_server_queries_total",
		"/api/v1/check?name=malware.example&client=127.0.0.1": `"decision": "block"`,
	} {
		body := httpGet(t, "http://"+httpAddr+path)
		if !strings.Contains(body, want) {
			t.Errorf("GET %s lacks %q:\n%.500s", path, want, body)
		}
	}

	// dnsvalve top reads /api/v1/stats of the running process.
	out, err := execCommand(bin, "top", "--http", httpAddr).CombinedOutput()
	if err != nil {
		t.Fatalf("dnsvalve top: %v\n%s", err, out)
	}
	for _, w := range []string{"TOP CLIENTS", "test-workload", "TOP BLOCKED", "www.malware.example.", "malware"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("dnsvalve top output lacks %q:\n%s", w, out)
		}
	}

	// SIGTERM: graceful stop, exit status 0, every query in the log.
	p.stop(t)
	recs := readLog(t, logFile)
	if want := digs; len(recs) != want {
		t.Fatalf("query log has %d records, want %d (one per query)", len(recs), want)
	}
	var blocked, workload, transfers, qtypes int
	for _, r := range recs {
		if r["query_type"] == "NULL" {
			qtypes++
			dv, _ := r["dnsvalve"].(map[string]any)
			if r["firewall_rule_action"] != "BLOCK" || r["firewall_rule_group_id"] != "sensitive" || dv["reason"] != "qtype" ||
				dv["rule"] != "NULL" || dv["source"] != "policies.sensitive.block_qtypes" {
				t.Errorf("NULL query logged as %v", r)
			}
		}
		if r["firewall_rule_action"] == "BLOCK" {
			blocked++
		}
		if r["query_type"] == "AXFR" {
			transfers++
			if dv, _ := r["dnsvalve"].(map[string]any); r["rcode"] != "REFUSED" || dv["reason"] != "zone_transfer" {
				t.Errorf("AXFR logged as rcode %v, reason %v; want REFUSED, zone_transfer", r["rcode"], dv["reason"])
			}
		}
		if ids, _ := r["srcids"].(map[string]any); ids["instance"] == "test-workload" {
			workload++
		}
	}
	if blocked != 5 {
		t.Errorf("%d BLOCK records, want 5", blocked)
	}
	if qtypes != 1 {
		t.Errorf("%d NULL records, want 1", qtypes)
	}
	if workload == 0 {
		t.Error("no record carries the workload name from clients.names")
	}
	if transfers != 1 {
		t.Errorf("%d AXFR records, want 1", transfers)
	}
}

func httpGet(t testing.TB, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func readLog(t testing.TB, file string) []map[string]any {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("query log line is not JSON: %v: %s", err, sc.Text())
		}
		recs = append(recs, m)
	}
	return recs
}

// TestE2EReload: SIGHUP applies a changed list; an invalid config on
// SIGHUP keeps the running one and says why once.
func TestE2EReload(t *testing.T) {
	needTool(t, "dig")
	bin := buildBinary(t)
	up := startFakeUpstream(t)
	file, dnsAddr, httpAddr, _, listFile := e2eConfig(t, up.addr)
	p := startDNSValve(t, bin, "--config", file)

	if out := dig(t, dnsAddr, "newbad.example", "A"); !strings.Contains(out, "status: NOERROR") {
		t.Fatalf("before reload: %s", out)
	}
	if err := os.WriteFile(listFile, []byte("0.0.0.0 malware.example\n0.0.0.0 newbad.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, "configuration reloaded")
	if out := dig(t, dnsAddr, "newbad.example", "A"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Fatalf("after reload the new list entry is not blocked: %s", out)
	}

	good, _ := os.ReadFile(file)
	if err := os.WriteFile(file, append(good, []byte("\nbogus_key: 1\n")...), 0o644); err != nil {
		t.Fatal(err)
	}
	_ = p.cmd.Process.Signal(syscall.SIGHUP)
	line := p.waitLog(t, "reload failed")
	if !strings.Contains(line, "bogus_key") {
		t.Errorf("reload error does not name the key: %s", line)
	}
	if out := dig(t, dnsAddr, "newbad.example", "A"); !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("after a failed reload the running policy changed: %s", out)
	}
	if m := httpGet(t, "http://"+httpAddr+"/metrics"); !strings.Contains(m, `dnsvalve_config_reloads_total{result="error"}`) {
		t.Error("reloads_total{result=\"error\"} missing from /metrics")
	}

	// A change to the config file is picked up without a signal (file
	// watch): restore the good file and wait for the reload it triggers.
	if err := os.WriteFile(file, good, 0o644); err != nil {
		t.Fatal(err)
	}
	if line := p.waitLog(t, "configuration reloaded"); !strings.Contains(line, "file change") {
		t.Errorf("reload not triggered by the file watch: %s", line)
	}
}

// TestE2EListFileWatch: an edited list file applies without a signal,
// also when an editor replaces it by a rename, and a list that a config
// reload adds in another directory is watched from then on.
func TestE2EListFileWatch(t *testing.T) {
	needTool(t, "dig")
	bin := buildBinary(t)
	up := startFakeUpstream(t)
	file, dnsAddr, _, _, listFile := e2eConfig(t, up.addr)
	p := startDNSValve(t, bin, "--config", file)
	blocked := func(name string) bool {
		return strings.Contains(dig(t, dnsAddr, name, "A"), "status: NXDOMAIN")
	}
	if blocked("edited.example") {
		t.Fatal("edited.example blocked before the edit")
	}
	if err := os.WriteFile(listFile, []byte("0.0.0.0 malware.example\n0.0.0.0 edited.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if line := p.waitLog(t, "configuration reloaded"); !strings.Contains(line, "list file change: malware") {
		t.Errorf("reload trigger: %s", line)
	}
	if !blocked("edited.example") {
		t.Error("the edited list's new entry is not blocked")
	}

	// An editor's save: write a temporary file, rename it over the list.
	tmp := listFile + ".swp"
	if err := os.WriteFile(tmp, []byte("0.0.0.0 malware.example\n0.0.0.0 renamed.example\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, listFile); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "list file change: malware")
	if !blocked("renamed.example") || blocked("edited.example") {
		t.Error("the renamed list did not replace the old one")
	}

	// A reload that adds a list in a new directory: its file is watched.
	dir := filepath.Join(filepath.Dir(file), "extra")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "ioc.txt", "first-ioc.example\n")
	cfg, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	next := strings.Replace(string(cfg), "lists:\n", "lists:\n  - name: ioc\n    sources: [extra/ioc.txt]\n", 1)
	next = strings.Replace(next, "    block: [malware]\n", "    block: [malware, ioc]\n", 1)
	if err := os.WriteFile(file, []byte(next), 0o644); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, "trigger=\"file change\"")
	if !blocked("first-ioc.example") {
		t.Fatal("the added list is not in force after the config reload")
	}
	p.waitLog(t, `watching directory" dir=`+dir)
	writeFile(t, dir, "ioc.txt", "first-ioc.example\nsecond-ioc.example\n")
	p.waitLog(t, "list file change: ioc")
	if !blocked("second-ioc.example") {
		t.Error("an edit to the added list's file was not picked up")
	}

	// The directory goes and comes back with new content (a volume
	// remounted): its watch is restored and the content read.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, dir, "ioc.txt", "third-ioc.example\n")
	p.waitLog(t, "trigger=\"file watch added\"")
	if !blocked("third-ioc.example") {
		t.Error("the recreated directory's list was not read")
	}
}

// TestE2EConfigErrorExit: the binary exits 2 naming the key and the file.
func TestE2EConfigErrorExit(t *testing.T) {
	bin := buildBinary(t)
	file := writeFile(t, t.TempDir(), "bad.yaml", "cache:\n  sise: 1\n")
	cmd := execCommand(bin, "--config", file)
	out, err := cmd.CombinedOutput()
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	if code != 2 || !strings.Contains(string(out), "cache.sise") || !strings.Contains(string(out), file) {
		t.Fatalf("exit %d (%v), output %q: want status 2 naming cache.sise and the file", code, err, out)
	}
}

// TestReloadUnderLoad reloads the config twenty times while clients query
// without pause: no query may fail. Run under -race by the test script.
func TestReloadUnderLoad(t *testing.T) {
	up := startFakeUpstream(t)
	file, _, _, _, _ := e2eConfig(t, up.addr)
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Server.Listen = []string{"127.0.0.1:0"}
	cfg.HTTP.Listen = ""
	cfg.Querylog.Sinks = nil
	a := newTestApp(t, cfg)
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- a.run(ctx) }()
	select {
	case <-a.started:
	case err := <-runErr:
		t.Fatalf("run: %v", err)
	}
	addr := a.server.Addrs()[0].String()

	var failed, answered atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			c := &dns.Client{Timeout: 2 * time.Second}
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				m := new(dns.Msg)
				m.SetQuestion(fmt.Sprintf("n%d-%d.example.", w, i%50), dns.TypeA)
				r, _, err := c.Exchange(m, addr)
				if err != nil || r.Rcode != dns.RcodeSuccess {
					failed.Add(1)
					continue
				}
				answered.Add(1)
			}
		})
	}
	for range 20 {
		a.reloadConfig(ctx, "test")
	}
	close(stop)
	wg.Wait()
	cancel()
	if err := <-runErr; err != nil {
		t.Errorf("run: %v", err)
	}
	if f := failed.Load(); f != 0 {
		t.Errorf("%d of %d queries failed during reloads", f, f+answered.Load())
	}
	if answered.Load() == 0 {
		t.Error("no query answered")
	}
}

// TestE2ECheck: dnsvalve check explains decisions with exit status 0
// (allowed), 1 (blocked) or 2 (error), in text and JSON.
func TestE2ECheck(t *testing.T) {
	bin := buildBinary(t)
	file, _, _, _, _ := e2eConfig(t, "127.0.0.1:1")
	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"allowed", []string{"example.com"}, 0, []string{"example.com.", "none", "default"}},
		{"blocked_subdomain", []string{"a.b.malware.example"}, 1, []string{"block", "malware", "malware.txt:1"}},
		{"allowlist_group", []string{"--client", "127.0.0.2", "example.com"}, 1, []string{"locked", "sensitive", "allowlist"}},
		{"json", []string{"--json", "malware.example"}, 1, []string{`"decision": "block"`, `"list": "malware"`, `"line": 1`}},
		{"blocked_qtype", []string{"--client", "127.0.0.2", "--qtype", "null", "allowed.example"}, 1,
			[]string{"NULL", "qtype", "nodata", "policies.sensitive.block_qtypes"}},
		{"bad_client", []string{"--client", "nope", "x.example"}, 2, []string{"--client"}},
		{"no_names", nil, 2, []string{"NAME"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := execCommand(bin, append([]string{"check", "--config", file}, tc.args...)...)
			out, _ := cmd.CombinedOutput()
			if got := cmd.ProcessState.ExitCode(); got != tc.code {
				t.Errorf("exit status %d, want %d\n%s", got, tc.code, out)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
}

// TestE2EEmbeddedDefault runs the README's first command (dnsvalve with no
// arguments, on its embedded default) inside a loopback-only network
// namespace, so its upstreams from /etc/resolv.conf are unreachable by
// construction: it must start, serve 127.0.0.1:5353 and HTTP on
// 127.0.0.1:9153, and answer SERVFAIL with an Extended DNS Error quickly.
func TestE2EEmbeddedDefault(t *testing.T) {
	needTool(t, "dig")
	needTool(t, "unshare")
	bin := buildBinary(t)
	if out, err := execCommand("unshare", "-n", "true").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("unshare -n: %v %s", err, out)
		}
		t.Skipf("cannot create a network namespace here (%v): run as root", err)
	}
	script := `set -e
ip link set lo up
"$BIN" > /dev/null 2> "$DIR/stderr" &
pid=$!
for i in $(seq 1 100); do grep -q "dnsvalve started" "$DIR/stderr" && break; sleep 0.1; done
grep -q "dnsvalve started" "$DIR/stderr" || { cat "$DIR/stderr"; exit 1; }
start=$(date +%s%N)
dig @127.0.0.1 -p 5353 +time=5 +tries=1 example.com A || true
end=$(date +%s%N)
echo "elapsed_ms=$(( (end - start) / 1000000 ))"
curl -s http://127.0.0.1:9153/healthz 2>/dev/null || wget -qO- http://127.0.0.1:9153/healthz 2>/dev/null || echo "no http client"
kill -TERM $pid
wait $pid
echo "exit=$?"
`
	dir := t.TempDir()
	cmd := execCommand("unshare", "-n", "bash", "-c", script)
	cmd.Env = append(os.Environ(), "BIN="+bin, "DIR="+dir)
	out, err := cmd.CombinedOutput()
	if err != nil {
		stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
		t.Fatalf("embedded default run: %v\n%s\n%s", err, out, stderr)
	}
	for _, w := range []string{"status: SERVFAIL", "EDE:", "exit=0"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("output lacks %q:\n%s", w, out)
		}
	}
	var ms int
	if i := strings.Index(string(out), "elapsed_ms="); i >= 0 {
		fmt.Sscanf(string(out)[i:], "elapsed_ms=%d", &ms)
	}
	if ms > 4000 {
		t.Errorf("SERVFAIL took %d ms; the default budget is 2s", ms)
	}
	stderr, _ := os.ReadFile(filepath.Join(dir, "stderr"))
	if !strings.Contains(string(stderr), "127.0.0.1:5353") || !strings.Contains(string(stderr), "127.0.0.1:9153") {
		t.Errorf("log does not show the default listeners:\n%s", stderr)
	}
}
