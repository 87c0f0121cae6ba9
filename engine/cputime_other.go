//go:build !linux

package engine

import "time"

// threadTime is the wall clock where no thread CPU clock is read: trial
// batches on a busy machine then count time spent waiting for a core.
func threadTime() time.Duration { return wallTime() }
