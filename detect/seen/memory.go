package seen

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// memory is the in-process store. Expired entries are swept at most once
// per retention/8, in the background (sweeper), so memory stays
// proportional to the domains seen within the retention period, and never
// above maxDomains: a client asking for random registered domains (a DGA,
// or a flood meant to exhaust memory) would otherwise grow the map for the
// whole retention period.
//
// Domains asked for once are kept apart from those asked for again. When
// the store is full, a sweep of the expired entries starts (at most once a
// minute), and a new domain takes the place of an expired one found among
// a few, else of a random one asked for only once, and only when there is
// none of those, of a random one asked for again. A flood's names are
// asked for once each, so they replace each other and the domains the
// network keeps using stay. An evicted domain is new again if it comes
// back.
type memory struct {
	retention  time.Duration
	maxDomains int // 0: no bound
	evicted    prometheus.Counter
	now        func() time.Time
	created    time.Time

	mu        sync.Mutex
	once      map[string]int64 // domain asked for once -> when, unix nanoseconds
	again     map[string]int64 // domain asked for more than once -> last time
	nextSweep int64
	fullSweep int64 // earliest time of the next sweep when full
	sweeps    sweeper
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
	c := now()
	return &memory{retention: retention, maxDomains: max(maxDomains, 0), evicted: evicted, full: full, now: now,
		created: c, once: map[string]int64{}, again: map[string]int64{}, nextSweep: c.Add(retention / 8).UnixNano()}
}

// size is how many domains m holds.
func (m *memory) size() int { return len(m.once) + len(m.again) }

func (m *memory) FirstSeen(_ context.Context, domain string, now time.Time) (bool, error) {
	t := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	if t >= m.nextSweep {
		m.sweep(t)
	}
	if l, ok := m.again[domain]; ok {
		m.again[domain] = max(t, l)
		return t-l > int64(m.retention), nil
	}
	if l, ok := m.once[domain]; ok {
		delete(m.once, domain)
		m.again[strings.Clone(domain)] = max(t, l)
		return t-l > int64(m.retention), nil
	}
	if m.maxDomains > 0 && m.size() >= m.maxDomains {
		if t >= m.fullSweep && m.sweep(t) {
			m.fullSweep = t + int64(time.Minute)
		}
		// The sweep frees room in the background; until it has, a new
		// domain takes the place of an expired one found at once, or of a
		// random live one.
		if cut := t - int64(m.retention); !dropExpired(m.once, cut) && !dropExpired(m.again, cut) {
			m.evictOne()
		}
	}
	m.once[strings.Clone(domain)] = t
	return true, nil
}

// sweep starts deleting, in the background, the domains not seen within
// the retention before t (see sweeper), and reports whether it did (not
// while another sweep runs: the next call tries again). Called under mu.
func (m *memory) sweep(t int64) bool {
	_, started := m.sweeps.start(&m.mu, t-int64(m.retention), func() bool { return m.closed }, m.once, m.again)
	if started {
		m.nextSweep = t + int64(m.retention/8)
	}
	return started
}

// evictOne removes a domain asked for once, or if there is none one asked
// for again: the first in map order, which is random.
func (m *memory) evictOne() {
	set := m.once
	if len(set) == 0 {
		set = m.again
	}
	for d := range set {
		delete(set, d)
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
	m.once, m.again = nil, nil
	sweep := m.sweeps.running()
	m.mu.Unlock()
	if sweep != nil {
		<-sweep
	}
	return nil
}
