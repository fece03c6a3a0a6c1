package seen

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// memory is the in-process store: a localSet (see there for the bound,
// the sweeps and which domains a full store evicts), so memory stays
// proportional to the domains seen within the retention period, and never
// above maxDomains: a client asking for random registered domains (a DGA,
// or a flood meant to exhaust memory) would otherwise grow the map for the
// whole retention period. An evicted domain is new again if it comes back.
type memory struct {
	retention time.Duration
	evicted   prometheus.Counter
	now       func() time.Time
	created   time.Time

	mu     sync.Mutex
	set    localSet
	full   func() // called once, the first time the bound is reached
	closed bool
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
	m := &memory{retention: retention, evicted: evicted, full: full, now: now, created: now()}
	m.set = newLocalSet(&m.mu, func() bool { return m.closed }, retention, maxDomains, m.created)
	return m
}

func (m *memory) FirstSeen(_ context.Context, domain string, now time.Time) (bool, error) {
	t := now.UnixNano()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false, ErrClosed
	}
	m.set.sweepIfDue(t)
	if key, l, ok := m.set.find(domain); ok {
		m.set.touch(key, max(t, l))
		return t-l > int64(m.retention), nil
	}
	if m.set.makeRoom(t) {
		if m.evicted != nil {
			m.evicted.Inc()
		}
		if m.full != nil {
			m.full()
			m.full = nil
		}
	}
	m.set.add(domain, t)
	return true, nil
}

func (m *memory) Fresh() bool        { return true }
func (m *memory) Created() time.Time { return m.created }

func (m *memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.set.drop()
	sweep := m.set.sweeps.running()
	m.mu.Unlock()
	if sweep != nil {
		<-sweep
	}
	return nil
}
