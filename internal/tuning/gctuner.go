package tuning

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// DefaultHeadroom is how far the heap may grow above the live heap before
// a collection, unless STREAMER_GC_HEADROOM or --gc-headroom says
// otherwise.
//
// GCPercent alone lets the heap grow to 5x the live heap: 600 MB and more
// for the ~100 MB an aggregate over millions of keys keeps live, which put
// `streamer run` at 680-720 MB resident (bench/RESULTS.md, "State larger
// than memory"). With 256 MiB the same run peaked at 459-473 MB, about
// 45 MB of it Pebble's block cache and memtables (allocated outside the Go
// heap), and 192 MiB at 391-404 MB. The filter+map benchmark keeps more live (the records buffered for produce):
// there 192 MiB cost about 8% more CPU per record than no bound, and 256
// MiB 0-3%. Heaps under 64 MiB live never reach the bound: GCPercent paces
// them as before.
const DefaultHeadroom = 256 << 20

// HeadroomEnv names the environment variable that overrides DefaultHeadroom.
const HeadroomEnv = "STREAMER_GC_HEADROOM"

// CgroupRatio is the share of a container's memory limit that the process
// may use: Go's memory plus what it holds outside Go. The rest is slack for
// what neither measure sees in time. automemlimit uses the same 0.9.
const CgroupRatio = 0.9

// minGCPercent is the lowest GOGC the headroom sets, however large the live
// heap: a lower one would make the collector run nearly back to back.
// At 25 the heap still grows by a quarter of what is live.
const minGCPercent = 25

// minGrowth is the least the container limit allows above the live heap
// and the runtime's overheads, however small the container: a limit at the
// live heap itself would make the collector run back to back (Go's CPU
// limiter then caps it at half the CPU). Matches minGCPercent, with a floor
// for small heaps.
func minGrowth(live uint64) uint64 {
	return max(live/4, 16<<20)
}

// MemSample is what the GCTuner reads after each collection.
type MemSample struct {
	// Cycles counts the collections so far (/gc/cycles/total:gc-cycles):
	// a sample of a cycle already seen is skipped.
	Cycles uint64
	// Live is the heap the last collection found live (/gc/heap/live:bytes).
	Live uint64
	// Runtime is Go's memory that neither holds heap objects nor could:
	// stacks, GC and allocator metadata, profiling buckets.
	Runtime uint64
	// Mapped is Go's memory that a memory limit counts (all it has mapped
	// and not returned to the OS).
	Mapped uint64
	// RSS is the process's resident set, 0 if unknown. Only read with a
	// container limit: what it holds beyond Mapped (Pebble's block cache
	// and memtables, which Pebble allocates in C) is taken off that limit.
	RSS uint64
}

// GCTuner bounds the heap after every collection, two ways:
//
//   - headroom: GOGC is lowered from its setting (GCPercent) to
//     headroom/live, so the heap goal is min(live*(1+GOGC/100),
//     live+headroom). A small live heap keeps the full GOGC; a large one
//     grows by headroom at most.
//   - container: Go's memory limit is kept at CgroupRatio of the
//     container's limit, less what the process holds outside Go.
//
// The headroom goes through GOGC, not the memory limit, though both bound
// the heap alike: a process held at its memory limit returns memory to the
// OS as it allocates (the scavenger keeps it under 95% of the limit) and
// faults it back in: in the 10M-key aggregate benchmark a 192 MiB headroom
// through the memory limit took 4-6% more CPU per record than no bound and
// twice the page faults; through GOGC the page faults stayed as without a
// bound. The container
// limit is a hard bound, which is what the memory limit is for.
//
// Neither bound ever goes below the live heap plus a quarter (minGCPercent,
// minGrowth).
type GCTuner struct {
	headroom  uint64 // 0: GOGC left alone
	maxGOGC   int    // the GOGC in force at the start: never raised above
	container uint64 // CgroupRatio of the cgroup's limit; 0: no limit set

	read     func(withRSS bool) MemSample
	setGOGC  func(int) int
	setLimit func(int64) int64

	mu      sync.Mutex
	stopped bool
	seen    bool   // a sample was applied
	cycles  uint64 // the Cycles of the last sample applied
	gogc    int    // last set; 0 before
	limit   int64  // last set; 0 before
}

