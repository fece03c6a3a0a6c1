package upstream

import (
	"sync/atomic"
	"time"
)

// Retransmission over UDP. A datagram lost on the way to an upstream or
// back used to cost the whole try timeout (2 s with one upstream) and then
// a SERVFAIL. Like Unbound, a UDP exchange sends its query again when no
// reply came within a retransmission timeout (RTO) computed from the
// upstream's measured round trip times (RFC 6298's estimator: RTO = SRTT +
// 4 RTTVAR), doubling it at each retransmission, for as long as the try
// lasts. The copy goes out on the same socket with the same ID, so the
// first reply to any copy is the answer; a socket that sent copies is not
// pooled again, so no late reply to a copy meets a later query.
//
// The doubled RTO is kept for the next queries until a query sent once is
// answered (RFC 6298 section 5.5, Karn's algorithm): replies to copies are
// no samples, so without it an upstream slower than its RTO, a recursive
// resolver's cache misses behind fast cache hits, would have every slow
// query sent two or three times.
const (
	// initialRTO is the RTO before any round trip was measured: Unbound's
	// for a server it knows nothing about.
	initialRTO = 376 * time.Millisecond
	// defaultMinRTO keeps a fast upstream's RTO above the pauses of a
	// loaded process (a collection, a descheduled thread), which would
	// otherwise send copies of queries whose replies are already queued.
	// Options.RetransmitMin changes it.
	defaultMinRTO = 100 * time.Millisecond
)

// rttEstimator holds one upstream's smoothed round trip time and its
// variation. Updates from concurrent exchanges may overwrite each other:
// each is a sample of the same quantity, so a lost update only slows the
// smoothing.
type rttEstimator struct {
	srtt   atomic.Int64 // nanoseconds; 0: no sample yet
	rttvar atomic.Int64 // nanoseconds
	// backoff is the RTO a retransmission doubled to, kept until the next
	// sample; 0: none.
	backoff atomic.Int64
}

// maxRTO bounds the kept backoff; a try ends sooner anyway.
const maxRTO = 10 * time.Second

// backedOff keeps rto, a timeout doubled by a retransmission, for the next
// queries until a sample comes.
func (e *rttEstimator) backedOff(rto time.Duration) {
	if int64(rto) > e.backoff.Load() {
		e.backoff.Store(int64(min(rto, maxRTO)))
	}
}

// sample adds a round trip time measured on a query that was sent once
// (Karn's rule: a reply to a retransmitted query may answer either copy).
func (e *rttEstimator) sample(d time.Duration) {
	e.backoff.Store(0)
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

// rto is the first retransmission timeout of a query: the kept backoff if
// any, else the estimate, at least floor, or initialRTO (at least floor)
// before any sample.
func (e *rttEstimator) rto(floor time.Duration) time.Duration {
	if b := e.backoff.Load(); b > 0 {
		return max(time.Duration(b), floor)
	}
	srtt := e.srtt.Load()
	if srtt == 0 {
		return max(initialRTO, floor)
	}
	return max(time.Duration(srtt+4*e.rttvar.Load()), floor)
}
