package main

import (
	"context"
	"encoding/base32"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// TestAPIToken: with http.token set, /api/ and /debug/pprof/ (http.pprof
// on) need the bearer token; /metrics and the health endpoints stay open.
// startHTTPApp starts an app's HTTP server on a free loopback port, with
// the embedded default changed by set, and returns the app and its base
// URL.
func startHTTPApp(t *testing.T, set func(*Config)) (*app, string) {
	t.Helper()
	cfg, err := loadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Upstream.Servers = []string{"udp://127.0.0.1:1"}
	cfg.StateDir = t.TempDir()
	cfg.HTTP.Listen = freePort(t)
	set(cfg)
	a := newTestApp(t, cfg)
	if err := a.startHTTP(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.http.Shutdown(context.Background()) })
	return a, "http://" + cfg.HTTP.Listen
}

func TestAPIToken(t *testing.T) {
	_, base := startHTTPApp(t, func(cfg *Config) { cfg.HTTP.Token, cfg.HTTP.Pprof = "s3cret", true })
	for _, tc := range []struct {
		name, path, token string
		want              int
	}{
		{"check_without_token", "/api/v1/check?name=example.com", "", http.StatusUnauthorized},
		{"check_wrong_token", "/api/v1/check?name=example.com", "guess", http.StatusUnauthorized},
		{"check_with_token", "/api/v1/check?name=example.com", "s3cret", http.StatusOK},
		{"stats_with_token", "/api/v1/stats", "s3cret", http.StatusOK},
		{"pprof_without_token", "/debug/pprof/", "", http.StatusUnauthorized},
		{"pprof_with_token", "/debug/pprof/cmdline", "s3cret", http.StatusOK},
		{"check_bad_qtype", "/api/v1/check?name=example.com&qtype=BOGUS", "s3cret", http.StatusBadRequest},
		{"check_rfc3597_qtype", "/api/v1/check?name=example.com&qtype=TYPE65399", "s3cret", http.StatusOK},
		{"metrics_open", "/metrics", "", http.StatusOK},
		{"healthz_open", "/healthz", "", http.StatusOK},
		{"POST flush_without_token", "/api/v1/cache/flush", "", http.StatusUnauthorized},
		{"POST reload_wrong_token", "/api/v1/reload", "guess", http.StatusUnauthorized},
		{"POST refresh_without_token", "/api/v1/lists/refresh", "", http.StatusUnauthorized},
		{"POST flush_with_token", "/api/v1/cache/flush", "s3cret", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			method := http.MethodGet
			if m, _, ok := strings.Cut(tc.name, " "); ok {
				method = m
			}
			req, _ := http.NewRequest(method, base+tc.path, nil)
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s: %d, want %d", method, tc.path, resp.StatusCode, tc.want)
			}
		})
	}
}

