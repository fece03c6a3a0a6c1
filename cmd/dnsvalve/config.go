package main

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/miekg/dns"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/dnsvalve/dnsvalve/internal/redact"
	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver/cache"
	"github.com/dnsvalve/dnsvalve/resolver/query"
)

//go:embed default.yaml
var defaultYAML []byte

// keyDelim separates nested keys inside viper. It is not "." because map
// keys such as clients.names' IP addresses ("10.0.8.5", "fd00::5") contain
// dots and colons.
const keyDelim = "\x1f"

// Config is the whole configuration file (README "Configuration").
type Config struct {
	Server   ServerConfig            `mapstructure:"server"`
	HTTP     HTTPConfig              `mapstructure:"http"`
	Upstream UpstreamConfig          `mapstructure:"upstream"`
	Cache    CacheConfig             `mapstructure:"cache"`
	StateDir string                  `mapstructure:"state_dir"`
	Lists    []ListConfig            `mapstructure:"lists"`
	Clients  ClientsConfig           `mapstructure:"clients"`
	Policies map[string]PolicyConfig `mapstructure:"policies"`
	BlockTTL time.Duration           `mapstructure:"block_ttl"`
	Sinkhole []string                `mapstructure:"sinkhole"`
	Detect   DetectConfig            `mapstructure:"detect"`
	Alerts   AlertsConfig            `mapstructure:"alerts"`
	Querylog QuerylogConfig          `mapstructure:"querylog"`
	Log      LogConfig               `mapstructure:"log"`

	// File is the config file the values came from ("" = embedded default).
	File string `mapstructure:"-"`
	// UnknownEnv lists DNSVALVE_* environment variables that name no
	// key: warned about at start, not errors, since other tools share the
	// prefix (Kubernetes service links for a service named dnsvalve).
	UnknownEnv []string `mapstructure:"-"`
	// readAt is when the serve command began reading the config (zero
	// elsewhere): the file watch's catch-up starts from it.
	readAt time.Time
}

type ServerConfig struct {
	Listen         []string      `mapstructure:"listen"`
	AllowClients   []string      `mapstructure:"allow_clients"`
	RefuseAction   string        `mapstructure:"refuse_action"`
	TCPIdleTimeout time.Duration `mapstructure:"tcp_idle_timeout"`
	TCPMaxQueries  int           `mapstructure:"tcp_max_queries"`
	// TCPMaxConns and TCPMaxConnsPerClient bound open TCP connections per
	// listen address, and per client address (/32, /64).
	TCPMaxConns          int             `mapstructure:"tcp_max_connections"`
	TCPMaxConnsPerClient int             `mapstructure:"tcp_max_connections_per_client"`
	RateLimit            RateLimitConfig `mapstructure:"rate_limit"`
	// TrustedForwarders may name the real client: ECSClient takes it from a
	// full-length EDNS Client Subnet option, ProxyProtocol from a PROXY v2
	// header (TCP streams and UDP datagrams).
	TrustedForwarders []string `mapstructure:"trusted_forwarders"`
	ECSClient         bool     `mapstructure:"ecs_client"`
	ProxyProtocol     bool     `mapstructure:"proxy_protocol"`
	// GCMinHeapMB is the floor of the Go heap goal (see gcFloor); 0 leaves
	// the runtime's GOGC alone.
	GCMinHeapMB int `mapstructure:"gc_min_heap_mb"`
}

type RateLimitConfig struct {
	QPS    float64  `mapstructure:"qps"`
	Burst  int      `mapstructure:"burst"`
	Action string   `mapstructure:"action"`
	Exempt []string `mapstructure:"exempt"`
}

type HTTPConfig struct {
	Listen string `mapstructure:"listen"`
	Token  string `mapstructure:"token"`
	// Pprof mounts /debug/pprof/ (goroutine and heap dumps hold live query
	// names): off unless asked for, behind the token when one is set.
	Pprof bool `mapstructure:"pprof"`
}

