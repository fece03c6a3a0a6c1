package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/detect/fleet"
	"github.com/dnsvalve/dnsvalve/detect/seen"
	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/dnsvalve/dnsvalve/resolver"
	"github.com/dnsvalve/dnsvalve/resolver/query"
	"github.com/dnsvalve/dnsvalve/resolver/querylog"
	"github.com/dnsvalve/dnsvalve/resolver/stats"
)

// observer wires the query log and the detector: the Server's Observer,
// the detect stage, and the route alerts take (query log, metrics,
// webhook).
type observer struct {
	stats    *stats.Collector
	webhook  *detect.Webhook
	qlog     *querylog.Logger
	ql       *resolver.QueryLog
	policyAl *resolver.PolicyAlerts
	detector *detect.Detector
	store    seen.Store
	syncer   *fleet.Syncer // nil unless detect.shared is set
	fm       *fleet.Metrics
	cfg      DetectConfig
	logger   *slog.Logger
	policies func() *policy.Snapshot
}

func newObserver(cfg *Config, reg prometheus.Registerer, logger *slog.Logger) (*observer, error) {
	o := &observer{cfg: cfg.Detect, logger: logger, stats: stats.New(stats.DefaultMinutes, time.Now)}
	sinks, err := querylog.OpenSinks(cfg.Querylog.Sinks, logger)
	if err != nil {
		return nil, fmt.Errorf("%w: querylog.sinks: %w", ErrConfig, err)
	}
	o.qlog = querylog.New(sinks, cfg.Querylog.Buffer, querylog.NewMetrics(reg), logger)
	host, _ := os.Hostname()
	o.ql = &resolver.QueryLog{Log: o.qlog, Instance: host}

	if path, ok := strings.CutPrefix(cfg.Detect.NewlySeen.Store, "file:"); ok {
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			return nil, fmt.Errorf("detect.newly_seen.store: %w", err)
		}
	}
	o.fm = fleet.NewMetrics(reg)
	dm := detect.NewMetrics(reg)
	if st := cfg.Detect.NewlySeen.Store; strings.HasPrefix(st, "redis://") || strings.HasPrefix(st, "rediss://") {
		// Waits at most 3s for Redis to load the fleet's known domains; a
		// Redis that is down is a degraded state, not a start failure.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		o.store, err = seen.OpenRedis(ctx, st, cfg.Detect.NewlySeen.Retention, time.Now, seen.RedisOptions{
			Prefix: cfg.Detect.SharedPrefix, Sync: cfg.Detect.SharedSync, CAFile: cfg.Detect.SharedTLSCA,
			Up: o.fm.Up.WithLabelValues(fleet.ComponentSeen), Errors: o.fm.Errors.WithLabelValues(fleet.ComponentSeen),
			Logger: logger, MaxDomains: cfg.Detect.NewlySeen.MaxDomains, Evicted: dm.SeenEvictions})
		cancel()
	} else if st == "memory:" {
		maxDomains := cfg.Detect.NewlySeen.MaxDomains
		o.store = seen.OpenMemory(cfg.Detect.NewlySeen.Retention, maxDomains, dm.SeenEvictions, func() {
			logger.Warn("newly-seen store full: each new domain now replaces one asked for only once (evicted ones are new again); "+
				"raise detect.newly_seen.max_domains if this is normal traffic", "max_domains", maxDomains)
		}, time.Now)
	} else if path, ok := strings.CutPrefix(st, "file:"); ok {
		o.store, err = seen.OpenFile(path, cfg.Detect.NewlySeen.Retention, time.Now, seen.FileOptions{
			Errors: dm.SeenErrors, Logger: logger, MaxDomains: cfg.Detect.NewlySeen.MaxDomains, Evicted: dm.SeenEvictions})
	} else {
		o.store, err = seen.Open(st, cfg.Detect.NewlySeen.Retention, time.Now)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: detect.newly_seen.store: %w", ErrConfig, err)
	}
	dc := detect.Config{AlertScore: cfg.Detect.AlertScore, BlockScore: cfg.Detect.BlockScore, Window: cfg.Detect.Window,
		MaxPairs: cfg.Detect.MaxPairs, Ignore: append(append([]string(nil), detect.DefaultIgnore...), cfg.Detect.Ignore...),
		Learn: cfg.Detect.NewlySeen.Learn, Retention: cfg.Detect.NewlySeen.Retention}
	if cfg.Detect.Shared != "" {
		o.syncer, err = fleet.New(fleet.Config{URL: cfg.Detect.Shared, CAFile: cfg.Detect.SharedTLSCA,
			Prefix: cfg.Detect.SharedPrefix, Window: cfg.Detect.Window, Sync: cfg.Detect.SharedSync}, o.fm, logger)
		if err != nil {
			_ = o.store.Close()
			return nil, fmt.Errorf("%w: detect.shared: %w", ErrConfig, err)
		}
		dc.Shared = o.syncer
	}
	if cfg.Alerts.Webhook != "" {
		o.webhook = detect.NewWebhook(cfg.Alerts.Webhook, &http.Client{Timeout: 10 * time.Second}, dm, logger)
	}
	o.policyAl = resolver.NewPolicyAlerts(cfg.Alerts.policyActions(), cfg.Alerts.PolicyInterval, o.policyAlert, reg)
	o.detector, err = detect.New(dc, o.store, detect.AlertFunc(o.alert), dm, logger)
	if err != nil {
		_ = o.store.Close()
		if o.syncer != nil {
			_ = o.syncer.Close(context.Background())
		}
		return nil, fmt.Errorf("%w: detect: %w", ErrConfig, err)
	}
	return o, nil
}

