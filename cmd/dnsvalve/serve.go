package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/pflag"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/policy/lists"
	"github.com/dnsvalve/dnsvalve/resolver"
	"github.com/dnsvalve/dnsvalve/resolver/cache"
	"github.com/dnsvalve/dnsvalve/resolver/upstream"
)

// serveFlags declares the flags of serve (and of the commands that load a
// config: check and score).
func serveFlags(name string) (*pflag.FlagSet, *string) {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	cfgFile := fs.String("config", "", "YAML config file (default: the embedded default config)")
	fs.StringArray("listen", nil, "listen address HOST:PORT for UDP and TCP (repeatable; overrides server.listen)")
	fs.StringArray("upstream", nil, "upstream URL: udp://IP:53, tcp://IP:53, tls://IP:853#NAME, https://HOST/dns-query (repeatable; overrides upstream.servers)")
	fs.String("http", "", "HTTP address for /metrics, /healthz, /readyz and /api (overrides http.listen)")
	return fs, cfgFile
}

func serveCmd(args []string, stderr io.Writer) int {
	fs, cfgFile := serveFlags("serve")
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return 2
	}
	readAt := time.Now() // a file changed from now on is read again once watched
	cfg, err := loadConfig(*cfgFile, fs)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve: %v\n", err)
		return exitStatus(err)
	}
	cfg.readAt = readAt
	logger := newLogger(cfg.Log, stderr)
	if len(cfg.UnknownEnv) > 0 {
		logger.Warn("environment variables with dnsvalve's prefix that name no config key: ignored", "vars", strings.Join(cfg.UnknownEnv, ","))
	}
	defer startGCFloor(uint64(cfg.Server.GCMinHeapMB)<<20, logger)()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := newApp(ctx, cfg, fs, logger)
	if err != nil {
		logger.Error("start failed", "err", err)
		fmt.Fprintf(stderr, "dnsvalve: %v\n", err)
		return exitStatus(err)
	}
	if err := a.run(ctx); err != nil {
		logger.Error("stopped with error", "err", err)
		return 1
	}
	return 0
}

func newLogger(c LogConfig, w io.Writer) *slog.Logger {
	var lvl slog.Level
	_ = lvl.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: lvl}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// app is one running dnsvalve: everything built from the config, and the
// reloader that swaps what can change without a restart.
type app struct {
	flags   *pflag.FlagSet
	logger  *slog.Logger
	reg     *prometheus.Registry
	metReg  *recordingRegisterer // a.reg, remembering what was registered (tests, docs)
	metrics *appMetrics

	cfg    atomic.Pointer[Config]
	router atomic.Pointer[upstream.Router]
	upm    *upstream.Metrics
	cache  *cache.Cache
	lists  *lists.Manager
	store  *policy.Store
	server *resolver.Server
	http   *http.Server
	obs    *observer

	// swapMu serialises what compiles and swaps the policy (a reload, a
	// list refresh), so that the last swap is of the newest config.
	swapMu sync.Mutex
	// names reads clients.names_files; fileNames are the names in force
	// (the running snapshot's), replaced under swapMu.
	names     *namesFiles
	fileNames map[netip.Addr]string
	reload    chan string
	reloaded  chan struct{} // a reload swapped the config: the file watch follows its files
	// bg is cancelled when shutdown begins (set by run; nil before).
	bg context.Context
	// loadedAt is when the first read of the config's files began (the
	// config file's, else the lists'): a file changed since then, before
	// the file watch started, is read again.
	loadedAt time.Time
	started  chan struct{} // closed once the listeners are up
}