type UpstreamConfig struct {
	Servers           []string      `mapstructure:"servers"`
	Strategy          string        `mapstructure:"strategy"`
	Timeout           time.Duration `mapstructure:"timeout"`
	TryTimeout        time.Duration `mapstructure:"try_timeout"`
	MaxFails          int           `mapstructure:"max_fails"`
	MaxConcurrent     int           `mapstructure:"max_concurrent"`
	CaseRandomization bool          `mapstructure:"case_randomization"`
	SocketLifetime    time.Duration `mapstructure:"udp_socket_lifetime"`
	RetransmitMin     time.Duration `mapstructure:"udp_retransmit_min"`
	// Conditional forwards the names in some zones to other upstreams.
	Conditional []ConditionalConfig `mapstructure:"conditional"`
}

// ConditionalConfig is one entry of upstream.conditional: these zones
// (each and every name under it) go to these servers, with the group
// settings of upstream.
type ConditionalConfig struct {
	Zones   []string `mapstructure:"zones"`
	Servers []string `mapstructure:"servers"`
}

type CacheConfig struct {
	Size        int           `mapstructure:"size"`
	MinTTL      time.Duration `mapstructure:"min_ttl"`
	MaxTTL      time.Duration `mapstructure:"max_ttl"`
	NegativeTTL time.Duration `mapstructure:"negative_ttl"`
	ServeStale  time.Duration `mapstructure:"serve_stale"`
	// StaleClientTimeout is RFC 8767's client response timer.
	StaleClientTimeout time.Duration `mapstructure:"stale_client_timeout"`
	Prefetch           bool          `mapstructure:"prefetch"`
	// FailureTTL is how long a failed resolution is remembered (RFC 9520).
	FailureTTL time.Duration `mapstructure:"failure_ttl"`
}

type ListConfig struct {
	Name     string        `mapstructure:"name"`
	Category string        `mapstructure:"category"`
	Sources  []string      `mapstructure:"sources"`
	Format   string        `mapstructure:"format"`
	Refresh  time.Duration `mapstructure:"refresh"`
	MaxBytes int64         `mapstructure:"max_bytes"`
}

type ClientsConfig struct {
	Groups     []GroupConfig     `mapstructure:"groups"`
	Names      map[string]string `mapstructure:"names"`
	NamesFiles []string          `mapstructure:"names_files"`
}

type GroupConfig struct {
	Name   string   `mapstructure:"name"`
	CIDRs  []string `mapstructure:"cidrs"`
	Policy string   `mapstructure:"policy"`
}

type PolicyConfig struct {
	Mode            string   `mapstructure:"mode"`
	Allow           []string `mapstructure:"allow"`
	Block           []string `mapstructure:"block"`
	Alert           []string `mapstructure:"alert"`
	BlockResponse   string   `mapstructure:"block_response"`
	CNAME           string   `mapstructure:"cname"`
	Rebinding       bool     `mapstructure:"rebinding_protection"`
	RebindingExempt []string `mapstructure:"rebinding_exempt"`
	Detect          string   `mapstructure:"detect"`
	BlockQtypes     []string `mapstructure:"block_qtypes"`
}

type DetectConfig struct {
	AlertScore float64         `mapstructure:"alert_score"`
	BlockScore float64         `mapstructure:"block_score"`
	Window     time.Duration   `mapstructure:"window"`
	MaxPairs   int             `mapstructure:"max_pairs"`
	Ignore     []string        `mapstructure:"ignore"`
	NewlySeen  NewlySeenConfig `mapstructure:"newly_seen"`
	// Shared state of a fleet of resolvers (docs/deploy.md).
	Shared       string        `mapstructure:"shared"`        // "" (off) | redis://... | rediss://...
	SharedSync   time.Duration `mapstructure:"shared_sync"`   // push/pull interval
	SharedPrefix string        `mapstructure:"shared_prefix"` // Redis key prefix
	SharedTLSCA  string        `mapstructure:"shared_tls_ca"` // PEM CA file for rediss://
}

type NewlySeenConfig struct {
	Store      string        `mapstructure:"store"`
	Learn      time.Duration `mapstructure:"learn"`
	Retention  time.Duration `mapstructure:"retention"`
	MaxDomains int           `mapstructure:"max_domains"` // every store; 0: no bound
}

