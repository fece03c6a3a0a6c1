package policy

import "sync/atomic"

// Store holds the current Snapshot for lock-free reads and atomic swaps on
// reload. Queries call Load once and use that snapshot to the end, so a
// swap never changes the policy under a query in flight. Safe for
// concurrent use.
type Store struct {
	p atomic.Pointer[Snapshot]
}

// NewStore returns a Store holding s (which may be nil until the first
// Swap).
func NewStore(s *Snapshot) *Store {
	st := new(Store)
	st.p.Store(s)
	return st
}

// Load returns the current snapshot.
func (s *Store) Load() *Snapshot { return s.p.Load() }

// Swap makes n the current snapshot. In-flight users of the previous one
// are unaffected.
func (s *Store) Swap(n *Snapshot) { s.p.Store(n) }