func newApp(ctx context.Context, cfg *Config, flags *pflag.FlagSet, logger *slog.Logger) (*app, error) {
	a := &app{flags: flags, logger: logger, reg: prometheus.NewRegistry(), reload: make(chan string, 1),
		reloaded: make(chan struct{}, 1), started: make(chan struct{})}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metReg = &recordingRegisterer{Registerer: a.reg}
	a.metrics = newAppMetrics(a.metReg)
	a.cfg.Store(cfg)

	a.upm = upstream.NewMetrics(a.metReg)
	r, err := a.buildRouter(cfg)
	if err != nil {
		return nil, err
	}
	a.router.Store(r)
	a.metReg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Namespace: "dnsvalve", Subsystem: "upstream", Name: "default_healthy",
		Help: "1 while an upstream of upstream.servers (the default group, which /readyz needs) is up, 0 while all of them are down.",
	}, func() float64 {
		if a.router.Load().Healthy() {
			return 1
		}
		return 0
	}))

	cc := cache.Config{Size: cfg.Cache.Size, MinTTL: cfg.Cache.MinTTL, MaxTTL: cfg.Cache.MaxTTL,
		NegativeTTL: cfg.Cache.NegativeTTL, ServeStale: cfg.Cache.ServeStale,
		StaleClientTimeout: cfg.Cache.StaleClientTimeout, Prefetch: cfg.Cache.Prefetch, FailureTTL: cfg.Cache.FailureTTL,
		// The upstream group's budget: one deadline for the whole exchange
		// (the group keeps the cache's context instead of making its own).
		UpstreamTimeout: cfg.Upstream.Timeout}
	a.cache, err = cache.New(cc, cache.ExchangerFunc(a.exchange), cache.NewMetrics(a.metReg), logger, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: cache: %w", ErrConfig, err)
	}

	a.lists = newListsManager(cfg, a.metReg, logger)
	a.loadedAt = cfg.readAt
	if a.loadedAt.IsZero() {
		a.loadedAt = time.Now()
	}
	a.names = newNamesFiles(a.metReg, logger)
	snap, err := a.compile(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.store = policy.NewStore(snap)
	pm := policy.NewMetrics(a.metReg)

	a.obs, err = newObserver(cfg, a.metReg, logger)
	if err != nil {
		return nil, err
	}
	a.obs.policyAl.Prime(listCategories(cfg))
	access, err := accessConfig(cfg)
	if err != nil {
		return nil, err
	}
	sm := resolver.NewMetrics(a.metReg)
	// The chain, outermost first. Order lives here, not in config:
	//   access: clients outside server.allow_clients are refused; rate limits.
	//   unserved: other classes than IN (CHAOS version.bind, ...) and zone
	//           transfers get REFUSED with EDE 21, meta types FORMERR; never
	//           scored or forwarded.
	//   detect: scores every query, cache hits included (enforce mode blocks).
	//   policy: allow / block / alert per the client's policy; checks the
	//           answer's CNAME chain and addresses on the way back.
	//   minimal ANY: ANY gets the RFC 8482 HINFO answer, never forwarded.
	//   cache+forward (innermost): cached answer, or the upstream group with
	//           identical misses coalesced.
	// The Server around the chain observes every outcome (metrics, query log).
	h := resolver.Chain(resolver.Forward(a.cache),
		resolver.Access(access, sm, time.Now),
		resolver.Unserved(sm),
		a.obs.detectStage(a.store),
		resolver.Policy(a.store, pm),
		resolver.MinimalANY(),
	)
	scfg := resolver.ServerConfig{
		Listen: cfg.Server.Listen, TCPIdleTimeout: cfg.Server.TCPIdleTimeout, TCPMaxQueries: cfg.Server.TCPMaxQueries,
		TCPMaxConns: cfg.Server.TCPMaxConns, TCPMaxConnsPerClient: cfg.Server.TCPMaxConnsPerClient,
		ECSClient: cfg.Server.ECSClient, ProxyProtocol: cfg.Server.ProxyProtocol,
		Allowed: access.Allows, DropOutsiders: access.Drop,
	}
	for _, f := range cfg.Server.TrustedForwarders {
		p, err := parsePrefix(f)
		if err != nil {
			return nil, fmt.Errorf("%w: server.trusted_forwarders: %w", ErrConfig, err)
		}
		scfg.TrustedForwarders = append(scfg.TrustedForwarders, p)
	}
	a.server = resolver.NewServer(scfg, h, a.obs, sm, logger, time.Now)
	a.server.SetIdentifier(storeIdentifier{a.store})
	return a, nil
}

