package query

import "sync/atomic"

// A Lease says who still uses the messages of a query that a server lends
// from a pool (its query and reply): the server, while it answers, and
// whoever took a reference to read them later (a query-log sink). The
// last Release gives them back. A nil *Lease is valid and does nothing:
// messages that were not lent are the garbage collector's.
//
// Whoever keeps Request.Msg, or the reply a server wrote, beyond the call
// that handed it over must Retain the request's Lease first and Release
// it when done; whoever does not may read them only during that call.
type Lease struct {
	refs atomic.Int32
	free func()
}

// Lend starts a lending with one reference, the lender's: free runs when
// the last reference is released. A Lease is lent again only after free
// ran.
func (l *Lease) Lend(free func()) {
	l.free = free
	l.refs.Store(1)
}

// Retain takes one more reference.
func (l *Lease) Retain() {
	if l != nil {
		l.refs.Add(1)
	}
}

// Release drops one reference; the last one gives the messages back.
// Releasing more often than retained panics: it would hand out messages
// still in use.
func (l *Lease) Release() {
	if l == nil {
		return
	}
	switch n := l.refs.Add(-1); {
	case n == 0:
		l.free()
	case n < 0:
		panic("query: Lease released more often than retained")
	}
}
