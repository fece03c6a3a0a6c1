// Package redisconn is what dnsvalve's Redis-backed detector state (the
// fleet counters and the shared first-seen store) have in common: a client
// built from a redis:// or rediss:// URL, and a health tracker that logs a
// degradation once and its recovery once.
package redisconn

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// ErrScheme is returned for URLs that are not redis:// or rediss://.
var ErrScheme = errors.New("redis: URL scheme must be redis:// or rediss://")

// Options parses a redis:// or rediss:// URL (user, password and database
// in the URL, as redis.ParseURL) and, for rediss://, trusts the PEM CA
// file caFile in addition to the system roots when caFile is not "".
// Timeouts are short: callers use Redis only off the query path and must
// see trouble quickly.
func Options(url, caFile string) (*redis.Options, error) {
	if !strings.HasPrefix(url, "redis://") && !strings.HasPrefix(url, "rediss://") {
		return nil, fmt.Errorf("redis: parse %q: %w", redact(url), ErrScheme)
	}
	o, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("redis: parse %q: %w", redact(url), err)
	}
	if caFile != "" {
		if o.TLSConfig == nil {
			return nil, fmt.Errorf("redis: CA file %s given for a redis:// URL (use rediss://)", caFile)
		}
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("redis: read CA file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis: CA file %s: no PEM certificates", caFile)
		}
		o.TLSConfig.RootCAs = pool
		if o.TLSConfig.MinVersion == 0 {
			o.TLSConfig.MinVersion = tls.VersionTLS12
		}
	}
	o.DialTimeout = time.Second
	o.ReadTimeout = time.Second
	o.WriteTimeout = time.Second
	o.MaxRetries = -1 // no retries inside a sync round: the next round is the retry
	o.DialerRetries = 1
	quietOnce.Do(func() { redis.SetLogger(quiet{}) })
	o.PoolSize = 4
	o.DisableIdentity = true
	return o, nil
}

// go-redis logs every failed dial through a process-wide logger; Health
// logs a degradation once instead, so that logger is silenced once.
var quietOnce sync.Once

type quiet struct{}

func (quiet) Printf(context.Context, string, ...any) {}

// Redact hides the password of a Redis URL for logs and errors.
func Redact(url string) string { return redact(url) }

func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return url
	}
	user := rest[:at]
	if u, _, ok := strings.Cut(user, ":"); ok {
		user = u + ":xxxxx"
	} else {
		user = "xxxxx"
	}
	return scheme + "://" + user + rest[at:]
}

// Health tracks whether Redis answers. It logs the first failure after a
// success (or at start) once at Warn and the recovery once at Info, counts
// every failure and mirrors the state in a gauge. Safe for concurrent use.
type Health struct {
	name   string
	up     atomic.Bool
	gauge  prometheus.Gauge
	errs   prometheus.Counter
	logger *slog.Logger

	mu      sync.Mutex
	known   bool // a first outcome was recorded
	lastErr string
	since   time.Time
}

// NewHealth returns a tracker that starts down (nothing answered yet).
// gauge and errs may be nil.
func NewHealth(name string, gauge prometheus.Gauge, errs prometheus.Counter, logger *slog.Logger) *Health {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	h := &Health{name: name, gauge: gauge, errs: errs, logger: logger}
	if gauge != nil {
		gauge.Set(0)
	}
	return h
}

// OK records a successful round trip at now.
func (h *Health) OK(now time.Time) {
	if h.up.Load() {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.up.Load() {
		return
	}
	if h.known {
		h.logger.Info("shared detector state recovered", "component", h.name, "down_for", now.Sub(h.since).Round(time.Millisecond))
	}
	h.known, h.lastErr, h.since = true, "", now
	h.up.Store(true)
	if h.gauge != nil {
		h.gauge.Set(1)
	}
}

// Fail records a failed round trip at now.
func (h *Health) Fail(now time.Time, err error) { h.FailN(now, err, 1) }

// FailN is Fail for n failures at once (n records dropped), counted as n
// errors.
func (h *Health) FailN(now time.Time, err error, n int) {
	if h.errs != nil {
		h.errs.Add(float64(n))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lastErr = err.Error()
	if !h.up.Load() && h.known {
		return
	}
	h.known, h.since = true, now
	h.up.Store(false)
	if h.gauge != nil {
		h.gauge.Set(0)
	}
	h.logger.Warn("shared detector state unavailable: answering on local state, retrying", "component", h.name, "err", err)
}

// Up reports whether the last round trip succeeded.
func (h *Health) Up() bool { return h.up.Load() }

// Status is the tracker's state for /readyz.
type Status struct {
	Up        bool   `json:"up"`
	LastError string `json:"last_error,omitempty"`
	Since     string `json:"since,omitempty"`
}

// Status returns the current state.
func (h *Health) Status() Status {
	h.mu.Lock()
	defer h.mu.Unlock()
	s := Status{Up: h.up.Load(), LastError: h.lastErr}
	if !h.since.IsZero() {
		s.Since = h.since.UTC().Format(time.RFC3339)
	}
	return s
}
