package seen

import (
	"runtime"
	"sync"
)

// sweepChunk is how many entries a sweep examines per hold of its store's
// lock (~0.2 ms for a map of a million, whose deletes miss the cache). A
// sweep of a million domains in one hold stalled every query ~200 ms;
// chunked, BenchmarkMemorySweepStall's slowest query waits 1.4-4.6 ms, little
// above what it waits with no sweep at all on this machine (0.1-1.3 ms).
const sweepChunk = 1024

// sweeper runs a store's sweeps of expired domains in the background, one
// at a time.
type sweeper struct {
	running bool           // under the store's lock
	wg      sync.WaitGroup // the sweep in flight, for Close
}

// start sweeps from the entries of sets last seen before cut in a new
// goroutine, unless a sweep is running already. mu is the store's lock,
// held by the caller; stop, called under it, ends the sweep early (the
// store closed).
func (sw *sweeper) start(mu *sync.Mutex, cut int64, stop func() bool, sets ...map[string]int64) {
	if sw.running {
		return
	}
	sw.running = true
	sw.wg.Go(func() {
		mu.Lock()
		defer mu.Unlock()
		defer func() { sw.running = false }()
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
	})
}

// wait waits for the sweep in flight, if any. The caller must not hold the
// store's lock.
func (sw *sweeper) wait() { sw.wg.Wait() }
