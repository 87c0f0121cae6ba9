package engine

import "time"

var wallBase = time.Now()

// wallTime is the monotonic time since the process started: threadTime
// where a thread clock is missing.
func wallTime() time.Duration { return time.Since(wallBase) }