type AlertsConfig struct {
	Webhook string `mapstructure:"webhook"`
	// Policy names the policy actions that raise an alert: "alert",
	// "block".
	Policy         []string      `mapstructure:"policy"`
	PolicyInterval time.Duration `mapstructure:"policy_interval"`
}

// policyActions returns the actions alerts.policy names (validated).
func (a AlertsConfig) policyActions() []query.Action {
	var out []query.Action
	for _, s := range a.Policy {
		switch strings.ToLower(s) {
		case "alert":
			out = append(out, query.ActionAlert)
		case "block":
			out = append(out, query.ActionBlock)
		}
	}
	return out
}

type QuerylogConfig struct {
	Sinks  []string `mapstructure:"sinks"`
	Buffer int      `mapstructure:"buffer"`
}

type LogConfig struct {
	Level  string `mapstructure:"level"`
	Format string `mapstructure:"format"`
}

// ErrConfig marks configuration errors (exit status 2).
var ErrConfig = errors.New("invalid configuration")

// flagKeys maps command-line flags to config keys.
var flagKeys = map[string]string{
	"listen":   "server" + keyDelim + "listen",
	"upstream": "upstream" + keyDelim + "servers",
	"http":     "http" + keyDelim + "listen",
}

// loadConfig reads the embedded default, then file (if any), then
// DNSVALVE_* environment variables, then the flags that were set. Unknown
// keys and invalid values are errors naming the key and the file.
func loadConfig(file string, flags *pflag.FlagSet) (*Config, error) {
	v := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
	v.SetConfigType("yaml")
	if err := v.ReadConfig(bytes.NewReader(defaultYAML)); err != nil {
		return nil, fmt.Errorf("embedded default config: %w", err)
	}
	where := "embedded default"
	if file != "" {
		where = file
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		fv := viper.NewWithOptions(viper.KeyDelimiter(keyDelim))
		fv.SetConfigType("yaml")
		if err := fv.ReadConfig(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, file, err)
		}
		// Strict: every key of the file must exist in Config.
		if unknown := unknownKeys(fv.AllSettings(), reflect.TypeOf(Config{}), ""); len(unknown) > 0 {
			return nil, fmt.Errorf("%w: %s: unknown key(s): %s", ErrConfig, file, strings.Join(unknown, ", "))
		}
		// YAML reads a bare NULL as null: "block_qtypes: NULL" would load as
		// no type at all. (In a list it arrives as "" and validate says so.)
		for _, k := range fv.AllKeys() {
			if path := strings.Split(k, keyDelim); len(path) == 3 && path[0] == "policies" &&
				path[2] == "block_qtypes" && fv.Get(k) == nil {
				return nil, fmt.Errorf(`%w: %s: policies.%s.block_qtypes: null (YAML reads a bare NULL as null: write ["NULL"], quoted)`,
					ErrConfig, file, path[1])
			}
		}
		if err := v.MergeConfigMap(fv.AllSettings()); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, file, err)
		}
	}
	v.SetEnvPrefix("DNSVALVE")
	v.SetEnvKeyReplacer(strings.NewReplacer(keyDelim, "_"))
	v.AutomaticEnv()
	unknownEnv := unknownEnvVars(v.AllKeys(), os.Environ())
	if flags != nil {
		for name, key := range flagKeys {
			if f := flags.Lookup(name); f != nil && f.Changed {
				if err := v.BindPFlag(key, f); err != nil {
					return nil, fmt.Errorf("bind flag --%s: %w", name, err)
				}
			}
		}
	}
	var cfg Config
	// Lists merged from env arrive as space-separated strings.
	hook := mapstructure.ComposeDecodeHookFunc(
		mapstructure.StringToTimeDurationHookFunc(),
		mapstructure.StringToSliceHookFunc(" "),
	)
	if err := v.UnmarshalExact(&cfg, viper.DecodeHook(hook)); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, where, cleanDecodeError(err))
	}
	// Policies map keys are case-insensitive (viper lowercases them).
	for i := range cfg.Clients.Groups {
		cfg.Clients.Groups[i].Policy = strings.ToLower(cfg.Clients.Groups[i].Policy)
	}
	cfg.File = file
	cfg.UnknownEnv = unknownEnv
	// Relative list and names file paths are relative to the config
	// file's directory.
	if file != "" {
		for i, p := range cfg.Clients.NamesFiles {
			if p != "" && !filepath.IsAbs(p) {
				cfg.Clients.NamesFiles[i] = filepath.Join(filepath.Dir(file), p)
			}
		}
		for i := range cfg.Lists {
			for j, src := range cfg.Lists[i].Sources {
				if !strings.Contains(src, "://") && !filepath.IsAbs(src) {
					cfg.Lists[i].Sources[j] = filepath.Join(filepath.Dir(file), src)
				}
			}
		}
	}
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("%w: %s:\n%w", ErrConfig, where, err)
	}
	return &cfg, nil
}