// exchange forwards through the current upstream groups (swapped on
// reload).
func (a *app) exchange(ctx context.Context, m *dns.Msg) (*dns.Msg, string, error) {
	return a.router.Load().Exchange(ctx, m)
}

type storeIdentifier struct{ s *policy.Store }

func (i storeIdentifier) Identify(addr netip.Addr) (string, string, string) {
	return i.s.Load().Identify(addr)
}

// systemdResolvConf lists the upstreams systemd-resolved forwards to.
const systemdResolvConf = "/run/systemd/resolve/resolv.conf"

// buildRouter builds the upstream groups of cfg: the default one and one
// per upstream.conditional entry, each with the settings of upstream. An
// upstream may be in one group only (its metrics and health are per URL).
func (a *app) buildRouter(cfg *Config) (*upstream.Router, error) {
	var built []*upstream.Group
	fail := func(err error) (*upstream.Router, error) {
		for _, g := range built {
			_ = g.Close()
		}
		return nil, err
	}
	in := map[string]string{} // upstream URL -> the key of its group
	group := func(key string, servers []string, probeZone string) (*upstream.Group, error) {
		g, err := a.buildGroup(cfg, key, servers, probeZone, in)
		if err == nil {
			built = append(built, g)
		}
		return g, err
	}
	def, err := group("upstream.servers", cfg.Upstream.Servers, "")
	if err != nil {
		return fail(err)
	}
	var conds []upstream.Conditional
	for i, c := range cfg.Upstream.Conditional {
		g, err := group(fmt.Sprintf("upstream.conditional[%d].servers", i), c.Servers, c.Zones[0])
		if err != nil {
			return fail(err)
		}
		conds = append(conds, upstream.Conditional{Zones: c.Zones, Group: g})
	}
	r, err := upstream.NewRouter(def, conds)
	if err != nil {
		return fail(fmt.Errorf("%w: upstream.conditional: %w", ErrConfig, err))
	}
	return r, nil
}

// upstreamUp runs when an upstream marked down is up again: the failures
// the cache remembers from the outage are forgotten, so that the names
// fail no longer than the outage (not up to cache.failure_ttl after it).
func (a *app) upstreamUp() {
	if a.cache != nil {
		a.cache.ForgetFailures()
	}
}

// buildGroup builds the group of servers (the config key for errors); its
// health probes ask for probeZone's SOA ("": the root's NS). in maps every
// upstream URL already in a group to that group's key.
func (a *app) buildGroup(cfg *Config, key string, servers []string, probeZone string, in map[string]string) (*upstream.Group, error) {
	var ups []upstream.Upstream
	var all []string
	for _, s := range servers {
		addrs := []string{s}
		if s == "resolv.conf" || strings.HasPrefix(s, "resolv.conf:") {
			path := "/etc/resolv.conf"
			if p, ok := strings.CutPrefix(s, "resolv.conf:"); ok {
				path = p
			}
			var err error
			addrs, err = upstream.ParseResolvConf(path)
			if errors.Is(err, upstream.ErrNoNameservers) && s == "resolv.conf" {
				// Only loopback stubs (systemd-resolved's 127.0.0.53): use
				// the upstreams the stub itself forwards to.
				if alt, altErr := upstream.ParseResolvConf(systemdResolvConf); altErr == nil {
					addrs, err = alt, nil
				}
			}
			if err != nil {
				return nil, fmt.Errorf("%w: %s: %w", ErrConfig, key, err)
			}
		}
		all = append(all, addrs...)
	}
	// Each try gets its share of the budget (upstream.timeout), so that
	// failover reaches the next upstream when the first is silent.
	try := cfg.Upstream.TryTimeout
	if try <= 0 {
		try = max(cfg.Upstream.Timeout/time.Duration(len(all)), min(cfg.Upstream.Timeout, 500*time.Millisecond))
	}
	closeAll := func() {
		for _, u := range ups {
			if c, ok := u.(io.Closer); ok {
				_ = c.Close()
			}
		}
	}
	for _, addr := range all {
		retransmitMin := cfg.Upstream.RetransmitMin
		if retransmitMin == 0 {
			retransmitMin = -1 // the config's "off"
		}
		u, err := upstream.New(addr, upstream.Options{Timeout: try, Randomize0x20: cfg.Upstream.CaseRandomization,
			SocketLifetime: cfg.Upstream.SocketLifetime, RetransmitMin: retransmitMin, Metrics: a.upm})
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, key, err)
		}
		ups = append(ups, u)
		switch other := in[u.String()]; {
		case other == key:
			err = fmt.Errorf("%s is listed twice", u)
		case other != "":
			// Its metrics and health are per URL.
			err = fmt.Errorf("%s is in %s already: an upstream URL can be in one group only "+
				"(list all its zones in one entry; when it comes from resolv.conf, list upstream.servers explicitly)", u, other)
		}
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("%w: %s: %w", ErrConfig, key, err)
		}
		in[u.String()] = key
	}
	g, err := upstream.NewGroup(ups, upstream.GroupConfig{Strategy: cfg.Upstream.Strategy, Timeout: cfg.Upstream.Timeout,
		MaxFails: cfg.Upstream.MaxFails, MaxConcurrent: cfg.Upstream.MaxConcurrent, ProbeZone: probeZone,
		OnUp: a.upstreamUp}, a.upm, a.logger, time.Now)
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("%w: %s: %w", ErrConfig, key, err)
	}
	return g, nil
}

