package seen

import (
	"context"
	"strings"
	"sync"
	"time"
)

// memory is the in-process store. Expired entries are swept at most once
// per retention/8, so memory stays proportional to the domains seen within
// the retention period.
type memory struct {
	retention time.Duration
	now       func() time.Time
	created   time.Time

	mu        sync.Mutex
	last      map[string]int64 // domain -> last seen, unix nanoseconds
	nextSweep int64
	closed    bool
}

var _ Store = (*memory)(nil)

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
		m.last[strings.Clone(domain)] = t
		return true, nil
	}
	if t > l {
		m.last[domain] = t
	}
	return t-l > int64(m.retention), nil
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
