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
// and roots (stacks, globals) under a 50th of the floor, the goal stays
// below the floor.
const maxGCPercent = 5000

// gcFloor keeps the Go heap goal at least min bytes by raising GOGC while
// the live heap is small. The runtime's default, GOGC=100, sets the goal
// at twice the live heap: a resolver holding a few MB and answering 100k
// queries a second (about 700 bytes of garbage each, the reply and the
// parsed query) collected ~30 times a second (597 collections in 21 s of
// bench/run.sh hits; with a 64 MB floor, 17 in 17 s and ~8% more qps),
// each cycle taking CPU from the core it shares with the queries. Once
// the process's own GOGC reaches the floor (a live heap of about half of
// it: a big cache or list), GOGC is left at that. After every collection
// a finalizer reads the live heap and the scannable stacks and globals
// (runtime/metrics) and sets the GOGC that puts the next goal at min.
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
		sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"}}}
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
	gogc := floorPercent(f.sample[0].Value.Uint64(), f.sample[1].Value.Uint64(), f.sample[2].Value.Uint64(), f.min, f.base)
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

// floorPercent returns the GOGC that puts the heap goal at floor (at
// most maxGCPercent), or base when base already reaches it (or GC is off,
// base < 0). Since Go 1.18 the goal is live + (live + stacks + globals) *
// GOGC/100: the scannable goroutine stacks and globals count too, and
// with a GOGC in the thousands they can outweigh a small live heap (1,000
// parked goroutines hold ~7 MB of stack).
func floorPercent(live, stacks, globals, floor uint64, base int) int {
	if base < 0 {
		return base
	}
	if live >= floor {
		return base
	}
	roots := max(live+stacks+globals, 1)
	// In uint64, clamped, before it becomes an int (32 bits on some
	// platforms).
	p := (floor - live) * 100 / roots
	if p <= uint64(base) {
		return base
	}
	return int(min(p, maxGCPercent))
}
