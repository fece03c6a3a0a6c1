package main

import "github.com/prometheus/client_golang/prometheus"

// appMetrics are the process-level metrics of the wiring (subsystem "config").
type appMetrics struct {
	reloads    *prometheus.CounterVec
	lastReload prometheus.Gauge
}

func newAppMetrics(reg prometheus.Registerer) *appMetrics {
	m := &appMetrics{
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dnsvalve", Subsystem: "config", Name: "reloads_total",
			Help: "Configuration and policy reloads, by result (ok, error).",
		}, []string{"result"}),
		lastReload: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dnsvalve", Subsystem: "config", Name: "last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful reload.",
		}),
	}
	reg.MustRegister(m.reloads, m.lastReload)
	return m
}