// TestDetectEnforce: a policy in enforce mode blocks a tunnel session once
// its score reaches detect.block_score (NXDOMAIN, EDE 15, category
// tunneling), while observe mode only scores; ordinary names pass.
func TestDetectEnforce(t *testing.T) {
	up := startFakeUpstream(t)
	for _, tc := range []struct {
		name, mode string
		qtypes     []string // the policy's block_qtypes
		wantBlock  bool
	}{
		{"enforce", "enforce", nil, true},
		{"observe", "observe", nil, false},
		// The tunnel's type is blocked anyway: the policy stage answers
		// (NODATA, reason qtype), never the detector's block.
		{"enforce_blocked_qtype", "enforce", []string{"TXT"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := loadConfig("", nil)
			if err != nil {
				t.Fatal(err)
			}
			cfg.Upstream.Servers = []string{"udp://" + up.addr}
			cfg.StateDir = t.TempDir()
			cfg.HTTP.Listen = ""
			cfg.Server.Listen = []string{"127.0.0.1:0"}
			cfg.Querylog.Sinks = nil
			p := cfg.Policies["default"]
			p.Detect = tc.mode
			p.BlockQtypes = tc.qtypes
			cfg.Policies["default"] = p
			a := newTestApp(t, cfg)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- a.run(ctx) }()
			t.Cleanup(func() { cancel(); <-done })
			<-a.started
			addr := a.server.Addrs()[0].String()
			c := &dns.Client{Timeout: 5 * time.Second}
			ask := func(name string, qt uint16) *dns.Msg {
				m := new(dns.Msg)
				m.SetQuestion(name, qt)
				m.SetEdns0(1232, false)
				r, _, err := c.Exchange(m, addr)
				if err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				return r
			}
			if r := ask("www.example.com.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
				t.Fatalf("ordinary name: %s", dns.RcodeToString[r.Rcode])
			}
			// A tunnel's payload is compressed or encrypted: random bytes,
			// base32 in two labels, TXT queries (iodine/dnstt style).
			enc := base32.StdEncoding.WithPadding(base32.NoPadding)
			rng := rand.New(rand.NewPCG(1, 2))
			blockedAt := -1
			var blocked *dns.Msg
			for i := range 200 {
				payload := make([]byte, 40)
				for j := range payload {
					payload[j] = byte(rng.Uint32())
				}
				label := strings.ToLower(enc.EncodeToString(payload))
				name := fmt.Sprintf("%s.%s.t.tunnel-example.com.", label[:60], label[60:])
				r := ask(name, dns.TypeTXT)
				if r.Rcode == dns.RcodeNameError {
					blockedAt, blocked = i, r
					break
				}
				if tc.qtypes != nil && (r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 ||
					!strings.Contains(r.String(), "query type TXT blocked by policy default")) {
					t.Fatalf("query %d of a blocked type:\n%v", i, r)
				}
			}
			if !tc.wantBlock {
				if blockedAt >= 0 {
					t.Fatalf("%s: the detector blocked query %d", tc.name, blockedAt)
				}
				return
			}
			if blockedAt < 0 {
				t.Fatal("enforce mode never blocked the tunnel session")
			}
			opt := blocked.IsEdns0()
			var ede *dns.EDNS0_EDE
			for _, o := range opt.Option {
				if e, ok := o.(*dns.EDNS0_EDE); ok {
					ede = e
				}
			}
			if ede == nil || ede.InfoCode != dns.ExtendedErrorCodeBlocked || !strings.Contains(ede.ExtraText, "tunneling") {
				t.Errorf("block EDE = %+v, want 15 mentioning tunneling", ede)
			}
			t.Logf("tunnel blocked at query %d", blockedAt+1)
			if r := ask("www.example.com.", dns.TypeA); r.Rcode != dns.RcodeSuccess {
				t.Errorf("ordinary name after the block: %s", dns.RcodeToString[r.Rcode])
			}
		})
	}
}

// TestReloadForgetsRemovedUpstreams: after a reload replaces the upstreams,
// the removed one's series leave /metrics (it must not stay "down"), and
// the failed-reload counter exists at 0 from the start.
func TestReloadForgetsRemovedUpstreams(t *testing.T) {
	dir := t.TempDir()
	write := func(up string) string {
		return writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf("upstream:\n  servers: [%q]\nstate_dir: %s\nquerylog:\n  sinks: []\n", up, dir))
	}
	file := write("udp://127.0.0.1:1")
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, cfg)
	gather := func() string {
		mfs, err := a.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for _, mf := range mfs {
			b.WriteString(mf.String())
		}
		return b.String()
	}
	if m := gather(); !strings.Contains(m, "udp://127.0.0.1:1") || !strings.Contains(m, `value:"error"`) {
		t.Fatalf("before the reload: upstream or reloads_total{result=error} series missing")
	}
	write("udp://127.0.0.1:2")
	a.reloadConfig(context.Background(), "test")
	m := gather()
	if strings.Contains(m, "udp://127.0.0.1:1") {
		t.Error("the removed upstream's series are still exported")
	}
	if !strings.Contains(m, "udp://127.0.0.1:2") {
		t.Error("the new upstream's series are missing")
	}
}

