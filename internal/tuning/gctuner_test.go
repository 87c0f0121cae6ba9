package tuning

import (
	"log/slog"
	"math"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"slices"
	"testing"
)

const mib = 1 << 20

// fakeTuner is a GCTuner over a fake sample, recording what it sets.
type fakeTuner struct {
	*GCTuner
	sample MemSample
	gogcs  []int
	limits []int64
}

func newFake(headroom uint64, maxGOGC int, container uint64) *fakeTuner {
	f := &fakeTuner{}
	f.GCTuner = &GCTuner{
		headroom: headroom, maxGOGC: maxGOGC, container: container,
		read: func(withRSS bool) MemSample {
			s := f.sample
			if !withRSS {
				s.RSS = 0
			}
			return s
		},
		setGOGC:  func(n int) int { f.gogcs = append(f.gogcs, n); return 0 },
		setLimit: func(n int64) int64 { f.limits = append(f.limits, n); return 0 },
	}
	return f
}

func TestGCTunerSettings(t *testing.T) {
	tests := []struct {
		name      string
		headroom  uint64
		maxGOGC   int
		container uint64
		sample    MemSample
		gogc      int   // 0: none set
		limit     int64 // 0: none set
	}{
		{"large live heap: grows by the headroom",
			192 * mib, 400, 0, MemSample{Live: 100 * mib}, 192, 0},
		{"small live heap: the full GOGC",
			192 * mib, 400, 0, MemSample{Live: 30 * mib}, 400, 0},
		{"no live heap measured yet: the full GOGC",
			192 * mib, 400, 0, MemSample{}, 400, 0},
		{"user's lower GOGC is the ceiling",
			192 * mib, 100, 0, MemSample{Live: 50 * mib}, 100, 0},
		{"GOGC off is left alone",
			192 * mib, -1, 0, MemSample{Live: 500 * mib}, 0, 0},
		{"huge live heap: floored at minGCPercent",
			192 * mib, 400, 0, MemSample{Live: 4096 * mib}, minGCPercent, 0},
		{"no headroom: GOGC left alone",
			0, 400, 0, MemSample{Live: 100 * mib}, 0, 0},
		{"container: its share",
			0, 400, 900 * mib, MemSample{Live: 100 * mib, Runtime: 20 * mib, Mapped: 250 * mib, RSS: 250 * mib}, 0, 900 * mib},
		{"container: memory outside Go comes off",
			192 * mib, 400, 900 * mib, MemSample{Live: 100 * mib, Runtime: 20 * mib, Mapped: 250 * mib, RSS: 350 * mib}, 192, 800 * mib},
		{"container smaller than the live heap: never below the floor",
			192 * mib, 400, 100 * mib, MemSample{Live: 200 * mib, Runtime: 20 * mib, Mapped: 300 * mib, RSS: 400 * mib}, 96, 270 * mib},
		{"outside memory larger than the container share: the floor",
			0, 400, 100 * mib, MemSample{Live: 40 * mib, Runtime: 10 * mib, Mapped: 60 * mib, RSS: 300 * mib}, 0, 66 * mib},
		{"huge numbers do not overflow",
			math.MaxInt64, 400, math.MaxUint64 / 2, MemSample{Live: math.MaxUint64 / 2, Runtime: math.MaxUint64 / 2}, 100, math.MaxInt64},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(tt.headroom, tt.maxGOGC, tt.container)
			f.sample = tt.sample
			if !f.update() {
				t.Fatal("update reported stopped")
			}
			wantGOGC := []int{}
			if tt.gogc != 0 {
				wantGOGC = []int{tt.gogc}
			}
			if !slices.Equal(f.gogcs, wantGOGC) {
				t.Errorf("set GOGC %v, want %v", f.gogcs, wantGOGC)
			}
			wantLimits := []int64{}
			if tt.limit != 0 {
				wantLimits = []int64{tt.limit}
			}
			if !slices.Equal(f.limits, wantLimits) {
				t.Errorf("set limits %v MiB, want %v", mibs(f.limits), mibs(wantLimits))
			}
			// The same sample again sets nothing new.
			n, m := len(f.gogcs), len(f.limits)
			f.update()
			if len(f.gogcs) != n || len(f.limits) != m {
				t.Errorf("a second update with the same sample set GOGC %v, limits %v", f.gogcs[n:], f.limits[m:])
			}
		})
	}
}

