package seen

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxDomains is the memory store's default bound: about 100 MB of
// map at ~100 bytes a domain.
const DefaultMaxDomains = 1_000_000

// memory is the in-process store. Expired entries are swept at most once
// per retention/8, so memory stays proportional to the domains seen within
// the retention period, and never above maxDomains: a client asking for
// random registered domains (a DGA, or a flood meant to exhaust memory)
// would otherwise grow the map for the whole retention period. When it is
// full, a new domain takes the place of one picked at random (map order),
// which under a flood is most likely one of the flood's own; the evicted
// domain is new again if it comes back.
type memory struct {
	retention  time.Duration
	maxDomains int // 0: no bound
	evicted    prometheus.Counter
	now        func() time.Time
	created    time.Time

	mu        sync.Mutex
	last      map[string]int64 // domain -> last seen, unix nanoseconds
	nextSweep int64
	full      func() // called once, the first time the bound is reached
	closed    bool
}

var _ Store = (*memory)(nil)

// OpenMemory returns an in-process store holding at most maxDomains
// domains (0: no bound); evictions count in evicted (may be nil) and full
// (may be nil) is called the first time the bound is reached.
func OpenMemory(retention time.Duration, maxDomains int, evicted prometheus.Counter, full func(), now func() time.Time) Store {
	if retention <= 0 {
		retention = defaultRetention
	}
	if now == nil {
		now = time.Now
	}
	m := newMemory(retention, now)
	m.maxDomains, m.evicted, m.full = max(maxDomains, 0), evicted, full
	return m
}

func newMemory(retention time.Duration, now func() time.Time) *memory {
	c := now()
	return &memory{retention: retention, now: now, created: c, last: map[string]int64{},
		nextSweep: c.Add(retention / 8).UnixNano()}
}

func (m *memory) FirstSeen(_ context.Context, domain string, now time.Time) (bool, error) {
	t := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	if t >= m.nextSweep {
		cut := t - int64(m.retention)
		for d, l := range m.last {
			if l < cut {
				delete(m.last, d)
			}
		}
		m.nextSweep = t + int64(m.retention/8)
	}
	l, ok := m.last[domain]
	if !ok {
		if m.maxDomains > 0 && len(m.last) >= m.maxDomains {
			m.evictOne()
		}
		m.last[strings.Clone(domain)] = t
		return true, nil
	}
	if t > l {
		m.last[domain] = t
	}
	return t-l > int64(m.retention), nil
}

// evictOne removes one domain, the first in map order (random).
func (m *memory) evictOne() {
	for d := range m.last {
		delete(m.last, d)
		break
	}
	if m.evicted != nil {
		m.evicted.Inc()
	}
	if m.full != nil {
		m.full()
		m.full = nil
	}
}

func (m *memory) Fresh() bool        { return true }
func (m *memory) Created() time.Time { return m.created }

func (m *memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.last = nil
	m.mu.Unlock()
	return nil
}