// TestHTTPExposure: /debug/pprof/ is not served unless http.pprof is on
// (its dumps hold live query names; the container image listens on every
// interface), an API without a token on a non-loopback address is warned
// about, and an idle keep-alive connection is closed by the server.
func TestHTTPExposure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		pprof     bool
		wantPprof int
	}{{"pprof_off_by_default", false, http.StatusNotFound}, {"pprof_on", true, http.StatusOK}} {
		t.Run(tc.name, func(t *testing.T) {
			a, base := startHTTPApp(t, func(cfg *Config) { cfg.HTTP.Pprof = tc.pprof })
			resp, err := http.Get(base + "/debug/pprof/goroutine?debug=1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantPprof {
				t.Errorf("pprof: %d, want %d", resp.StatusCode, tc.wantPprof)
			}
			if a.http.IdleTimeout <= 0 || a.http.ReadTimeout <= 0 {
				t.Errorf("IdleTimeout %v ReadTimeout %v: idle connections are never closed", a.http.IdleTimeout, a.http.ReadTimeout)
			}
		})
	}
	for _, tc := range []struct {
		addr string
		want bool
	}{{"127.0.0.1:9153", true}, {"[::1]:9153", true}, {"0.0.0.0:9153", false}, {"[::]:9153", false}, {"10.0.0.5:9153", false}} {
		if got := loopbackListen(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(tc.addr))); got != tc.want {
			t.Errorf("loopbackListen(%s) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestAPIRebindingGuard: without a token, the API on a loopback listener
// answers only requests naming it by address or as localhost; a web page
// reaching it through a rebound DNS name sends that name and is refused.
// /metrics and health are not guarded.
func TestAPIRebindingGuard(t *testing.T) {
	_, base := startHTTPApp(t, func(cfg *Config) { cfg.HTTP.Pprof = true })
	port := base[strings.LastIndexByte(base, ':')+1:]
	for _, tc := range []struct {
		path, host string
		want       int
	}{
		{"/api/v1/check?name=example.com", "127.0.0.1:" + port, http.StatusOK},
		{"/api/v1/check?name=example.com", "localhost:" + port, http.StatusOK},
		{"/api/v1/check?name=example.com", "rebind.attacker.example:" + port, http.StatusForbidden},
		{"/debug/pprof/cmdline", "rebind.attacker.example", http.StatusForbidden},
		{"/metrics", "rebind.attacker.example:" + port, http.StatusOK},
	} {
		req, _ := http.NewRequest(http.MethodGet, base+tc.path, nil)
		req.Host = tc.host
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s with Host %s: %d, want %d", tc.path, tc.host, resp.StatusCode, tc.want)
		}
	}
}

// TestListRefreshAfterReload: a list refresh whose lists were captured
// before a config reload compiles against the config and lists in force
// now, instead of failing on the list the reload added.
func TestListRefreshAfterReload(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.txt", "a-listed.example\n")
	writeFile(t, dir, "b.txt", "b-listed.example\n")
	write := func(lists, block string) string { return writeListsConfig(t, dir, lists, block) }
	file := write("  - name: a\n    sources: [a.txt]\n", "a")
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, cfg)
	stale := a.lists.Lists() // what a timer refresh just before the reload saw
	write("  - name: a\n    sources: [a.txt]\n  - name: b\n    sources: [b.txt]\n", "a, b")
	if err := a.reloadConfig(context.Background(), "test"); err != nil {
		t.Fatal(err)
	}
	errorsBefore := testutil.ToFloat64(a.metrics.reloads.WithLabelValues("error"))
	a.listsChanged(stale)
	if n := testutil.ToFloat64(a.metrics.reloads.WithLabelValues("error")) - errorsBefore; n != 0 {
		t.Errorf("the refresh failed %v times", n)
	}
	for _, name := range []string{"a-listed.example.", "b-listed.example."} {
		if d := a.store.Load().Decide("default", name, dns.TypeA); d.Action != query.ActionBlock {
			t.Errorf("%s: %+v, want blocked by the reloaded policy", name, d)
		}
	}
}

