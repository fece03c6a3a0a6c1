package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t testing.TB, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEmbeddedDefault(t *testing.T) {
	cfg, err := loadConfig("", nil)
	if err != nil {
		t.Fatalf("embedded default: %v", err)
	}
	if got := cfg.Server.Listen; len(got) != 1 || got[0] != "127.0.0.1:5353" {
		t.Errorf("server.listen = %v, want [127.0.0.1:5353]", got)
	}
	if cfg.HTTP.Listen != "127.0.0.1:9153" {
		t.Errorf("http.listen = %q", cfg.HTTP.Listen)
	}
	if got := cfg.Upstream.Servers; len(got) != 1 || got[0] != "resolv.conf" {
		t.Errorf("upstream.servers = %v", got)
	}
	if cfg.Cache.Size != 100000 || cfg.Cache.ServeStale != time.Hour || cfg.Detect.Window != time.Minute {
		t.Errorf("unexpected defaults: cache %+v detect.window %v", cfg.Cache, cfg.Detect.Window)
	}
}

// TestExampleConfig keeps the README's example config valid: it loads,
// and its lists and policies compile.
func TestExampleConfig(t *testing.T) {
	file := filepath.Join("..", "..", "testdata", "dnsvalve.yaml")
	cfg, err := loadConfig(file, nil)
	if err != nil {
		t.Fatalf("example config: %v", err)
	}
	cfg.StateDir = t.TempDir()
	cfg.Detect.NewlySeen.Store = "file:" + filepath.Join(cfg.StateDir, "seen.db")
	a := newTestApp(t, cfg)
	snap := a.store.Load()
	for _, tc := range []struct {
		client, name, decision string
	}{
		{"127.0.0.1", "malware.example", "block"},
		{"127.0.0.1", "sub.phish.example", "block"},
		{"127.0.0.1", "files.example", "alert"},
		{"127.0.0.1", "example.com", "none"},
		{"10.0.8.5", "s3.amazonaws.com", "allow"},
		{"10.0.8.5", "example.com", "block"},
	} {
		ex := snap.Explain(mustAddr(t, tc.client), tc.name, 1)
		if ex.Decision != tc.decision {
			t.Errorf("%s from %s: decision %q, want %q (%+v)", tc.name, tc.client, ex.Decision, tc.decision, ex)
		}
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown_top_key", "serverr:\n  listen: [\"127.0.0.1:53\"]\n", []string{"unknown key", "serverr"}},
		{"unknown_nested_key", "cache:\n  sise: 10\n", []string{"unknown key", "cache.sise"}},
		{"unknown_key_in_list_item", "lists:\n  - name: a\n    sources: [x]\n    fromat: hosts\n", []string{"lists.0.fromat"}},
		{"unknown_key_in_policy", "policies:\n  default:\n    blok: [a]\n", []string{"policies.default.blok"}},
		{"bad_type", "cache:\n  size: lots\n", []string{"cache.size"}},
		{"bad_duration", "upstream:\n  timeout: soon\n", []string{"upstream.timeout"}},
		{"bad_strategy", "upstream:\n  strategy: roundrobin\n", []string{"upstream.strategy", "roundrobin"}},
		{"bad_listen", "server:\n  listen: [\"localhost\"]\n", []string{"server.listen[0]"}},
		{"bad_listen_port", "server:\n  listen: [\":abc\"]\n", []string{"server.listen[0]", ":abc"}},
		{"listen_port_out_of_range", "server:\n  listen: [\"127.0.0.1:5353\", \":99999\"]\n", []string{"server.listen[1]", "65535"}},
		{"listen_host_name", "server:\n  listen: [\"localhost:53\"]\n", []string{"server.listen[0]"}},
		{"bad_http_listen", "http:\n  listen: \":x\"\n", []string{"http.listen"}},
		{"bad_cidr", "server:\n  allow_clients: [\"10.0.0.0/33\"]\n", []string{"server.allow_clients[0]"}},
		{"bad_mode", "policies:\n  default:\n    mode: strict\n", []string{"policies.default.mode"}},
		{"bare_yaml_null_qtype", "policies:\n  default:\n    block_qtypes: [NULL, TXT]\n", []string{"policies.default.block_qtypes[0]", `write "NULL", quoted`}},
		{"scalar_yaml_null_qtype", "policies:\n  default:\n    block_qtypes: NULL\n", []string{"policies.default.block_qtypes: null", `write ["NULL"], quoted`}},
		{"empty_qtypes_key", "policies:\n  strict:\n    block_qtypes:\n", []string{"policies.strict.block_qtypes: null"}},
		{"unknown_qtype", "policies:\n  default:\n    block_qtypes: [\"NULL\", TXTT]\n", []string{"policies.default.block_qtypes[1]", `"TXTT"`}},
		{"unknown_group_policy", "clients:\n  groups:\n    - name: g\n      cidrs: [10.0.0.0/8]\n      policy: nope\n", []string{"clients.groups[0].policy", "nope"}},
		{"retransmit_min_too_small", "upstream:\n  udp_retransmit_min: 1ms\n", []string{"upstream.udp_retransmit_min", "[10ms, 10s]"}},
		{"negative_stale_timer", "cache:\n  stale_client_timeout: -1s\n", []string{"cache.stale_client_timeout", "negative"}},
		{"score_range", "detect:\n  alert_score: 2\n", []string{"detect.alert_score"}},
		{"block_below_alert", "detect:\n  alert_score: 0.8\n  block_score: 0.6\n", []string{"detect.block_score", "below detect.alert_score (0.8)"}},
		{"negative_max_domains", "detect:\n  newly_seen:\n    max_domains: -1\n", []string{"detect.newly_seen.max_domains"}},
		{"failure_ttl_too_short", "cache:\n  failure_ttl: 500ms\n", []string{"cache.failure_ttl", "1s to 5m0s"}},
		{"failure_ttl_too_long", "cache:\n  failure_ttl: 10m\n", []string{"cache.failure_ttl", "RFC 9520"}},
		{"conditional_no_zones", "upstream:\n  conditional:\n    - servers: [\"udp://127.0.0.1:1\"]\n", []string{"upstream.conditional[0].zones", "at least one"}},
		{"conditional_root", "upstream:\n  conditional:\n    - zones: [\".\"]\n      servers: [\"udp://127.0.0.1:1\"]\n", []string{"upstream.conditional[0].zones[0]", "root"}},
		{"conditional_bad_zone", "upstream:\n  conditional:\n    - zones: [\"*.corp.test\"]\n      servers: [\"udp://127.0.0.1:1\"]\n", []string{"upstream.conditional[0].zones[0]", "not a domain name"}},
		{"conditional_idn_zone", "upstream:\n  conditional:\n    - zones: [\"bücher.test\"]\n      servers: [\"udp://127.0.0.1:1\"]\n", []string{"upstream.conditional[0].zones[0]", "punycode"}},
		{"conditional_zone_twice", "upstream:\n  conditional:\n    - zones: [corp.test]\n      servers: [\"udp://127.0.0.1:1\"]\n    - zones: [Corp.Test.]\n      servers: [\"udp://127.0.0.1:2\"]\n", []string{"upstream.conditional[1].zones[0]", "already in upstream.conditional[0].zones[0]"}},
		{"conditional_no_servers", "upstream:\n  conditional:\n    - zones: [corp.test]\n", []string{"upstream.conditional[0].servers", "at least one"}},
		{"conditional_unknown_key", "upstream:\n  conditional:\n    - zones: [corp.test]\n      server: [\"udp://127.0.0.1:1\"]\n", []string{"upstream.conditional.0.server"}},
		{"webhook_not_http", "alerts:\n  webhook: \"hooks.example/alert\"\n", []string{"alerts.webhook", "http:// or https://"}},
		{"policy_alert_action", "alerts:\n  policy: [alert, allow]\n", []string{"alerts.policy[1]", `"allow" is not alert or block`}},
		{"negative_alert_interval", "alerts:\n  policy_interval: -1m\n", []string{"alerts.policy_interval"}},
		{"several_errors_joined", "upstream:\n  strategy: x\ncache:\n  min_ttl: 2h\n  max_ttl: 1h\n", []string{"upstream.strategy", "cache.min_ttl"}},
		{"bad_yaml", "server: [\n", []string{"dnsvalve.yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := writeFile(t, dir, "dnsvalve.yaml", tc.yaml)
			var stderr bytes.Buffer
			code := run([]string{"serve", "--config", file}, nil, &bytes.Buffer{}, &stderr)
			if code != 2 {
				t.Fatalf("exit status %d, want 2; stderr: %s", code, stderr.String())
			}
			msg := stderr.String()
			for _, w := range append(tc.want, file) {
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not mention %q", msg, w)
				}
			}
		})
	}
}