// compile loads the lists and the names files and compiles the policy
// snapshot for cfg.
func (a *app) compile(ctx context.Context, cfg *Config) (*policy.Snapshot, error) {
	loaded, err := a.loadLists(ctx, cfg)
	if err != nil {
		return nil, err
	}
	a.fileNames = a.names.load(cfg.Clients.NamesFiles)
	a.names.commit(cfg.Clients.NamesFiles)
	return a.compileWith(cfg, loaded, a.fileNames)
}

// loadLists has the list manager load cfg's lists. On an error nothing
// changed.
func (a *app) loadLists(ctx context.Context, cfg *Config) (map[string]*lists.List, error) {
	lcfgs := make([]lists.Config, 0, len(cfg.Lists))
	for _, l := range cfg.Lists {
		lcfgs = append(lcfgs, lists.Config{Name: l.Name, Category: l.Category, Sources: l.Sources, Format: l.Format,
			Refresh: l.Refresh, MaxBytes: l.MaxBytes})
	}
	loaded, err := a.lists.Load(ctx, lcfgs)
	if err != nil {
		return nil, fmt.Errorf("%w: lists: %w", ErrConfig, err)
	}
	return loaded, nil
}

func (a *app) compileWith(cfg *Config, loaded map[string]*lists.List, fileNames map[netip.Addr]string) (*policy.Snapshot, error) {
	ms := make(map[string]policy.Matcher, len(loaded))
	for n, l := range loaded {
		ms[n] = l
	}
	pc := policy.Config{Names: cfg.Clients.Names, FileNames: fileNames, Policies: map[string]policy.PolicyConfig{}, BlockTTL: cfg.BlockTTL}
	for _, s := range cfg.Sinkhole {
		ad, _ := netip.ParseAddr(s)
		pc.Sinkhole = append(pc.Sinkhole, ad)
	}
	for _, g := range cfg.Clients.Groups {
		pc.Groups = append(pc.Groups, policy.GroupConfig{Name: g.Name, CIDRs: g.CIDRs, Policy: g.Policy})
	}
	// Conditional zones are answered by the company's own servers, with
	// its private addresses (a split-horizon corp.example.com too): no
	// rebinding there.
	var condZones []string
	for _, c := range cfg.Upstream.Conditional {
		condZones = append(condZones, c.Zones...)
	}
	for name, p := range cfg.Policies {
		pp := policy.PolicyConfig{Mode: p.Mode, Allow: p.Allow, Block: p.Block, Alert: p.Alert,
			BlockResponse: p.BlockResponse, CNAME: p.CNAME, Rebinding: p.Rebinding,
			RebindingExempt: append(slices.Clone(p.RebindingExempt), condZones...), Detect: p.Detect,
			BlockQtypes: p.BlockQtypes}
		pc.Policies[name] = pp
	}
	snap, err := policy.Compile(pc, ms)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	return snap, nil
}

