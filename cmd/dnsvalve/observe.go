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
	detector *detect.Detector
	store    seen.Store
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
	o.store, err = seen.Open(cfg.Detect.NewlySeen.Store, cfg.Detect.NewlySeen.Retention, time.Now)
	if err != nil {
		return nil, fmt.Errorf("%w: detect.newly_seen.store: %w", ErrConfig, err)
	}
	dc := detect.Config{AlertScore: cfg.Detect.AlertScore, BlockScore: cfg.Detect.BlockScore, Window: cfg.Detect.Window,
		MaxPairs: cfg.Detect.MaxPairs, Ignore: append(append([]string(nil), detect.DefaultIgnore...), cfg.Detect.Ignore...),
		Learn: cfg.Detect.NewlySeen.Learn, Retention: cfg.Detect.NewlySeen.Retention}
	dm := detect.NewMetrics(reg)
	if cfg.Alerts.Webhook != "" {
		o.webhook = detect.NewWebhook(cfg.Alerts.Webhook, &http.Client{Timeout: 10 * time.Second}, dm, logger)
	}
	o.detector, err = detect.New(dc, o.store, detect.AlertFunc(o.alert), dm, logger)
	if err != nil {
		_ = o.store.Close()
		return nil, fmt.Errorf("%w: detect: %w", ErrConfig, err)
	}
	return o, nil
}

// Observe implements resolver.Observer.
func (o *observer) Observe(req *query.Request, resp *dns.Msg, latency time.Duration) {
	o.ql.Observe(req, resp, latency)
	o.stats.Record(req, resp)
}

// detectStage is the chain's detect stage over the policy store.
func (o *observer) detectStage(store *policy.Store) resolver.Middleware {
	o.policies = store.Load
	return resolver.Detect(o.detector, store, o.cfg.BlockScore, time.Now)
}

// alert routes a detector alert to the query log.
func (o *observer) alert(a detect.Alert) {
	action := "ALERT"
	if o.policies != nil && o.policies().DetectMode(a.Policy) == resolver.DetectEnforce && a.Score >= o.cfg.BlockScore {
		action = "BLOCK"
	}
	o.qlog.LogAlert(resolver.AlertRecord(a, action))
	if o.webhook != nil {
		o.webhook.Alert(a)
	}
	o.logger.Warn("tunneling alert", "client", a.Client, "workload", a.ClientName, "domain", a.Domain,
		"score", a.Score, "signals", a.Signals)
}

// Close flushes the query log and closes the detector's stores.
func (o *observer) Close(ctx context.Context) error {
	var werr error
	if o.webhook != nil {
		werr = o.webhook.Close(ctx)
	}
	return errors.Join(werr, o.qlog.Close(ctx), o.detector.Close(), o.store.Close())
}
