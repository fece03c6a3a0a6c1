// Package seen is the first-seen store behind dnsvalve's "newly seen
// domain" signal: it remembers when each registered domain was last asked
// for, so the detector can flag the first query for a domain nobody asked
// for within the retention period. Stores: "memory:" (lost on restart),
// "file:PATH" (bbolt, survives restarts; one machine) and "redis://..." /
// "rediss://..." (RedisStore: shared by a fleet of resolvers, survives
// restarts).
package seen

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// defaultRetention is the retention of Open and OpenMemory when given 0.
const defaultRetention = 30 * 24 * time.Hour

// ErrClosed is returned by a store after Close.
var ErrClosed = errors.New("seen: store closed")

// Store records first-seen times of domains. Implementations are safe for
// concurrent use and FirstSeen does not wait on disk I/O.
type Store interface {
	// FirstSeen records domain at now and reports whether it was not seen
	// within the retention period before now.
	FirstSeen(ctx context.Context, domain string, now time.Time) (bool, error)
	// Fresh reports whether this store created its data (no earlier
	// data); a Redis store knows once it has loaded the shared set.
	Fresh() bool
	// Created is when the store's data was first created: kept across
	// restarts (file) and shared by a fleet (redis), so a learning period
	// counted from it survives both.
	Created() time.Time
	Close() error
}

// Open opens the store named by spec: "memory:" (without a bound on its
// size: OpenMemory sets one), "file:PATH" (OpenFile without metrics or
// logs) or "redis://..." (OpenRedis with default options, waiting at most
// 2s for Redis). Retention is how long a domain stays
// "seen" after its last query (0 means 30 days); now is the clock.
func Open(spec string, retention time.Duration, now func() time.Time) (Store, error) {
	if retention <= 0 {
		retention = defaultRetention
	}
	if now == nil {
		now = time.Now
	}
	switch {
	case spec == "memory:" || spec == "memory" || spec == "":
		return OpenMemory(retention, 0, nil, nil, now), nil
	case strings.HasPrefix(spec, "file:"):
		path := strings.TrimPrefix(spec, "file:")
		if path == "" {
			return nil, fmt.Errorf("seen: open %q: empty path", spec)
		}
		return OpenFile(path, retention, now, FileOptions{})
	case strings.HasPrefix(spec, "redis://") || strings.HasPrefix(spec, "rediss://"):
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		return OpenRedis(ctx, spec, retention, now, RedisOptions{})
	default:
		return nil, fmt.Errorf("seen: open %q: unknown store (want memory:, file:PATH or redis://)", spec)
	}
}