func accessConfig(cfg *Config) (resolver.AccessConfig, error) {
	ac := resolver.AccessConfig{Drop: cfg.Server.RefuseAction == "drop", RateQPS: cfg.Server.RateLimit.QPS,
		RateBurst: cfg.Server.RateLimit.Burst, RateDrop: cfg.Server.RateLimit.Action == "drop"}
	for _, s := range cfg.Server.AllowClients {
		p, err := parsePrefix(s)
		if err != nil {
			return ac, fmt.Errorf("%w: server.allow_clients: %w", ErrConfig, err)
		}
		ac.Allow = append(ac.Allow, p)
	}
	for _, s := range cfg.Server.RateLimit.Exempt {
		p, err := parsePrefix(s)
		if err != nil {
			return ac, fmt.Errorf("%w: server.rate_limit.exempt: %w", ErrConfig, err)
		}
		ac.Exempt = append(ac.Exempt, p)
	}
	return ac, nil
}

// run starts the listeners and the HTTP server, then serves until ctx is
// done (SIGTERM/SIGINT), reloading on SIGHUP, config-file changes and list
// refreshes.
func (a *app) run(ctx context.Context) error {
	cfg := a.cfg.Load()
	if err := a.server.Start(ctx); err != nil {
		return err
	}
	// bg lives until shutdown begins: list loads and downloads (timers,
	// API requests) stop then.
	bg, cancelBG := context.WithCancel(context.Background())
	defer cancelBG()
	a.bg = bg
	if cfg.HTTP.Listen != "" {
		if err := a.startHTTP(cfg); err != nil {
			_ = a.server.Shutdown(context.Background())
			return err
		}
	}
	var wg sync.WaitGroup
	wg.Go(func() { a.lists.Run(bg, a.listsChanged) })
	// Watching before the listeners count as started: a list written
	// from then on is seen.
	if fw := a.newFileWatch(); fw != nil {
		fw.catchUp(a.loadedAt)
		wg.Go(func() { fw.run(bg) })
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	close(a.started)
	a.logger.Info("dnsvalve started", "version", version, "config", displayFile(cfg.File),
		"listen", cfg.Server.Listen, "http", cfg.HTTP.Listen, "upstreams", a.router.Load().Status())

	for {
		select {
		case <-ctx.Done():
			a.logger.Info("shutting down: finishing queries in flight")
			cancelBG()
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := a.server.Shutdown(sctx)
			if a.http != nil {
				err = errors.Join(err, a.http.Shutdown(sctx))
			}
			err = errors.Join(err, a.obs.Close(sctx))
			cancel()
			wg.Wait()
			a.cache.Close()
			err = errors.Join(err, a.router.Load().Close())
			a.logger.Info("stopped")
			return err
		case <-hup:
			_ = a.reloadConfig(ctx, "SIGHUP")
		case why := <-a.reload:
			_ = a.reloadConfig(ctx, why)
		}
	}
}

// background returns the context for work an API request starts that must
// not end with the request (a client that hangs up does not cut a reload
// short) but must end with the process.
func (a *app) background() context.Context {
	if a.bg != nil {
		return a.bg
	}
	return context.Background()
}

func displayFile(f string) string {
	if f == "" {
		return "embedded default"
	}
	return f
}

// listsChanged swaps in a snapshot compiled with refreshed lists. It runs
// on the list manager's goroutine, so it holds swapMu: a config reload
// between the refresh and this swap would otherwise be undone by a
// snapshot of the old config. It compiles the manager's current lists,
// not the set the refresh saw (a reload may have added or dropped lists
// since).
func (a *app) listsChanged(map[string]*lists.List) {
	_ = a.swapLists()
}

// swapLists compiles the running config with the manager's current lists
// and swaps the policy; see listsChanged.
func (a *app) swapLists() error {
	a.swapMu.Lock()
	defer a.swapMu.Unlock()
	snap, err := a.compileWith(a.cfg.Load(), a.lists.Lists(), a.fileNames)
	if err != nil {
		a.logger.Error("list refresh: policy compile failed, keeping the running policy", "err", err)
		a.metrics.reloads.WithLabelValues("error").Inc()
		return err
	}
	a.store.Swap(snap)
	a.logger.Info("lists refreshed, policy swapped")
	return nil
}

// reloadConfig re-reads the config file, validates it, loads lists and
// compiles a new policy; only when all of that works is anything swapped.
// The error says why nothing was.
func (a *app) reloadConfig(ctx context.Context, why string) error {
	a.swapMu.Lock()
	defer a.swapMu.Unlock()
	old := a.cfg.Load()
	cfg, snap, r, names, err := a.prepareReload(ctx, old)
	if err != nil {
		a.metrics.reloads.WithLabelValues("error").Inc()
		a.logger.Error("configuration reload failed, keeping the running configuration", "trigger", why, "err", err)
		return err
	}
	a.store.Swap(snap)
	a.fileNames = names
	a.names.commit(cfg.Clients.NamesFiles)
	if r != nil {
		a.cache.SetUpstreamTimeout(cfg.Upstream.Timeout)
		prev := a.router.Swap(r)
		a.forgetUpstreams(prev, r)
		if !reflect.DeepEqual(old.Upstream.Conditional, cfg.Upstream.Conditional) {
			// Answers cached (or kept stale) from the groups a name went
			// to before must not outlive the move.
			a.cache.Purge()
			a.logger.Info("conditional forwarding changed: cache purged")
		} else {
			// New upstreams are worth asking again at once.
			a.cache.ForgetFailures()
		}
		// Let queries already using the old group finish first.
		time.AfterFunc(2*old.Upstream.Timeout, func() { _ = prev.Close() })
	}
	a.cfg.Store(cfg)
	a.obs.policyAl.Prime(listCategories(cfg))
	a.warnRestartNeeded(old, cfg)
	a.metrics.reloads.WithLabelValues("ok").Inc()
	a.metrics.lastReload.SetToCurrentTime()
	a.logger.Info("configuration reloaded", "trigger", why, "config", displayFile(cfg.File))
	// After the log line, so that the watch's lines follow it.
	select {
	case a.reloaded <- struct{}{}:
	default:
	}
	return nil
}

// prepareReload reads the config file again and builds what a reload
// swaps in: the config, the policy compiled with its lists and names
// files, a router when the upstreams changed (nil when not), and the names
// files' names. On an error nothing running changed: the list manager is
// back on the running config's lists.
func (a *app) prepareReload(ctx context.Context, old *Config) (*Config, *policy.Snapshot, *upstream.Router, map[netip.Addr]string, error) {
	cfg, err := loadConfig(old.File, a.flags)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	loaded, err := a.loadLists(ctx, cfg)
	if err != nil {
		return nil, nil, nil, nil, err
	}
	names := a.names.load(cfg.Clients.NamesFiles)
	snap, err := a.compileWith(cfg, loaded, names)
	if err != nil {
		a.restoreLists(ctx, old)
		return nil, nil, nil, nil, err
	}
	if !upstreamChanged(old.Upstream, cfg.Upstream) {
		return cfg, snap, nil, names, nil
	}
	r, err := a.buildRouter(cfg)
	if err != nil {
		a.restoreLists(ctx, old)
		return nil, nil, nil, nil, err
	}
	return cfg, snap, r, names, nil
}

// restoreLists puts the list manager back on the running config's lists
// after a reload that loaded a new config's lists failed later, so that
// the next list refresh compiles the running config against its own
// lists. Lists the failed config did not change cost a stat per file.
func (a *app) restoreLists(ctx context.Context, running *Config) {
	if _, err := a.loadLists(ctx, running); err != nil {
		// The running config's lists loaded before: only a bug gets here.
		a.logger.Error("restoring the running configuration's lists after a failed reload", "err", err)
	}
}

func (a *app) warnRestartNeeded(old, cfg *Config) {
	if keys := restartKeys(old, cfg); len(keys) > 0 {
		a.logger.Warn("settings changed that apply only at start: restart dnsvalve to apply them", "keys", strings.Join(keys, ","))
	}
}

// restartSections are the config sections a reload does not apply.
var restartSections = map[string]bool{
	"server": true, "http": true, "cache": true, "state_dir": true,
	"detect": true, "alerts": true, "querylog": true, "log": true,
}

// restartKeys returns the keys of restartSections whose values differ
// between old and cfg, as deep as the config's structs go
// ("server.rate_limit.burst").
func restartKeys(old, cfg *Config) []string {
	var keys []string
	ov, nv := reflect.ValueOf(*old), reflect.ValueOf(*cfg)
	for i := range ov.NumField() {
		if key := mapKey(ov.Type().Field(i)); restartSections[key] {
			keys = changedKeys(keys, key, ov.Field(i), nv.Field(i))
		}
	}
	return keys
}

func changedKeys(keys []string, key string, a, b reflect.Value) []string {
	if reflect.DeepEqual(a.Interface(), b.Interface()) {
		return keys
	}
	if a.Kind() != reflect.Struct {
		return append(keys, key)
	}
	for i := range a.NumField() {
		if sub := mapKey(a.Type().Field(i)); sub != "" && sub != "-" && a.Type().Field(i).IsExported() {
			keys = changedKeys(keys, key+"."+sub, a.Field(i), b.Field(i))
		}
	}
	return keys
}

// fileWatch queues a reload when the config file or a list source file
// changes (debounced): an edited block list applies within a second, with
// no signal, whatever its refresh interval. It watches their directories
// (and those of symlink targets), so editors that replace a file and
// Kubernetes ConfigMap symlink swaps ("..data") are seen, and follows the
// files each reload's config names. A directory that is missing or goes
// away is watched again once it is back, every watchRetry, and a reload
// then reads what changed meanwhile; so does an overflow of the kernel's
// event queue. The reload re-reads only the list files whose size or
// time changed.
type fileWatch struct {
	a       *app
	w       *fsnotify.Watcher
	watched map[string]bool   // directories with a watch
	warned  map[string]bool   // directories that could not be watched, warned about once
	files   map[string]string // path -> the reload trigger a change to it is
}

// watchRetry is how often directories that could not be watched are tried
// again.
const watchRetry = 2 * time.Second

// newFileWatch starts watching the running config's files (nil when the
// system has no file watch: reloads then need SIGHUP or the API).
func (a *app) newFileWatch() *fileWatch {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		a.logger.Warn("file watch unavailable; reload with SIGHUP", "err", err)
		return nil
	}
	fw := &fileWatch{a: a, w: w, watched: map[string]bool{}, warned: map[string]bool{}}
	fw.sync()
	return fw
}