// gcPercentFor is the GOGC for a sample, 0 to leave it alone.
func (t *GCTuner) gcPercentFor(s MemSample) int {
	if t.headroom == 0 || t.maxGOGC <= 0 {
		return 0
	}
	g := float64(t.maxGOGC)
	if s.Live > 0 {
		g = min(g, float64(t.headroom)*100/float64(s.Live))
	}
	return int(max(g, minGCPercent))
}

// limitFor is the memory limit for a sample, 0 to leave it alone.
func (t *GCTuner) limitFor(s MemSample) int64 {
	if t.container == 0 {
		return 0
	}
	// Memory outside Go's accounting comes off the container's share,
	// since the kernel counts it and Go's limit cannot.
	var outside uint64
	if s.RSS > s.Mapped {
		outside = s.RSS - s.Mapped
	}
	var limit uint64
	if t.container > outside {
		limit = t.container - outside
	}
	base := addSat(s.Live, s.Runtime)
	limit = max(limit, addSat(base, minGrowth(s.Live)))
	return int64(min(limit, math.MaxInt64))
}

func addSat(a, b uint64) uint64 {
	if a > math.MaxUint64-b {
		return math.MaxUint64
	}
	return a + b
}

// update reads a sample and applies it. It reports false once the tuner
// has stopped, so that the collection hook is not re-armed.
func (t *GCTuner) update() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return false
	}
	s := t.read(t.container > 0)
	if t.seen && s.Cycles == t.cycles {
		return true // no collection since the last update
	}
	t.seen, t.cycles = true, s.Cycles
	if g := t.gcPercentFor(s); g != 0 && g != t.gogc {
		t.setGOGC(g)
		t.gogc = g
	}
	if l := t.limitFor(s); l != 0 && l != t.limit {
		t.setLimit(l)
		t.limit = l
	}
	return true
}

// Settings are the GOGC and memory limit last set, 0 for those it has not.
func (t *GCTuner) Settings() (gogc int, limit int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.gogc, t.limit
}

// stop ends the updates and puts back what the tuner changed.
func (t *GCTuner) stop(gogc int, limit int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.gogc != 0 {
		t.setGOGC(gogc)
	}
	if t.limit != 0 {
		t.setLimit(limit)
	}
}

// gcSentinel is allocated for its cleanup alone, which runs once a
// collection has found it unreachable: a hook after every cycle. The
// pointer keeps it out of the tiny allocator, whose blocks are shared and
// may never be freed, so a cleanup on a tiny object might never run.
type gcSentinel struct{ _ *byte }

// armAfterGC runs update after the next collection, and again after each
// one until update reports false. The live heap changes only when a
// collection ends, so this updates when there is news, and costs nothing
// while the process is idle. It can miss a cycle, though: a cleanup runs
// once the sweeper reaches the sentinel, which may be late in the next
// cycle, and a sentinel allocated while the next collection marks survives
// it. Then GOGC stays as the previous live heap set it: 400 after a
// collection that found 47 MB live made the next one's goal 478 MB, 5x the
// 95 MB it found (a 535 MB peak in the 10M-key benchmark). The poll in
// TuneGC catches such cycles.
func (t *GCTuner) armAfterGC() {
	runtime.AddCleanup(&gcSentinel{}, func(t *GCTuner) {
		if t.update() {
			t.armAfterGC()
		}
	}, t)
}

