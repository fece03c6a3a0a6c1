package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsvalve/dnsvalve/detect"
	"github.com/dnsvalve/dnsvalve/detect/seen"
)

// scoreCmd runs the detector over existing query logs (dnsvalve's own or
// AWS Route 53 Resolver query logs) and writes scored dnsvalve query-log
// lines plus alert records, using each record's timestamp as the clock.
func scoreCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs, cfgFile := serveFlags("score")
	fs.SetOutput(stderr)
	format := fs.String("format", "auto", "input format: auto, dnsvalve or route53")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cfg, err := loadConfig(*cfgFile, fs)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve score: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	// Offline scoring must not touch the live first-seen store: a fresh
	// in-memory one, bound as the live memory: store is, learns for
	// detect.newly_seen.learn from the first record's time (the records'
	// timestamps are the clock).
	maxDomains := cfg.Detect.NewlySeen.MaxDomains
	store := seen.OpenMemory(cfg.Detect.NewlySeen.Retention, maxDomains, nil, func() {
		logger.Warn("newly-seen store full: each new domain now replaces one asked for only once (evicted ones are new again)",
			"max_domains", maxDomains)
	}, time.Now)
	dc := detect.Config{AlertScore: cfg.Detect.AlertScore, BlockScore: cfg.Detect.BlockScore, Window: cfg.Detect.Window,
		MaxPairs: cfg.Detect.MaxPairs, Ignore: append(append([]string(nil), detect.DefaultIgnore...), cfg.Detect.Ignore...),
		Learn: cfg.Detect.NewlySeen.Learn, LearnFromFirstQuery: true, Retention: cfg.Detect.NewlySeen.Retention}
	det, err := detect.New(dc, store, nil, detect.NewMetrics(prometheus.NewRegistry()), logger)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve score: %v\n", err)
		return 2
	}
	defer det.Close()
	inputs := []io.Reader{stdin}
	if fs.NArg() > 0 {
		inputs = inputs[:0]
		for _, name := range fs.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintf(stderr, "dnsvalve score: %v\n", err)
				return 2
			}
			defer f.Close()
			inputs = append(inputs, f)
		}
	}
	for _, in := range inputs {
		st, err := detect.ScoreLog(context.Background(), det, in, stdout, *format)
		if err != nil {
			fmt.Fprintf(stderr, "dnsvalve score: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "dnsvalve score: %+v\n", st)
	}
	return 0
}