// sync watches the directories of the running config's files and drops
// the others. It reports whether it added a watch.
func (fw *fileWatch) sync() bool {
	fw.files = watchedFiles(fw.a.cfg.Load())
	dirs := map[string]bool{}
	for f := range fw.files {
		dirs[filepath.Dir(f)] = true
	}
	added := false
	for d := range dirs {
		if fw.watched[d] {
			continue
		}
		if err := fw.w.Add(d); err != nil {
			if !fw.warned[d] {
				fw.warned[d] = true
				fw.a.logger.Warn("cannot watch a directory of the config or list files; trying again every 2s", "dir", d, "err", err)
			}
			continue
		}
		delete(fw.warned, d)
		fw.watched[d] = true
		added = true
		fw.a.logger.Debug("watching directory", "dir", d)
	}
	for d := range fw.watched {
		if !dirs[d] {
			_ = fw.w.Remove(d)
			delete(fw.watched, d)
		}
	}
	return added
}

// catchUp queues a reload when a watched file changed since since (the
// first load began) but before the watch started: that change raised no
// event. Called once, once the watch is on and before it runs.
func (fw *fileWatch) catchUp(since time.Time) {
	for _, f := range slices.Sorted(maps.Keys(fw.files)) {
		if fi, err := os.Stat(f); err == nil && !fi.ModTime().Before(since) {
			select {
			case fw.a.reload <- fw.files[f]:
			default: // a reload is queued already: it reads every file
			}
			return
		}
	}
}