func TestGCTunerFollowsLiveHeapAndStops(t *testing.T) {
	f := newFake(200*mib, 400, 1000*mib)
	for i, live := range []uint64{20, 100, 400, 50} {
		f.sample = MemSample{Cycles: uint64(i + 1), Live: live * mib, Runtime: 10 * mib, Mapped: 2 * live * mib, RSS: 2*live*mib + 100*mib}
		f.update()
	}
	if want := []int{400, 200, 50, 400}; !slices.Equal(f.gogcs, want) {
		t.Errorf("GOGC %v, want %v", f.gogcs, want)
	}
	if want := []float64{900}; !slices.Equal(mibs(f.limits), want) {
		t.Errorf("limits %v MiB, want %v", mibs(f.limits), want)
	}
	f.stop(400, math.MaxInt64)
	if g, l := f.gogcs[len(f.gogcs)-1], f.limits[len(f.limits)-1]; g != 400 || l != math.MaxInt64 {
		t.Errorf("stop set GOGC %d and limit %d, want the ones before", g, l)
	}
	n, m := len(f.gogcs), len(f.limits)
	f.sample.Live, f.sample.Cycles = 700*mib, 99
	if f.update() {
		t.Error("update after stop reported running")
	}
	if len(f.gogcs) != n || len(f.limits) != m {
		t.Errorf("update after stop set GOGC %v, limits %v", f.gogcs[n:], f.limits[m:])
	}
}

func TestGCTunerSkipsASeenCycle(t *testing.T) {
	f := newFake(192*mib, 400, 0)
	f.sample = MemSample{Cycles: 7, Live: 100 * mib}
	f.update()
	// The hook and the poll both see cycle 7; the live heap read the
	// second time is the same collection's, whatever it says.
	f.sample.Live = 300 * mib
	f.update()
	f.sample.Cycles = 8
	f.update()
	if want := []int{192, 64}; !slices.Equal(f.gogcs, want) {
		t.Errorf("GOGC %v, want %v", f.gogcs, want)
	}
}

func TestReadMemSample(t *testing.T) {
	known := map[string]bool{}
	for _, d := range metrics.All() {
		known[d.Name] = true
	}
	for _, name := range memMetrics {
		if !known[name] {
			t.Errorf("runtime/metrics has no %s", name)
		}
	}
	runtime.GC()
	s := readMemSample(true)
	if s.Cycles == 0 || s.Live == 0 || s.Runtime == 0 || s.Mapped == 0 {
		t.Errorf("after a collection: %+v, want every field set", s)
	}
	if _, err := os.Stat("/proc/self/statm"); err == nil && s.RSS == 0 {
		t.Error("no resident set read from /proc/self/statm")
	}
}

func TestTuneGC(t *testing.T) {
	gogc, limit := currentGCPercent(), debug.SetMemoryLimit(-1)
	defer func() {
		debug.SetGCPercent(gogc)
		debug.SetMemoryLimit(limit)
	}()
	t.Setenv("GOGC", "100")
	t.Setenv("GOMEMLIMIT", "1GiB")
	if tu, desc := TuneGC(t.Context(), 192*mib, slog.Default()); tu != nil {
		t.Fatalf("with GOGC and GOMEMLIMIT set: tuning %q; want none", desc)
	}
	os.Unsetenv("GOGC") // t.Setenv puts it back
	os.Unsetenv("GOMEMLIMIT")
	debug.SetGCPercent(GCPercent)
	tu, desc := TuneGC(t.Context(), 192*mib, slog.Default())
	if tu == nil {
		t.Fatalf("no tuner: %q", desc)
	}
	tu.stop(GCPercent, limit) // what cancelling the context does, without waiting for it
	if g, _ := tu.Settings(); g < minGCPercent || g > GCPercent {
		t.Errorf("GOGC set to %d, want %d to %d", g, minGCPercent, GCPercent)
	}
	if g := currentGCPercent(); g != GCPercent {
		t.Errorf("after stop GOGC is %d, want %d back", g, GCPercent)
	}
}

func TestEnvHeadroom(t *testing.T) {
	for _, tt := range []struct {
		env  string
		want uint64
		err  bool
	}{{"", DefaultHeadroom, false}, {"256MiB", 256 * mib, false}, {"off", 0, false}, {"lots", 0, true}} {
		t.Setenv(HeadroomEnv, tt.env)
		got, err := EnvHeadroom()
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("%s=%q: %d, %v; want %d, error %v", HeadroomEnv, tt.env, got, err, tt.want, tt.err)
		}
	}
}

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want uint64
		err  bool
	}{
		{"192MiB", 192 << 20, false},
		{"1GiB", 1 << 30, false},
		{"512 KiB", 512 << 10, false},
		{"300MB", 300e6, false},
		{"1048576", 1 << 20, false},
		{"100B", 100, false},
		{"0", 0, false},
		{"off", 0, false},
		{"", 0, true},
		{"-1MiB", 0, true},
		{"1.5GiB", 0, true},
		{"12 parsecs", 0, true},
		{"99999999999TiB", 0, true},
		{"18446744073709551615", 0, true},
	}
	for _, tt := range tests {
		got, err := ParseSize(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
	for _, n := range []uint64{0, 100, 1 << 10, 192 << 20, 3 << 30, 1<<20 + 1} {
		back, err := ParseSize(FormatSize(n))
		if err != nil || back != n {
			t.Errorf("FormatSize(%d) = %q parses back to %d, %v", n, FormatSize(n), back, err)
		}
	}
}

func mibs(v []int64) []float64 {
	out := make([]float64, len(v))
	for i, n := range v {
		out[i] = float64(n) / mib
	}
	return out
}
