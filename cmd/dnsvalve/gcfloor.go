package main

import (
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// maxGCPercent bounds what the GC floor sets GOGC to: with a live heap
// under min/51, the heap goal is then 51 times the live heap rather than
// min.
const maxGCPercent = 5000

// gcFloor keeps the Go heap goal at least min bytes by raising GOGC while
// the live heap is small. The runtime's default, GOGC=100, sets the goal
// at twice the live heap: a resolver holding a few MB and answering 100k
// queries a second (about 700 bytes of garbage each, the reply and the
// parsed query) collected ~30 times a second, each cycle slowing queries
// on the core it shares with them for milliseconds (bench/run.sh, hits:
// p99 at 80% load 5.8-8.2 ms vs 3.2-4.7 ms with a 64 MB floor). Once the
// live heap passes min/2 (a big cache or list), GOGC is the process's own
// again. After every collection a finalizer reads the live heap
// (runtime/metrics "/gc/heap/live:bytes") and sets the GOGC that puts the
// next goal at min.
type gcFloor struct {
	min    uint64
	base   int // the GOGC the process had
	mu     sync.Mutex
	last   int
	done   bool
	sample []metrics.Sample
	// adjusted, when set (tests), gets a value after each adjust run by
	// the finalizer.
	adjusted chan int
}

// gcSentinel is the object whose finalizer runs after each collection. It
// holds a pointer so that it is not a tiny allocation, whose finalizer
// could wait for its neighbours.
type gcSentinel struct{ f *gcFloor }

// startGCFloor starts the floor at minBytes (0: none) and returns the
// function that stops it and puts GOGC back. It does nothing when the
// GOGC environment variable is set: the operator chose.
func startGCFloor(minBytes uint64, logger *slog.Logger) (stop func()) {
	if minBytes == 0 {
		return func() {}
	}
	if v, ok := os.LookupEnv("GOGC"); ok {
		logger.Info("GOGC is set: server.gc_min_heap_mb not applied", "GOGC", v)
		return func() {}
	}
	f := newGCFloor(minBytes)
	f.adjust()
	f.arm()
	return f.stop
}

func newGCFloor(minBytes uint64) *gcFloor {
	base := debug.SetGCPercent(100)
	debug.SetGCPercent(base)
	return &gcFloor{min: minBytes, base: base, last: base,
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
}

func (f *gcFloor) arm() {
	s := &gcSentinel{f: f}
	runtime.SetFinalizer(s, func(s *gcSentinel) {
		if s.f.adjust() {
			s.f.arm()
			if s.f.adjusted != nil {
				select { // never block the finalizer goroutine
				case s.f.adjusted <- s.f.percent():
				default:
				}
			}
		}
	})
}

// adjust sets GOGC for the live heap now; it reports false once stopped.
func (f *gcFloor) adjust() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.done {
		return false
	}
	metrics.Read(f.sample)
	gogc := floorPercent(f.sample[0].Value.Uint64(), f.min, f.base)
	if gogc != f.last {
		debug.SetGCPercent(gogc)
		f.last = gogc
	}
	return true
}

// percent returns the GOGC last set.
func (f *gcFloor) percent() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *gcFloor) stop() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.done {
		f.done = true
		debug.SetGCPercent(f.base)
	}
}

// floorPercent returns the GOGC that puts the heap goal, live*(1+GOGC/100),
// at floor (at most maxGCPercent), or base when base already reaches it
// (or GC is off, base < 0).
func floorPercent(live, floor uint64, base int) int {
	if base < 0 {
		return base
	}
	live = max(live, 1)
	if live*uint64(100+base)/100 >= floor {
		return base
	}
	return max(base, min(int(floor*100/live)-100, maxGCPercent))
}
