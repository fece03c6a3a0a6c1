package upstream

import (
	"sync/atomic"
	"time"
)

// Retransmission over UDP. A datagram lost on the way to an upstream or
// back used to cost the whole try timeout (2 s with one upstream) and then
// a SERVFAIL. Like Unbound, a UDP exchange sends its query again on the
// same socket when no reply came within a retransmission timeout (RTO)
// computed from the upstream's measured round trip times (RFC 6298's
// estimator: RTO = SRTT + 4 RTTVAR), doubling it at each retransmission,
// for as long as the try lasts. The first reply to any copy is the answer;
// the same ID and socket make the copies indistinguishable, and a late
// duplicate is dropped when the socket is reused (udpSock.lastID).
const (
	// initialRTO is the RTO before any round trip was measured: Unbound's
	// for a server it knows nothing about.
	initialRTO = 376 * time.Millisecond
	// minRTO keeps a fast upstream's RTO above the pauses of a loaded
	// process (a collection, a descheduled thread), which would otherwise
	// send copies of queries whose replies are already queued.
	minRTO = 100 * time.Millisecond
)

// rttEstimator holds one upstream's smoothed round trip time and its
// variation. Updates from concurrent exchanges may overwrite each other:
// each is a sample of the same quantity, so a lost update only slows the
// smoothing.
type rttEstimator struct {
	srtt   atomic.Int64 // nanoseconds; 0: no sample yet
	rttvar atomic.Int64 // nanoseconds
}

// sample adds a round trip time measured on a query that was sent once
// (Karn's rule: a reply to a retransmitted query may answer either copy).
func (e *rttEstimator) sample(d time.Duration) {
	r := int64(d)
	if r <= 0 {
		r = 1
	}
	srtt := e.srtt.Load()
	if srtt == 0 {
		e.srtt.Store(r)
		e.rttvar.Store(r / 2)
		return
	}
	diff := srtt - r
	if diff < 0 {
		diff = -diff
	}
	e.rttvar.Store(e.rttvar.Load() - e.rttvar.Load()/4 + diff/4)
	e.srtt.Store(srtt - srtt/8 + r/8)
}

// rto is the first retransmission timeout of a query: the estimate, at
// least minRTO, or initialRTO before any sample.
func (e *rttEstimator) rto() time.Duration {
	srtt := e.srtt.Load()
	if srtt == 0 {
		return initialRTO
	}
	return max(time.Duration(srtt+4*e.rttvar.Load()), minRTO)
}
