package seen

import (
	"runtime"
	"sync"
)

// sweepChunk is how many entries a sweep examines per hold of its store's
// lock (~0.2 ms for a map of a million, whose deletes miss the cache). A
// sweep of a million domains in one hold stalled every query ~200 ms
// (BenchmarkMemorySweepStall); chunked, the slowest query's wait during a
// sweep is within a few times what it is without one.
const sweepChunk = 1024

// sweeper runs a store's sweeps of expired domains in the background, one
// at a time. Its fields are guarded by the store's lock.
type sweeper struct {
	done chan struct{} // closed when the sweep in flight ends; nil when none runs
	last chan struct{} // the latest sweep's done, kept once it ended (tests)
}

// start begins, in a new goroutine, deleting the entries of sets last seen
// before cut, unless a sweep is running already or stop reports true. mu
// is the store's lock, held by the caller; stop, called under it, also
// ends the sweep early (the store closed). It returns a channel closed
// when the sweep in flight (new or not) ends, nil when none runs, and
// whether it started one: a sweep due while another runs is not done, and
// the store should try again on its next call.
func (sw *sweeper) start(mu *sync.Mutex, cut int64, stop func() bool, sets ...map[string]int64) (<-chan struct{}, bool) {
	if sw.done != nil || stop() {
		return sw.done, false
	}
	done := make(chan struct{})
	sw.done, sw.last = done, done
	go func() {
		mu.Lock()
		defer mu.Unlock()
		defer func() { sw.done = nil; close(done) }()
		n := 0
		for _, set := range sets {
			for d, l := range set {
				if l < cut {
					delete(set, d)
				}
				if n++; n%sweepChunk == 0 {
					// Let the queries waiting for the lock in. Entries the
					// store adds or deletes meanwhile are seen or not,
					// as Go's map iteration allows: either is fine.
					mu.Unlock()
					runtime.Gosched()
					mu.Lock()
					if stop() {
						return
					}
				}
			}
		}
	}()
	return done, true
}

// running returns the channel of the sweep in flight (nil: none). Called
// under the store's lock; wait on it without.
func (sw *sweeper) running() <-chan struct{} { return sw.done }
