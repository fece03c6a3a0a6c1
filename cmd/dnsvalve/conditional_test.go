package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"github.com/dnsvalve/dnsvalve/resolver/query"
)

// TestConditionalForwarding checks upstream.conditional in the app, through
// the cache: names in the zone go to its upstream and the rest to the
// default one, /readyz lists the zone's upstream with its zones, a reload
// that drops the entry purges the cache and routes the zone back to the
// default upstream, and an upstream in two groups is refused at start.
func TestConditionalForwarding(t *testing.T) {
	def, corp := startFakeUpstream(t), startFakeUpstream(t)
	dir := t.TempDir()
	write := func(conditional string) string {
		return writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf("upstream:\n  servers: [\"udp://%s\"]\n%sstate_dir: %s\nquerylog:\n  sinks: []\n",
			def.addr, conditional, dir))
	}
	file := write(fmt.Sprintf("  conditional:\n    - zones: [Corp.Test, 10.in-addr.arpa., 0/25.2.0.192.in-addr.arpa]\n      servers: [\"udp://%s\"]\n", corp.addr))
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := newTestApp(t, cfg)
	ask := func(name string) {
		t.Helper()
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		if _, _, _, err := a.cache.Resolve(context.Background(), m); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	for _, step := range []struct {
		name            string
		reload          string // config's conditional section to reload with first ("-": none)
		wantDef, wantCo int64  // queries each upstream has answered after the step
	}{
		{"db.corp.test.", "", 0, 1},
		{"5.0.0.10.in-addr.arpa.", "", 0, 2},
		{"example.com.", "", 1, 2},
		{"notcorp.test.", "", 2, 2},
		{"db.corp.test.", "-", 3, 2},
	} {
		if step.reload == "-" {
			write("")
			a.reloadConfig(context.Background(), "test")
			if st := a.router.Load().Status(); len(st) != 1 {
				t.Fatalf("after the reload: upstreams %+v, want the default one only", st)
			}
		}
		ask(step.name)
		if d, c := def.queries.Load(), corp.queries.Load(); d != step.wantDef || c != step.wantCo {
			t.Errorf("after %s: default/corp answered %d/%d, want %d/%d", step.name, d, c, step.wantDef, step.wantCo)
		}
		if step.name == "example.com." {
			st := a.router.Load().Status()
			if len(st) != 2 || st[1].Name != "udp://"+corp.addr || strings.Join(st[1].Zones, " ") != "corp.test. 10.in-addr.arpa. 0/25.2.0.192.in-addr.arpa." {
				t.Errorf("Status() = %+v, want the corp upstream with its zones", st)
			}
		}
	}

	// The default upstream in a conditional entry too: refused at start.
	file = write(fmt.Sprintf("  conditional:\n    - zones: [corp.test]\n      servers: [\"udp://%s\"]\n", def.addr))
	if cfg, err = loadConfig(file, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := newApp(context.Background(), cfg, nil, slog.New(slog.DiscardHandler)); err == nil ||
		!strings.Contains(err.Error(), "upstream.conditional[0].servers") || !strings.Contains(err.Error(), "one group only") {
		t.Errorf("newApp with an upstream in two groups: %v", err)
	}
}

// TestE2EConditional runs the binary with a conditional zone and asks dig
// for names in it and outside it.
func TestE2EConditional(t *testing.T) {
	needTool(t, "dig")
	bin := buildBinary(t)
	def, corp := startFakeUpstream(t), startFakeUpstream(t)
	file, dnsAddr, httpAddr, _, _ := e2eConfig(t, def.addr)
	cfg, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	withCond := strings.Replace(string(cfg), "  timeout: 1s\n",
		fmt.Sprintf("  timeout: 1s\n  conditional:\n    - zones: [corp.test]\n      servers: [\"udp://%s\"]\n", corp.addr), 1)
	if withCond == string(cfg) {
		t.Fatal("e2eConfig has no upstream timeout line to extend")
	}
	if err := os.WriteFile(file, []byte(withCond), 0o600); err != nil {
		t.Fatal(err)
	}
	startDNSValve(t, bin, "serve", "--config", file)
	for _, tc := range []struct {
		args            []string
		wantDef, wantCo int64
	}{
		{[]string{"db.corp.test", "A"}, 0, 1},
		{[]string{"+tcp", "mail.corp.test", "A"}, 0, 2},
		{[]string{"example.com", "A"}, 1, 2},
	} {
		out := dig(t, dnsAddr, tc.args...)
		if !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "192.0.2.1") {
			t.Errorf("dig %v:\n%s", tc.args, out)
		}
		if d, c := def.queries.Load(), corp.queries.Load(); d != tc.wantDef || c != tc.wantCo {
			t.Errorf("after dig %v: default/corp upstreams answered %d/%d, want %d/%d", tc.args, d, c, tc.wantDef, tc.wantCo)
		}
	}
	if got := metricValue(t, httpAddr, "dnsvalve_upstream_default_healthy"); got != 1 {
		t.Errorf("dnsvalve_upstream_default_healthy = %v, want 1", got)
	}
	body := httpGet(t, "http://"+httpAddr+"/readyz")
	var ready struct {
		Upstreams []struct {
			Name  string   `json:"name"`
			Zones []string `json:"zones"`
		} `json:"upstreams"`
	}
	if err := json.Unmarshal([]byte(body), &ready); err != nil || len(ready.Upstreams) != 2 ||
		ready.Upstreams[1].Name != "udp://"+corp.addr || strings.Join(ready.Upstreams[1].Zones, " ") != "corp.test." {
		t.Errorf("/readyz does not list the conditional upstream with its zones (%v): %s", err, body)
	}
}

// TestConditionalZonesSkipRebinding: a conditional zone's answers come
// from the company's own servers and may hold private addresses, even
// under a public name (split horizon): rebinding_protection lets them
// through, and still blocks a private answer for any other public name.
func TestConditionalZonesSkipRebinding(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "dnsvalve.yaml", fmt.Sprintf(`upstream:
  servers: ["udp://127.0.0.1:1"]
  conditional:
    - zones: [corp.example.com]
      servers: ["udp://127.0.0.1:2"]
policies:
  default:
    rebinding_protection: true
state_dir: %s
querylog:
  sinks: []
`, dir))
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatal(err)
	}
	snap := newTestApp(t, cfg).store.Load()
	for _, tc := range []struct {
		name    string
		blocked bool
	}{
		{"db.corp.example.com.", false},
		{"corp.example.com.", false},
		{"www.example.com.", true},
	} {
		resp := new(dns.Msg)
		resp.SetQuestion(tc.name, dns.TypeA)
		rr, err := dns.NewRR(tc.name + " 60 IN A 10.1.2.3")
		if err != nil {
			t.Fatal(err)
		}
		resp.Answer = append(resp.Answer, rr)
		d := snap.InspectResponse("default", tc.name, resp)
		if blocked := d.Action == query.ActionBlock; blocked != tc.blocked {
			t.Errorf("%s with a private address: decision %+v, want blocked %v", tc.name, d, tc.blocked)
		}
	}
}