// unknownEnvVars returns the DNSVALVE_* variables of env that override
// none of keys (viper's keys, keyDelim-separated).
func unknownEnvVars(keys, env []string) []string {
	known := make(map[string]bool, len(keys))
	for _, k := range keys {
		known["DNSVALVE_"+strings.ToUpper(strings.ReplaceAll(k, keyDelim, "_"))] = true
	}
	var unknown []string
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(name, "DNSVALVE_") && !known[name] {
			unknown = append(unknown, name)
		}
	}
	sort.Strings(unknown)
	return unknown
}

func cleanDecodeError(err error) error {
	s := err.Error()
	s = strings.ReplaceAll(s, keyDelim, ".")
	s = strings.TrimPrefix(s, "decoding failed due to the following error(s):\n\n")
	return errors.New(s)
}

// mapKey returns the config key of a struct field (its mapstructure tag).
func mapKey(f reflect.StructField) string {
	key, _, _ := strings.Cut(f.Tag.Get("mapstructure"), ",")
	return key
}

// unknownKeys lists the keys of m (dotted paths) that t has no field for.
func unknownKeys(m map[string]any, t reflect.Type, prefix string) []string {
	fields := map[string]reflect.Type{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := mapKey(f)
		if tag == "" || tag == "-" {
			continue
		}
		fields[tag] = f.Type
	}
	var out []string
	for k, val := range m {
		ft, ok := fields[k]
		if !ok {
			out = append(out, prefix+k)
			continue
		}
		out = append(out, unknownIn(val, ft, prefix+k+".")...)
	}
	sort.Strings(out)
	return out
}

func unknownIn(val any, ft reflect.Type, prefix string) []string {
	switch ft.Kind() {
	case reflect.Struct:
		if ft == reflect.TypeOf(time.Duration(0)) {
			return nil
		}
		if sub, ok := val.(map[string]any); ok {
			return unknownKeys(sub, ft, prefix)
		}
	case reflect.Map:
		if sub, ok := val.(map[string]any); ok && ft.Elem().Kind() == reflect.Struct {
			var out []string
			for k, v := range sub {
				out = append(out, unknownIn(v, ft.Elem(), prefix+k+".")...)
			}
			return out
		}
	case reflect.Slice:
		if items, ok := val.([]any); ok && ft.Elem().Kind() == reflect.Struct {
			var out []string
			for i, it := range items {
				if sub, ok := it.(map[string]any); ok {
					out = append(out, unknownKeys(sub, ft.Elem(), fmt.Sprintf("%s%d.", prefix, i))...)
				}
			}
			return out
		}
	}
	return nil
}

// checkListen checks a listen address: an IP address (IPv6 in brackets)
// or nothing (every address), and a port number.
func checkListen(a string) error {
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return err
	}
	if host != "" {
		if _, err := netip.ParseAddr(host); err != nil {
			return err
		}
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("port %q: not a number from 0 to 65535", port)
	}
	return nil
}