// TuneGC starts a GCTuner until ctx is done, then puts back the GOGC and
// memory limit it found. Call it after GC. The user's settings stand: with
// GOGC set in the environment, the headroom is not applied; with
// GOMEMLIMIT set, no container limit is. It returns the tuner, nil when it
// has nothing to do, and what it does, for the log.
func TuneGC(ctx context.Context, headroom uint64, log *slog.Logger) (*GCTuner, string) {
	var did []string
	t := &GCTuner{read: readMemSample, setGOGC: debug.SetGCPercent, setLimit: debug.SetMemoryLimit}
	if _, set := os.LookupEnv("GOGC"); !set && headroom > 0 {
		t.headroom, t.maxGOGC = headroom, currentGCPercent()
		did = append(did, fmt.Sprintf("GOGC at most %d, heap at most live + %s", t.maxGOGC, FormatSize(headroom)))
	}
	if _, set := os.LookupEnv("GOMEMLIMIT"); !set {
		switch n, err := memlimit.FromCgroup(); {
		case err == nil:
			t.container = uint64(float64(n) * CgroupRatio)
			did = append(did, fmt.Sprintf("memory limit %s (%.0f%% of the container's) less memory outside Go", FormatSize(t.container), CgroupRatio*100))
		case !errors.Is(err, memlimit.ErrNoLimit) && !errors.Is(err, memlimit.ErrNoCgroup) && !errors.Is(err, memlimit.ErrCgroupsNotSupported):
			// Not fatal: the headroom alone still bounds the heap.
			log.Warn("reading the container's memory limit", "err", err)
		}
	}
	if t.headroom == 0 && t.container == 0 {
		return nil, "untuned"
	}
	gogc, limit := currentGCPercent(), debug.SetMemoryLimit(-1)
	t.update()
	t.armAfterGC()
	go func() {
		poll := time.NewTicker(pollInterval)
		defer poll.Stop()
		for {
			select {
			case <-ctx.Done():
				t.stop(gogc, limit)
				return
			case <-poll.C:
				t.update()
			}
		}
	}()
	return t, strings.Join(did, "; ")
}

// currentGCPercent reads GOGC without changing it (-1 when off).
func currentGCPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return GCPercent
	}
	v := s[0].Value.Uint64()
	if v > math.MaxInt32 {
		return -1
	}
	return int(v)
}

// pollInterval is how often TuneGC checks for a collection that the hook
// after each one missed. Collections came every 0.3-0.6 s in the
// benchmarks; a sample costs a few microseconds.
const pollInterval = 100 * time.Millisecond

var memMetrics = []string{
	"/gc/cycles/total:gc-cycles",
	"/gc/heap/live:bytes",
	"/memory/classes/total:bytes",
	"/memory/classes/heap/objects:bytes",
	"/memory/classes/heap/unused:bytes",
	"/memory/classes/heap/free:bytes",
	"/memory/classes/heap/released:bytes",
}

func readMemSample(withRSS bool) MemSample {
	samples := make([]metrics.Sample, len(memMetrics))
	for i, name := range memMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	v := func(i int) uint64 {
		if samples[i].Value.Kind() != metrics.KindUint64 {
			return 0
		}
		return samples[i].Value.Uint64()
	}
	cycles, live, total, objects, unused, free, released := v(0), v(1), v(2), v(3), v(4), v(5), v(6)
	s := MemSample{Cycles: cycles, Live: live, Mapped: total - released}
	if heap := objects + unused + free + released; total > heap {
		s.Runtime = total - heap
	}
	if withRSS {
		s.RSS = residentSet()
	}
	return s
}

// residentSet reads the process's resident set from /proc (Linux), 0 where
// it cannot.
func residentSet() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// EnvHeadroom is the headroom STREAMER_GC_HEADROOM asks for, or
// DefaultHeadroom if it is unset or empty, for programs without the
// --gc-headroom flag (the benchmarks).
func EnvHeadroom() (uint64, error) {
	if v := os.Getenv(HeadroomEnv); v != "" {
		return ParseSize(v)
	}
	return DefaultHeadroom, nil
}

// ParseSize parses a size in bytes as GOMEMLIMIT writes them: a number
// with an optional unit B, KiB, MiB, GiB or TiB (KB, MB, GB, TB are
// powers of 1000). "off" is 0.
func ParseSize(s string) (uint64, error) {
	t := strings.TrimSpace(s)
	if t == "off" {
		return 0, nil
	}
	units := []struct {
		suffix string
		mult   uint64
	}{
		{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"B", 1},
	}
	mult := uint64(1)
	for _, u := range units {
		if strings.HasSuffix(t, u.suffix) {
			t, mult = strings.TrimSpace(strings.TrimSuffix(t, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseUint(t, 10, 64)
	if err != nil || n > math.MaxInt64/mult {
		return 0, fmt.Errorf("%q is not a size: want bytes with an optional unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, TB), or off", s)
	}
	return n * mult, nil
}

// FormatSize writes n in the largest binary unit that divides it, "off"
// for 0.
func FormatSize(n uint64) string {
	if n == 0 {
		return "off"
	}
	for _, u := range []struct {
		suffix string
		shift  uint
	}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}} {
		if n%(1<<u.shift) == 0 {
			return strconv.FormatUint(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatUint(n, 10) + "B"
}
