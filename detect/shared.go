package detect

import (
	"math"
	"net/netip"
)

// HalfLife is the half-life of the decayed per-pair totals that catch
// low-and-slow tunnels; a Shared implementation decays remote totals with it.
const HalfLife = halfLife

// PairKey names a (client, registered domain) pair to a Shared. Hash is the
// detector's keyed pair hash: stable within the process, different in
// every process (use Addr and Domain to name the pair to other instances).
type PairKey struct {
	Hash   uint64
	Addr   netip.Addr
	Domain string // immutable; may be retained
}

// Delta is one scored query's contribution to its pair.
type Delta struct {
	Time     int64   // unix nanoseconds
	Novel    bool    // the subdomain was new to the pair's local window
	SubHash  uint64  // hash of the lower-cased subdomain (0: none)
	Bytes    float64 // subdomain bytes, when Novel
	EncBytes float64 // encodedness × subdomain bytes, when Novel
}

// Counts are a pair's counters in one window bucket.
type Counts struct {
	Queries, Unique, Bytes, EncBytes float64
}

// Remote is what the other instances of a fleet contributed to a pair, as
// last fetched. Buckets are aligned to the wall clock: bucket i covers
// [i×window, (i+1)×window) in unix nanoseconds.
type Remote struct {
	Bucket    int64  // index of the bucket Cur counts; Prev is Bucket-1
	Cur, Prev Counts // others' counters (this instance's own excluded)
	// DecEncBytes and DecBytes are the others' decayed totals (HalfLife)
	// as of At (unix nanoseconds; 0 = none).
	DecEncBytes, DecBytes float64
	At                    int64
}

// Shared connects a Detector to detection state shared with other
// instances (package detect/fleet implements it over Redis). The Detector
// calls Record once per scored query with the pair's lock held, so Record
// must only touch memory: never block, never do I/O. It queues the delta
// for the fleet and returns the others' contribution as last fetched.
// Implementations are safe for concurrent use.
type Shared interface {
	Record(k PairKey, d Delta) Remote
}

// SharedFunc adapts a function to Shared.
type SharedFunc func(k PairKey, d Delta) Remote

// Record calls f(k, d).
func (f SharedFunc) Record(k PairKey, d Delta) Remote { return f(k, d) }

var _ Shared = SharedFunc(nil)

// remoteWindow returns the others' window counters at t, weighted like the
// local ones: the current wall-clock bucket plus the previous one scaled by
// the part of it still inside the sliding window.
func remoteWindow(r *Remote, t, window int64) Counts {
	g := t / window
	w := 1 - float64(t-g*window)/float64(window)
	var cur, prev Counts
	switch r.Bucket {
	case g:
		cur, prev = r.Cur, r.Prev
	case g - 1:
		prev = r.Cur
	default:
		return Counts{}
	}
	return Counts{
		Queries:  cur.Queries + w*prev.Queries,
		Unique:   cur.Unique + w*prev.Unique,
		Bytes:    cur.Bytes + w*prev.Bytes,
		EncBytes: cur.EncBytes + w*prev.EncBytes,
	}
}

// decayTo scales a total taken at at to t.
func decayTo(v float64, at, t int64) float64 {
	if at <= 0 || v == 0 {
		return 0
	}
	if t <= at {
		return v
	}
	return v * math.Exp2(-float64(t-at)/float64(halfLife))
}
