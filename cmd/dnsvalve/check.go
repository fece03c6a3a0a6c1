package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"time"

	"github.com/dnsvalve/dnsvalve/policy"
	"github.com/prometheus/client_golang/prometheus"
)

// checkCmd explains, for each name, what the policy decides and why.
// Exit status: 0 when every name is allowed, 1 when one is blocked, 2 on
// errors.
func checkCmd(args []string, stdout, stderr io.Writer) int {
	fs, cfgFile := serveFlags("check")
	fs.SetOutput(stderr)
	client := fs.String("client", "0.0.0.0", "client IP address whose group and policy apply")
	qtype := fs.String("qtype", "A", "query type")
	asJSON := fs.Bool("json", false, "print JSON instead of a table")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "dnsvalve check: at least one NAME is required")
		return 2
	}
	addr, err := netip.ParseAddr(*client)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve check: --client: %v\n", err)
		return 2
	}
	qt, ok := policy.TypeFromString(*qtype)
	if !ok {
		fmt.Fprintf(stderr, "dnsvalve check: --qtype: unknown type %q\n", *qtype)
		return 2
	}
	cfg, err := loadConfig(*cfgFile, fs)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve check: %v\n", err)
		return 2
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	a := &app{logger: logger}
	a.lists = newListsManager(cfg, prometheus.NewRegistry(), logger)
	a.names = newNamesFiles(prometheus.NewRegistry(), logger)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	snap, err := a.compile(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "dnsvalve check: %v\n", err)
		return 2
	}
	ex := make([]policy.Explanation, 0, fs.NArg())
	status := 0
	for _, n := range fs.Args() {
		e := snap.Explain(addr, n, qt)
		if e.Decision == "block" {
			status = 1
		}
		ex = append(ex, e)
	}
	if err := policy.WriteExplanations(stdout, ex, *asJSON); err != nil {
		fmt.Fprintf(stderr, "dnsvalve check: %v\n", err)
		return 2
	}
	return status
}
