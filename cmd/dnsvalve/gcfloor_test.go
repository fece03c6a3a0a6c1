package main

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestFloorPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		name        string
		live, floor uint64
		base, want  int
	}{
		{"small heap raises GOGC to reach the floor", 4 * mb, 64 * mb, 100, 1500},
		{"half the floor: base reaches it", 32 * mb, 64 * mb, 100, 100},
		{"above the floor", 200 * mb, 64 * mb, 100, 100},
		{"exactly half", 30 * mb, 60 * mb, 100, 100},
		{"just under half", 31 * mb, 64 * mb, 100, 106},
		{"capped", 1 * mb, 1024 * mb, 100, maxGCPercent},
		{"empty heap", 0, 64 * mb, 100, maxGCPercent},
		{"an operator's higher base stays", 4 * mb, 64 * mb, 2000, 2000},
		{"an operator's lower base is raised", 16 * mb, 64 * mb, 50, 300},
		{"GC off stays off", 4 * mb, 64 * mb, -1, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := floorPercent(tc.live, tc.floor, tc.base); got != tc.want {
				t.Errorf("floorPercent(%d MB, %d MB, %d) = %d, want %d", tc.live/mb, tc.floor/mb, tc.base, got, tc.want)
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
	f := newGCFloor(256 << 20)
	f.adjusted = make(chan int, 1)
	f.arm()
	runtime.GC()
	var gogc int
	select {
	case gogc = <-f.adjusted:
	case <-time.After(30 * time.Second):
		t.Fatal("no adjustment after a collection")
	}
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
	runtime.GC()
	select {
	case <-f.adjusted:
	case <-time.After(30 * time.Second):
		t.Fatal("no adjustment after a second collection")
	}
	f.stop()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("GOGC after stop = %d, want the base 100", got)
	}
}