// Observe implements resolver.Observer.
func (o *observer) Observe(req *query.Request, resp *dns.Msg, latency time.Duration) {
	o.ql.Observe(req, resp, latency)
	o.stats.Record(req, resp)
	o.policyAl.Observe(req, resp, latency)
}

// detectStage is the chain's detect stage over the policy store.
func (o *observer) detectStage(store *policy.Store) resolver.Middleware {
	o.policies = store.Load
	return resolver.Detect(o.detector, store, o.cfg.BlockScore, nil)
}

// alert routes a detector alert to the query log.
func (o *observer) alert(a detect.Alert) {
	action := "ALERT"
	if o.policies != nil && o.policies().DetectMode(a.Policy) == resolver.DetectEnforce && a.Score >= o.cfg.BlockScore {
		action = "BLOCK"
	}
	rec := detect.AlertRecord(&a, action)
	o.qlog.LogAlert(rec)
	if o.webhook != nil {
		o.webhook.Send(rec) // the same record, BLOCK included
	}
	o.logger.Warn("tunneling alert", "client", a.Client, "workload", a.ClientName, "domain", a.Domain,
		"score", a.Score, "signals", a.Signals)
}

// policyAlert routes a policy alert (alerts.policy) to the query log,
// the webhook and the log.
func (o *observer) policyAlert(rec querylog.Alert) {
	o.qlog.LogAlert(rec)
	if o.webhook != nil {
		o.webhook.Send(rec)
	}
	o.logger.Warn("policy alert", "action", rec.Action, "client", rec.SrcAddr, "workload", rec.SrcIDs.Instance,
		"name", rec.QueryName, "type", rec.QueryType, "list", rec.FirewallDomainListID, "category", rec.Category,
		"rule", rec.Rule, "source", rec.Source, "reason", rec.Reason)
}

// listCategories returns the categories of cfg's lists (a list's name
// when it has none).
func listCategories(cfg *Config) []string {
	var out []string
	for _, l := range cfg.Lists {
		c := l.Category
		if c == "" {
			c = l.Name
		}
		out = append(out, c)
	}
	return out
}

// Close flushes the query log and closes the detector's stores.
func (o *observer) Close(ctx context.Context) error {
	var werr error
	if o.webhook != nil {
		werr = o.webhook.Close(ctx)
	}
	var serr error
	if o.syncer != nil {
		serr = o.syncer.Close(ctx)
	}
	return errors.Join(werr, o.qlog.Close(ctx), o.detector.Close(), serr, o.store.Close())
}

// sharedStatus is /readyz's "shared_state": whether the fleet's shared
// detector state (Redis) answers. It never makes the instance unready: DNS
// is answered on local state meanwhile.
func (o *observer) sharedStatus() map[string]any {
	st := map[string]any{"enabled": o.syncer != nil}
	if o.syncer != nil {
		st["counters"] = o.syncer.Status()
	}
	if rs, ok := o.store.(*seen.RedisStore); ok {
		st["enabled"] = true
		st["seen"] = rs.Status()
	}
	return st
}
