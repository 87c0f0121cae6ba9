package engine

import (
	"runtime"
	"testing"
	"time"
)

// TestThreadTimeExcludesWaiting: the clock of ProjectAuto's trial batches
// does not advance while the thread waits, so a batch that waited for a
// core on a busy machine is not timed as slow.
func TestThreadTimeExcludesWaiting(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t0, w0 := threadTime(), time.Now()
	time.Sleep(50 * time.Millisecond)
	for spin := time.Now(); time.Since(spin) < 5*time.Millisecond; {
	}
	cpu, wall := threadTime()-t0, time.Since(w0)
	if wall < 55*time.Millisecond || cpu >= 40*time.Millisecond || cpu < time.Millisecond {
		t.Fatalf("thread time %v over a wall time of %v with 5ms of work: want 1ms to 40ms", cpu, wall)
	}
}
