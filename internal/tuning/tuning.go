// Package tuning holds the runtime settings `streamer run` applies, so the
// benchmarks measure the same process the CLI runs.
package tuning

import (
	"os"
	"runtime/debug"
)

// GCPercent is the GOGC that `streamer run` uses unless GOGC is set. A stream
// processor allocates short-lived values per record and keeps little live
// heap; with the default of 100 the collector ran often enough to take 18%
// of the CPU. 400 cut the CPU per record by 12-18% and raised throughput
// 14% in bench/RESULTS.md. But a large live heap then grows five times
// over, so `streamer run` also bounds it with TuneGC.
const GCPercent = 400

// GC applies GCPercent unless the GOGC environment variable is set. It
// returns the setting in force.
func GC() string {
	if v, ok := os.LookupEnv("GOGC"); ok {
		return v
	}
	debug.SetGCPercent(GCPercent)
	return "400"
}