// run handles events until ctx is done.
func (fw *fileWatch) run(ctx context.Context) {
	defer fw.w.Close()
	var timer *time.Timer
	queue := func(why string, after time.Duration) {
		if timer != nil {
			timer.Stop()
		}
		timer = time.AfterFunc(after, func() {
			select {
			case fw.a.reload <- why:
			default: // a reload is queued already: it reads every file
			}
		})
	}
	retry := time.NewTicker(watchRetry)
	defer retry.Stop()
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return
		case <-fw.a.reloaded:
			// A watch added now missed what changed since the reload read
			// the files: read them again.
			if fw.sync() {
				queue("file watch added", 0)
			}
		case <-retry.C:
			if len(fw.warned) > 0 && fw.sync() {
				queue("file watch added", 0)
			}
		case ev, ok := <-fw.w.Events:
			if !ok {
				return
			}
			if fw.watched[filepath.Clean(ev.Name)] && ev.Op&(fsnotify.Remove|fsnotify.Rename) != 0 {
				// The directory itself went: its watch is gone. The retry
				// restores it when the directory is back.
				delete(fw.watched, filepath.Clean(ev.Name))
				fw.warned[filepath.Clean(ev.Name)] = true
				continue
			}
			if why := changeOf(fw.files, ev.Name); why != "" {
				queue(why, 500*time.Millisecond)
			}
		case err, ok := <-fw.w.Errors:
			if !ok {
				return
			}
			fw.a.logger.Warn("file watch", "err", err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				queue("file watch overflow", 0)
			}
		}
	}
}

