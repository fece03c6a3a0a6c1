package main

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// recordingRegisterer registers with the wrapped Registerer and remembers
// the collectors, so tests can list every dnsvalve metric (a registry only
// gathers vectors that have children).
type recordingRegisterer struct {
	prometheus.Registerer
	mu         sync.Mutex
	collectors []prometheus.Collector
}

func (r *recordingRegisterer) Register(c prometheus.Collector) error {
	if err := r.Registerer.Register(c); err != nil {
		return err
	}
	r.mu.Lock()
	r.collectors = append(r.collectors, c)
	r.mu.Unlock()
	return nil
}

func (r *recordingRegisterer) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := r.Register(c); err != nil {
			panic(err)
		}
	}
}

// descs returns the descriptions of every collector registered.
func (r *recordingRegisterer) descs() []*prometheus.Desc {
	r.mu.Lock()
	defer r.mu.Unlock()
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range r.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	var out []*prometheus.Desc
	for d := range ch {
		out = append(out, d)
	}
	return out
}

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
	// Both results exist from the start (at 0), so alert rules can use
	// increase() on the first failed reload too.
	m.reloads.WithLabelValues("ok")
	m.reloads.WithLabelValues("error")
	return m
}