// TestAPIActions: POST /api/v1/lists/refresh, /api/v1/cache/flush and
// /api/v1/reload do what they say and report it; a browser's
// cross-origin POST is refused.
func TestAPIActions(t *testing.T) {
	up := startFakeUpstream(t)
	dir := t.TempDir()
	writeFile(t, dir, "ioc.txt", "old-ioc.example\n")
	good := fmt.Sprintf("upstream:\n  servers: [\"udp://%s\"]\nstate_dir: %s\nquerylog:\n  sinks: []\nlists:\n  - name: ioc\n    sources: [ioc.txt]\npolicies:\n  default:\n    block: [ioc]\n", up.addr, dir)
	file := writeFile(t, dir, "dnsvalve.yaml", good)
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg.HTTP.Listen = freePort(t)
	a := newTestApp(t, cfg)
	if err := a.startHTTP(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.http.Shutdown(context.Background()) })
	base := "http://" + cfg.HTTP.Listen
	post := func(path string, header ...string) (int, map[string]any) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, base+path, nil)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	blocked := func(name string) bool {
		return a.store.Load().Decide("default", name, dns.TypeA).Action == query.ActionBlock
	}

	code, body := post("/api/v1/lists/refresh")
	if src, _ := body["sources"].([]any); code != http.StatusOK || body["changed"] != false || len(src) != 1 ||
		src[0].(map[string]any)["result"] != "not_modified" {
		t.Errorf("refresh with nothing new: %d %v", code, body)
	}
	writeFile(t, dir, "ioc.txt", "old-ioc.example\nnew-ioc.example\n")
	if code, body = post("/api/v1/lists/refresh"); code != http.StatusOK || body["changed"] != true || body["errors"] != 0.0 {
		t.Errorf("refresh after an edit: %d %v", code, body)
	}
	if !blocked("new-ioc.example.") {
		t.Error("the refreshed list is not in force")
	}

	m := new(dns.Msg)
	m.SetQuestion("cached.example.", dns.TypeA)
	if _, _, _, err := a.cache.Resolve(context.Background(), m); err != nil {
		t.Fatal(err)
	}
	if code, body = post("/api/v1/cache/flush"); code != http.StatusOK || body["flushed"] != 1.0 || a.cache.Len() != 0 {
		t.Errorf("flush: %d %v, %d entries left", code, body, a.cache.Len())
	}

	writeFile(t, dir, "dnsvalve.yaml", good+"bogus_key: 1\n")
	if code, body = post("/api/v1/reload"); code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["error"]), "bogus_key") {
		t.Errorf("reload of a broken config: %d %v", code, body)
	}
	writeFile(t, dir, "dnsvalve.yaml", strings.Replace(good, "block: [ioc]", "block: []", 1))
	if code, body = post("/api/v1/reload"); code != http.StatusOK || body["reloaded"] != true || blocked("old-ioc.example.") {
		t.Errorf("reload: %d %v, old-ioc still blocked: %v", code, body, blocked("old-ioc.example."))
	}

	// A page in a browser on this machine must not drive these; the
	// API's own origin (a UI served from it) may.
	for _, h := range [][]string{{"Sec-Fetch-Site", "cross-site"}, {"Origin", "http://evil.example"}} {
		if code, _ := post("/api/v1/cache/flush", h...); code != http.StatusForbidden {
			t.Errorf("cross-origin POST with %s: %d, want 403", h[0], code)
		}
	}
	if code, _ := post("/api/v1/cache/flush", "Sec-Fetch-Site", "same-origin", "Origin", base); code != http.StatusOK {
		t.Errorf("same-origin POST: %d, want 200", code)
	}
	resp, err := http.Get(base + "/api/v1/cache/flush")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET of a POST endpoint: %d, want 405", resp.StatusCode)
	}
}

// TestFailedReloadKeepsLists: a reload whose lists load but whose policy
// does not compile leaves the list manager on the running config's lists,
// so later refreshes still compile (they failed on the list the rejected
// config dropped).
func TestFailedReloadKeepsLists(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a.txt", "a-listed.example\n")
	writeFile(t, dir, "b.txt", "b-listed.example\n")
	write := func(lists, block string) string { return writeListsConfig(t, dir, lists, block) }
	file := write("  - name: a\n    sources: [a.txt]\n  - name: b\n    sources: [b.txt]\n", "a, b")
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, cfg)
	write("  - name: a\n    sources: [a.txt]\n", "a, malwar")
	if err := a.reloadConfig(context.Background(), "test"); err == nil || !strings.Contains(err.Error(), "malwar") {
		t.Fatalf("reload = %v, want the unknown list named", err)
	}
	writeFile(t, dir, "a.txt", "a-listed.example\na-new.example\n")
	if _, changed, _ := a.lists.RefreshAll(context.Background()); !changed {
		t.Fatal("the edited list did not change")
	}
	if err := a.swapLists(); err != nil {
		t.Fatalf("refresh after the failed reload: %v", err)
	}
	for _, name := range []string{"a-new.example.", "b-listed.example."} {
		if d := a.store.Load().Decide("default", name, dns.TypeA); d.Action != query.ActionBlock {
			t.Errorf("%s: %+v, want blocked by the running policy", name, d)
		}
	}
}

// writeListsConfig writes dir/dnsvalve.yaml: an unreachable upstream, the
// lists YAML given (items of lists:) and a default policy blocking block.
func writeListsConfig(t *testing.T, dir, lists, block string) string {
	t.Helper()
	return writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf("upstream:\n  servers: [\"udp://127.0.0.1:1\"]\nstate_dir: %s\nquerylog:\n  sinks: []\nlists:\n%spolicies:\n  default:\n    block: [%s]\n", dir, lists, block))
}