// watchedFiles returns the files a reload of cfg reads: the config file
// and the local list sources (and, for symlinks, their targets), each with
// the reload trigger a change to it is logged as.
func watchedFiles(cfg *Config) map[string]string {
	files := map[string]string{}
	add := func(path, why string) {
		path = filepath.Clean(path)
		files[path] = why
		if target, err := filepath.EvalSymlinks(path); err == nil && target != path {
			files[target] = why
		}
	}
	if cfg.File != "" {
		add(cfg.File, "file change")
	}
	for _, l := range cfg.Lists {
		for _, src := range l.Sources {
			if !strings.Contains(src, "://") {
				add(src, "list file change: "+l.Name)
			}
		}
	}
	for _, p := range cfg.Clients.NamesFiles {
		add(p, "names file change")
	}
	return files
}

// changeOf returns the reload trigger for an event on path ("" when none
// of files is concerned). A Kubernetes ConfigMap volume swaps the whole
// directory through "..data"-style entries: that concerns every watched
// file in it, and the trigger is the config file's when it is there, else
// the first in order.
func changeOf(files map[string]string, path string) string {
	path = filepath.Clean(path)
	if why, ok := files[path]; ok {
		return why
	}
	if !strings.HasPrefix(filepath.Base(path), "..") {
		return ""
	}
	dir, best := filepath.Dir(path), ""
	for f, why := range files {
		if filepath.Dir(f) != dir {
			continue
		}
		if why == "file change" {
			return why
		}
		if best == "" || why < best {
			best = why
		}
	}
	return best
}

func upstreamChanged(a, b UpstreamConfig) bool {
	return !reflect.DeepEqual(a, b)
}

// forgetUpstreams deletes the metric series of upstreams that the new
// group no longer has, so a removed upstream does not stay "down" (or
// "up") in dnsvalve_upstream_healthy until the next restart.
func (a *app) forgetUpstreams(prev, next *upstream.Router) {
	keep := map[string]bool{}
	for _, st := range next.Status() {
		keep[st.Name] = true
	}
	for _, st := range prev.Status() {
		if keep[st.Name] {
			continue
		}
		a.upm.Forget(st.Name)
	}
}

// newListsManager builds the list manager for cfg: last good copies of the
// sources under state_dir/lists (a temp dir when state_dir is empty).
func newListsManager(cfg *Config, reg prometheus.Registerer, logger *slog.Logger) *lists.Manager {
	stateDir := cfg.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(os.TempDir(), "dnsvalve")
	}
	return lists.NewManager(filepath.Join(stateDir, "lists"), &http.Client{Timeout: 30 * time.Second},
		lists.NewMetrics(reg), logger, time.Now)
}
