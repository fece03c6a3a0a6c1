package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"testing"
	"time"
)

func TestFloorPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name                         string
		live, stacks, globals, floor uint64
		base, want                   int
	}{
		{"small heap raises GOGC to reach the floor", 4 * mb, 0, 0, 64 * mb, 100, 1500},
		{"half the floor: base reaches it", 32 * mb, 0, 0, 64 * mb, 100, 100},
		{"above the floor", 200 * mb, 0, 0, 64 * mb, 100, 100},
		{"exactly half", 30 * mb, 0, 0, 60 * mb, 100, 100},
		{"just under half", 31 * mb, 0, 0, 64 * mb, 100, 106},
		{"capped", 1 * mb, 0, 0, 1024 * mb, 100, maxGCPercent},
		{"empty heap", 0, 0, 0, 64 * mb, 100, maxGCPercent},
		{"stacks count: 1,000 parked goroutines", 1 * mb, 7 * mb, 0, 64 * mb, 100, 787},
		{"globals count", 4 * mb, 1 * mb, 3 * mb, 64 * mb, 100, 750},
		{"roots alone reach the floor", 1 * mb, 63 * mb, 0, 64 * mb, 100, 100},
		{"an operator's higher base stays", 4 * mb, 0, 0, 64 * mb, 2000, 2000},
		{"an operator's lower base is raised", 16 * mb, 0, 0, 64 * mb, 50, 300},
		{"GC off stays off", 4 * mb, 0, 0, 64 * mb, -1, -1},
		{"no overflow with a floor of 1 TiB", 0, 0, 0, 1 << 40, 100, maxGCPercent},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := floorPercent(tc.live, tc.stacks, tc.globals, tc.floor, tc.base); got != tc.want {
				t.Errorf("floorPercent(live %d MB, stacks %d MB, globals %d MB, floor %d MB, %d) = %d, want %d",
					tc.live/mb, tc.stacks/mb, tc.globals/mb, tc.floor/mb, tc.base, got, tc.want)
			}
			// The goal the runtime computes from the answer is at most
			// the floor, or what the base gives.
			if tc.want > 0 {
				goal := tc.live + (tc.live+tc.stacks+tc.globals)*uint64(tc.want)/100
				if goal > tc.floor && tc.want != tc.base {
					t.Errorf("goal %d MB over the %d MB floor", goal/mb, tc.floor/mb)
				}
			}
		})
	}
}

// TestGCFloor runs the floor in this process: after a collection the
// finalizer sets GOGC so the heap goal is about the floor, and stop puts
// the process's GOGC back.
func TestGCFloor(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	f := startedFloor(256 << 20)
	gogc := collectAndWait(t, f)
	if gogc <= 100 {
		t.Fatalf("GOGC after a collection with a small heap = %d, want > 100", gogc)
	}
	if got := debug.SetGCPercent(gogc); got != gogc {
		t.Fatalf("runtime GOGC = %d, floor says %d", got, gogc)
	}
	goal := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}}
	metrics.Read(goal)
	if g := goal[0].Value.Uint64(); g < 200<<20 || gogc < maxGCPercent && g > 300<<20 {
		t.Fatalf("heap goal %d MB with GOGC %d, want about the 256 MB floor", g>>20, gogc)
	}
	// It re-arms: the next collection adjusts again.
	collectAndWait(t, f)
	f.stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC after stop = %d, want the base 100", got)
	}
}

// deepStack parks a goroutine n frames deep (~1 KiB of stack each).
func deepStack(n int, wg *sync.WaitGroup, release chan struct{}) byte {
	var pad [1024]byte
	if n == 0 {
		wg.Done()
		<-release
		return pad[0]
	}
	return deepStack(n-1, wg, release) + pad[n%1024]
}

// TestGCFloorGoalWithStacks: with 1,000 parked goroutines (the default
// tcp_max_connections) the stacks the runtime scans count in its heap
// goal, and the floor must not multiply them into a goal far above
// itself (it was 433 MiB for a 64 MiB floor when only the live heap was
// counted). Found in review.
func TestGCFloorGoalWithStacks(t *testing.T) {
	base := debug.SetGCPercent(100)
	defer debug.SetGCPercent(base)
	var wg sync.WaitGroup
	release := make(chan struct{})
	const g = 1000
	wg.Add(g)
	for range g {
		go deepStack(6, &wg, release)
	}
	wg.Wait()
	defer close(release)

	const floor = 64 << 20
	f := startedFloor(floor)
	defer f.stop()
	gogc := collectAndWait(t, f)
	s := []metrics.Sample{{Name: "/gc/heap/goal:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	goal := s[0].Value.Uint64()
	t.Logf("GOGC %d, live %d MiB, scannable stacks %d MiB, heap goal %d MiB (floor %d MiB)",
		gogc, s[2].Value.Uint64()>>20, s[1].Value.Uint64()>>20, goal>>20, floor>>20)
	if goal > floor*5/4 {
		t.Errorf("heap goal %d MiB is over the %d MiB floor", goal>>20, floor>>20)
	}
}

// startedFloor returns a floor of floor bytes, armed, that reports its
// adjustments.
func startedFloor(floor uint64) *gcFloor {
	f := newGCFloor(floor)
	f.adjusted = make(chan int, 1)
	f.arm()
	return f
}

// collectAndWait runs a collection and returns the GOGC the floor set
// after it.
func collectAndWait(t *testing.T, f *gcFloor) int {
	t.Helper()
	runtime.GC()
	select {
	case gogc := <-f.adjusted:
		return gogc
	case <-time.After(30 * time.Second):
		t.Fatal("no adjustment after a collection")
		return 0
	}
}