// validate checks every value and joins all problems, each naming its key.
func (c *Config) validate() error {
	var errs []error
	bad := func(key, format string, a ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, a...)))
	}
	if len(c.Server.Listen) == 0 {
		bad("server.listen", "at least one address is required")
	}
	for i, a := range c.Server.Listen {
		if err := checkListen(a); err != nil {
			bad(fmt.Sprintf("server.listen[%d]", i), "%q is not IP:PORT or :PORT (%v)", a, err)
		}
	}
	for i, p := range c.Server.AllowClients {
		if _, err := parsePrefix(p); err != nil {
			bad(fmt.Sprintf("server.allow_clients[%d]", i), "%v", err)
		}
	}
	oneOf := func(key, val string, allowed ...string) {
		for _, a := range allowed {
			if val == a {
				return
			}
		}
		bad(key, "%q is not one of %s", val, strings.Join(allowed, ", "))
	}
	oneOf("server.refuse_action", c.Server.RefuseAction, "refuse", "drop")
	for i, p := range c.Server.TrustedForwarders {
		if _, err := parsePrefix(p); err != nil {
			bad(fmt.Sprintf("server.trusted_forwarders[%d]", i), "%v", err)
		}
	}
	if (c.Server.ECSClient || c.Server.ProxyProtocol) && len(c.Server.TrustedForwarders) == 0 {
		bad("server.trusted_forwarders", "ecs_client and proxy_protocol need at least one trusted forwarder")
	}
	oneOf("server.rate_limit.action", c.Server.RateLimit.Action, "refuse", "drop")
	if c.Server.RateLimit.QPS < 0 {
		bad("server.rate_limit.qps", "must not be negative")
	}
	for key, n := range map[string]int{"server.tcp_max_queries": c.Server.TCPMaxQueries,
		"server.tcp_max_connections": c.Server.TCPMaxConns, "server.tcp_max_connections_per_client": c.Server.TCPMaxConnsPerClient,
		"server.gc_min_heap_mb": c.Server.GCMinHeapMB} {
		if n < 0 {
			bad(key, "must not be negative")
		}
	}
	for i, p := range c.Server.RateLimit.Exempt {
		if _, err := parsePrefix(p); err != nil {
			bad(fmt.Sprintf("server.rate_limit.exempt[%d]", i), "%v", err)
		}
	}
	if c.HTTP.Listen != "" {
		if err := checkListen(c.HTTP.Listen); err != nil {
			bad("http.listen", "%q is not IP:PORT or :PORT (%v)", c.HTTP.Listen, err)
		}
	}
	if len(c.Upstream.Servers) == 0 {
		bad("upstream.servers", "at least one upstream is required")
	}
	oneOf("upstream.strategy", c.Upstream.Strategy, "failover", "random", "parallel")
	if c.Upstream.Timeout <= 0 {
		bad("upstream.timeout", "must be positive")
	}
	if c.Upstream.TryTimeout < 0 || c.Upstream.TryTimeout > c.Upstream.Timeout {
		bad("upstream.try_timeout", "must be within [0, upstream.timeout]")
	}
	if c.Upstream.SocketLifetime < 0 {
		bad("upstream.udp_socket_lifetime", "must not be negative")
	}
	if r := c.Upstream.RetransmitMin; r != 0 && (r < 10*time.Millisecond || r > 10*time.Second) {
		bad("upstream.udp_retransmit_min", "must be 0s (no retransmission) or within [10ms, 10s]")
	}
	if c.Upstream.MaxFails < 1 {
		bad("upstream.max_fails", "must be at least 1")
	}
	if c.Upstream.MaxConcurrent < 0 {
		bad("upstream.max_concurrent", "must not be negative")
	}
	zones := map[string]string{}
	for i, cond := range c.Upstream.Conditional {
		key := fmt.Sprintf("upstream.conditional[%d]", i)
		if len(cond.Zones) == 0 {
			bad(key+".zones", "at least one zone is required")
		}
		for j, z := range cond.Zones {
			zkey := fmt.Sprintf("%s.zones[%d]", key, j)
			fz := dns.CanonicalName(z)
			switch {
			case z == "" || fz == ".":
				bad(zkey, "%q: a zone is required (the default upstreams answer for the root)", z)
			case !validZone(fz):
				bad(zkey, "%q is not a domain name (an IDN is written in punycode, xn--...)", z)
			case zones[fz] != "":
				bad(zkey, "zone %s is already in %s", fz, zones[fz])
			default:
				zones[fz] = zkey
			}
		}
		if len(cond.Servers) == 0 {
			bad(key+".servers", "at least one upstream is required")
		}
	}
	if c.Cache.Size < 0 {
		bad("cache.size", "must not be negative")
	}
	for key, d := range map[string]time.Duration{"cache.min_ttl": c.Cache.MinTTL, "cache.max_ttl": c.Cache.MaxTTL,
		"cache.negative_ttl": c.Cache.NegativeTTL, "cache.serve_stale": c.Cache.ServeStale,
		"cache.stale_client_timeout": c.Cache.StaleClientTimeout, "cache.failure_ttl": c.Cache.FailureTTL, "block_ttl": c.BlockTTL} {
		if d < 0 {
			bad(key, "must not be negative")
		}
	}
	if c.Cache.FailureTTL > cache.MaxFailureTTL || c.Cache.FailureTTL > 0 && c.Cache.FailureTTL < time.Second {
		bad("cache.failure_ttl", "%s: want 0s (off) or 1s to %s (RFC 9520)", c.Cache.FailureTTL, cache.MaxFailureTTL)
	}
	if c.Cache.MaxTTL > 0 && c.Cache.MinTTL > c.Cache.MaxTTL {
		bad("cache.min_ttl", "%s is above cache.max_ttl %s", c.Cache.MinTTL, c.Cache.MaxTTL)
	}
	seen := map[string]bool{}
	for i, l := range c.Lists {
		key := fmt.Sprintf("lists[%d]", i)
		if l.Name == "" {
			bad(key+".name", "is required")
		} else if seen[l.Name] {
			bad(key+".name", "duplicate list name %q", l.Name)
		}
		seen[l.Name] = true
		if len(l.Sources) == 0 {
			bad(key+".sources", "at least one source is required")
		}
		if l.Format != "" {
			oneOf(key+".format", l.Format, "auto", "hosts", "domains", "wildcard", "adblock", "rpz", "regex")
		}
		if l.Refresh < 0 {
			bad(key+".refresh", "must not be negative")
		}
	}
	for i, g := range c.Clients.Groups {
		key := fmt.Sprintf("clients.groups[%d]", i)
		if g.Name == "" {
			bad(key+".name", "is required")
		}
		for j, p := range g.CIDRs {
			if _, err := parsePrefix(p); err != nil {
				bad(fmt.Sprintf("%s.cidrs[%d]", key, j), "%v", err)
			}
		}
		if _, ok := c.Policies[g.Policy]; !ok && g.Policy != "default" {
			bad(key+".policy", "unknown policy %q", g.Policy)
		}
	}
	for i, p := range c.Clients.NamesFiles {
		if p == "" {
			bad(fmt.Sprintf("clients.names_files[%d]", i), "empty path")
		}
	}
	for ip := range c.Clients.Names {
		if _, err := netip.ParseAddr(ip); err != nil {
			bad("clients.names."+ip, "not an IP address")
		}
	}
	for name, p := range c.Policies {
		key := "policies." + name
		if p.Mode != "" {
			oneOf(key+".mode", p.Mode, "open", "allowlist")
		}
		if p.BlockResponse != "" {
			oneOf(key+".block_response", p.BlockResponse, "nxdomain", "nodata", "refused", "sinkhole")
		}
		if p.CNAME != "" {
			oneOf(key+".cname", p.CNAME, "inspect", "trust")
		}
		if p.Detect != "" {
			oneOf(key+".detect", p.Detect, "off", "observe", "enforce")
		}
		for i, t := range p.BlockQtypes {
			if _, err := policy.ParseQtype(t); err != nil {
				bad(fmt.Sprintf("%s.block_qtypes[%d]", key, i), "%v", err)
			}
		}
	}
	for i, a := range c.Sinkhole {
		if _, err := netip.ParseAddr(a); err != nil {
			bad(fmt.Sprintf("sinkhole[%d]", i), "%q is not an IP address", a)
		}
	}
	if c.Detect.AlertScore < 0 || c.Detect.AlertScore > 1 {
		bad("detect.alert_score", "must be within [0, 1]")
	}
	if c.Detect.BlockScore < 0 || c.Detect.BlockScore > 1 {
		bad("detect.block_score", "must be within [0, 1]")
	} else if c.Detect.BlockScore < c.Detect.AlertScore {
		bad("detect.block_score", "%v is below detect.alert_score (%v): enforce policies would block tunnels that raise no alert", c.Detect.BlockScore, c.Detect.AlertScore)
	}
	if c.Detect.Window <= 0 {
		bad("detect.window", "must be positive")
	}
	if c.Detect.MaxPairs < 1 {
		bad("detect.max_pairs", "must be at least 1")
	}
	if c.Detect.NewlySeen.MaxDomains < 0 {
		bad("detect.newly_seen.max_domains", "must be 0 (no bound) or more")
	}
	if s := c.Detect.NewlySeen.Store; s != "memory:" && !strings.HasPrefix(s, "file:") && !strings.HasPrefix(s, "redis://") && !strings.HasPrefix(s, "rediss://") {
		bad("detect.newly_seen.store", "%q is not memory:, file:PATH or redis://HOST:PORT/DB", s)
	}
	isRedis := func(u string) bool { return strings.HasPrefix(u, "redis://") || strings.HasPrefix(u, "rediss://") }
	if s := c.Detect.Shared; s != "" {
		if !isRedis(s) {
			bad("detect.shared", "must be \"\" (off), redis://[USER:PASSWORD@]HOST:PORT[/DB] or rediss://...")
		} else if _, err := url.Parse(s); err != nil {
			bad("detect.shared", "not a URL (%v)", redact.URLError(err))
		}
	}
	if c.Detect.SharedSync < 50*time.Millisecond || c.Detect.SharedSync > 10*time.Second {
		bad("detect.shared_sync", "%s is not within [50ms, 10s]", c.Detect.SharedSync)
	}
	if c.Detect.SharedPrefix == "" {
		bad("detect.shared_prefix", "must not be empty")
	}
	if ca := c.Detect.SharedTLSCA; ca != "" {
		if !strings.HasPrefix(c.Detect.Shared, "rediss://") && !strings.HasPrefix(c.Detect.NewlySeen.Store, "rediss://") {
			bad("detect.shared_tls_ca", "set, but neither detect.shared nor detect.newly_seen.store is a rediss:// URL")
		} else if _, err := os.Stat(ca); err != nil {
			bad("detect.shared_tls_ca", "%v", err)
		}
	}
	if w := c.Alerts.Webhook; w != "" {
		if u, err := url.Parse(w); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("alerts.webhook", "must be \"\" (off) or an http:// or https:// URL")
		}
	}
	for i, a := range c.Alerts.Policy {
		if l := strings.ToLower(a); l != "alert" && l != "block" {
			bad(fmt.Sprintf("alerts.policy[%d]", i), "%q is not alert or block", a)
		}
	}
	if c.Alerts.PolicyInterval < 0 {
		bad("alerts.policy_interval", "must be 0 (every query) or more")
	}
	if c.Querylog.Buffer < 1 {
		bad("querylog.buffer", "must be at least 1")
	}
	oneOf("log.level", c.Log.Level, "debug", "info", "warn", "error")
	oneOf("log.format", c.Log.Format, "text", "json")
	return errors.Join(errs...)
}

// parsePrefix accepts a CIDR or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return p, fmt.Errorf("%q is not a CIDR: %w", s, err)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR: %w", s, err)
	}
	return netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()), nil
}

// validZone reports whether the fully qualified, lower-case name z is a
// domain name a zone can have: at most 255 bytes on the wire, labels of
// letters, digits, hyphens, underscores and "/" (RFC 2317 classless
// reverse zones, "0/25.2.0.192.in-addr.arpa"), no wildcard, no escapes.
func validZone(z string) bool {
	if _, ok := dns.IsDomainName(z); !ok {
		return false
	}
	for _, l := range dns.SplitDomainName(z) {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '/') {
				return false
			}
		}
	}
	return true
}