func TestEnvAndFlagsOverride(t *testing.T) {
	file := writeFile(t, t.TempDir(), "c.yaml", "server:\n  listen: [\"127.0.0.1:1053\"]\ncache:\n  size: 10\n")
	t.Setenv("DNSVALVE_CACHE_SIZE", "77")
	t.Setenv("DNSVALVE_HTTP_LISTEN", "127.0.0.1:9999")
	t.Setenv("DNSVALVE_POLICIES_DEFAULT_BLOCK_QTYPES", "NULL TYPE65399")
	fs, _ := serveFlags("serve")
	if err := fs.Parse([]string{"--listen", "127.0.0.1:2053", "--listen", "[::1]:2053", "--upstream", "udp://127.0.0.1:5399"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(file, fs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Cache.Size != 77 {
		t.Errorf("cache.size = %d, want env value 77", cfg.Cache.Size)
	}
	if cfg.HTTP.Listen != "127.0.0.1:9999" {
		t.Errorf("http.listen = %q, want env value", cfg.HTTP.Listen)
	}
	if got := strings.Join(cfg.Server.Listen, ","); got != "127.0.0.1:2053,[::1]:2053" {
		t.Errorf("server.listen = %q, want the flags", got)
	}
	if got := strings.Join(cfg.Upstream.Servers, ","); got != "udp://127.0.0.1:5399" {
		t.Errorf("upstream.servers = %q", got)
	}
	if got := strings.Join(cfg.Policies["default"].BlockQtypes, ","); got != "NULL,TYPE65399" || len(cfg.UnknownEnv) != 0 {
		t.Errorf("policies.default.block_qtypes = %q (unknown env %v), want the env value", got, cfg.UnknownEnv)
	}
	var _ *pflag.FlagSet = fs
}

func TestVersionAndUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, nil, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "dnsvalve ") {
		t.Errorf("version: code %d out %q", code, out.String())
	}
	if code := run([]string{"frobnicate"}, nil, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown command: code %d err %q", code, errb.String())
	}
}

// TestShippedConfigs keeps the configs shipped in deploy/ loadable.
func TestShippedConfigs(t *testing.T) {
	for _, f := range []string{"../../deploy/docker/dnsvalve.yaml"} {
		if _, err := loadConfig(f, nil); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

// TestRestartKeys: a reload names every changed key it does not apply,
// nested ones included (a removed trusted forwarder, a rate-limit burst),
// and none of those it does apply.
func TestRestartKeys(t *testing.T) {
	base, err := loadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"nothing", func(*Config) {}, ""},
		{"trusted_forwarders", func(c *Config) { c.Server.TrustedForwarders = []string{"127.0.0.9/32"} }, "server.trusted_forwarders"},
		{"nested", func(c *Config) { c.Server.RateLimit.Burst++; c.Server.ECSClient = true }, "server.rate_limit.burst,server.ecs_client"},
		{"several_sections", func(c *Config) { c.Cache.Size = 7; c.Log.Level = "debug"; c.StateDir = "/x" }, "cache.size,state_dir,log.level"},
		{"reloadable_only", func(c *Config) {
			c.Upstream.Servers = []string{"udp://127.0.0.1:5399"}
			c.BlockTTL++
			c.Lists = append(c.Lists, ListConfig{Name: "x"})
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := *base
			cfg.Server.RateLimit.Exempt = slices.Clone(base.Server.RateLimit.Exempt)
			tc.change(&cfg)
			if got := strings.Join(restartKeys(base, &cfg), ","); got != tc.want {
				t.Errorf("restartKeys = %q, want %q", got, tc.want)
			}
		})
	}
}

// TestUnknownEnv: a misspelled DNSVALVE_* variable is reported (and
// warned about at start), a right one is not.
func TestUnknownEnv(t *testing.T) {
	t.Setenv("DNSVALVE_CACHE_SIZE", "77")
	t.Setenv("DNSVALVE_CACHE_SISE", "77")
	t.Setenv("DNSVALVE_SERVER_RATE_LIMIT_QPS", "5")
	t.Setenv("DNSVALVE_UPSTREAM_SERVER", "udp://127.0.0.1:53")
	cfg, err := loadConfig("", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(cfg.UnknownEnv, ","); got != "DNSVALVE_CACHE_SISE,DNSVALVE_UPSTREAM_SERVER" {
		t.Errorf("UnknownEnv = %q", got)
	}
	if cfg.Cache.Size != 77 || cfg.Server.RateLimit.QPS != 5 {
		t.Errorf("known variables not applied: cache.size %d, rate_limit.qps %v", cfg.Cache.Size, cfg.Server.RateLimit.QPS)
	}
}

// TestScoreCommand runs "dnsvalve score" over a dnsvalve query log that
// spans three hours, with a one-hour learning period: domains first seen
// in the first hour are learned, one first seen after it is newly seen
// (the records' timestamps are the clock; the learning used to run from
// the time of the scoring, so nothing in a past log was ever newly seen).
func TestScoreCommand(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "c.yaml", "detect:\n  newly_seen:\n    learn: 1h\n")
	line := func(ts, name string) string {
		return `{"version":"1.100000","account_id":"","region":"","vpc_id":"","query_timestamp":"` + ts + `",` +
			`"query_name":"` + name + `","query_type":"A","query_class":"IN","rcode":"NOERROR","answers":[],` +
			`"srcaddr":"10.0.8.5","srcport":"40000","transport":"UDP","srcids":{},` +
			`"dnsvalve":{"cache":"miss","latency_us":12,"score":0,"alert":false,"newly_seen":false}}` + "\n"
	}
	log := writeFile(t, dir, "q.log", line("2026-03-01T12:00:00.000Z", "www.first.example.com.")+
		line("2026-03-01T12:30:00.000Z", "www.second.example.net.")+
		line("2026-03-01T14:00:00.000Z", "www.third.example.org.")+
		line("2026-03-01T14:00:01.000Z", "api.first.example.com."))
	var stdout, stderr bytes.Buffer
	if code := run([]string{"score", "--config", cfg, "--format", "dnsvalve", log}, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	got := map[string]bool{}
	for _, l := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		var rec struct {
			Name     string `json:"query_name"`
			DNSValve struct {
				NewlySeen bool `json:"newly_seen"`
			} `json:"dnsvalve"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatalf("output line %q: %v", l, err)
		}
		if rec.Name != "" {
			got[rec.Name] = rec.DNSValve.NewlySeen
		}
	}
	want := map[string]bool{"www.first.example.com.": false, "www.second.example.net.": false,
		"www.third.example.org.": true, "api.first.example.com.": false}
	if !maps.Equal(got, want) {
		t.Errorf("newly_seen by name %v, want %v\nstderr: %s", got, want, stderr.String())
	}
}

// TestNamesFilesFromEnv: DNSVALVE_CLIENTS_NAMES_FILES names the files
// (space-separated, relative to the config file), as README says of every
// key. Viper knows only keys of the embedded default: without
// names_files there, the variable was ignored as naming no key.
func TestNamesFilesFromEnv(t *testing.T) {
	dir := t.TempDir()
	f := writeFile(t, dir, "c.yaml", "upstream:\n  servers: [\"udp://127.0.0.1:1\"]\n")
	t.Setenv("DNSVALVE_CLIENTS_NAMES_FILES", "a.txt b.txt")
	cfg, err := loadConfig(f, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "a.txt"), filepath.Join(dir, "b.txt")}
	if !slices.Equal(cfg.Clients.NamesFiles, want) || len(cfg.UnknownEnv) != 0 {
		t.Errorf("clients.names_files = %q (unknown env %v), want %q", cfg.Clients.NamesFiles, cfg.UnknownEnv, want)
	}
}
