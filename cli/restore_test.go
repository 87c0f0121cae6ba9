package cli

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/streamerio/streamer/engine"
)

type fakeReadiness struct {
	mu        sync.Mutex
	ready     bool
	restoring []engine.RestoreProgress
	loading   int
	stuck     error
}

func (f *fakeReadiness) Live() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stuck
}

func (f *fakeReadiness) LoadingTables() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.loading
}

func (f *fakeReadiness) Ready() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ready
}

func (f *fakeReadiness) Restoring() []engine.RestoreProgress {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.restoring
}

func (f *fakeReadiness) set(ready bool, rs ...engine.RestoreProgress) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ready, f.restoring = ready, rs
}

type noPage struct{}

func (noPage) Register(*http.ServeMux) {}

func TestReadyz(t *testing.T) {
	started := time.Now().Add(-10 * time.Second)
	half := engine.RestoreProgress{Store: "count", Partition: 3, From: 0, End: 1000, Position: 500, Started: started}
	unknown := engine.RestoreProgress{Store: "totals", Partition: 0, End: -1, Started: started}
	tests := []struct {
		name      string
		ready     bool
		restoring []engine.RestoreProgress
		loading   int
		code      int
		body      []string
	}{
		{"not joined", false, nil, 0, 503, []string{"not joined its group"}},
		{"loading tables", false, nil, 3, 503, []string{"reading the tables that 3 assigned partitions join"}},
		{"restoring", false, []engine.RestoreProgress{half, unknown}, 0, 503, []string{
			"restoring state (2 store partitions)",
			"store count partition 3: 500 of 1000 changelog offsets (50%), 50/s, about 10s left",
			"store totals partition 0: starting",
		}},
		{"ready", true, nil, 0, 200, []string{"ready"}},
	}
	f := &fakeReadiness{}
	ops, err := serveOps("127.0.0.1:0", httpFlags{}, http.NotFoundHandler(), f, noPage{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ops.stop()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.set(tt.ready, tt.restoring...)
			f.mu.Lock()
			f.loading = tt.loading
			f.mu.Unlock()
			resp, err := http.Get("http://" + ops.addr.String() + "/readyz")
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tt.code, b)
			}
			for _, s := range tt.body {
				if !strings.Contains(string(b), s) {
					t.Errorf("body lacks %q:\n%s", s, b)
				}
			}
		})
	}
}

// TestRestoreBar feeds restore reports to the terminal bar: it appears with
// the first restore that has records to read, counts both restores' offsets,
// lets log lines through, and goes away when both are done.
func TestRestoreBar(t *testing.T) {
	var out bytes.Buffer
	b := newRestoreBar(&out)
	b.width, b.throttle = 20, 0
	start := time.Now()
	rep := func(store string, part int32, pos int64, done bool) engine.RestoreProgress {
		return engine.RestoreProgress{Store: store, Partition: part, From: 0, End: 1000, Position: pos, Started: start, Done: done}
	}
	steps := []struct {
		name string
		p    engine.RestoreProgress
		bar  bool // shown after this report
		max  int64
	}{
		{"nothing to read", engine.RestoreProgress{Store: "empty", End: 5, From: 5, Started: start, Done: true}, false, 0},
		{"first starts", rep("count", 0, 0, false), true, 1000},
		{"second starts", rep("count", 1, 0, false), true, 2000},
		{"first halfway", rep("count", 0, 500, false), true, 2000},
		{"first done", rep("count", 0, 1000, true), true, 2000},
		{"second done", rep("count", 1, 1000, true), false, 0},
	}
	for _, s := range steps {
		b.OnRestoreProgress(s.p)
		if (b.bar != nil) != s.bar {
			t.Fatalf("%s: bar shown %v, want %v", s.name, b.bar != nil, s.bar)
		}
		if s.bar && b.bar.GetMax64() != s.max {
			t.Fatalf("%s: bar max %d, want %d", s.name, b.bar.GetMax64(), s.max)
		}
		if s.name == "first halfway" {
			if got := b.bar.State().CurrentNum; got != 500 {
				t.Fatalf("bar at %d, want 500", got)
			}
			if _, err := b.Write([]byte("level=INFO msg=\"a log line\"\n")); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, want := range []string{"restoring state (2 partitions)", "a log line", "restoring count[1]"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%q", want, out.String())
		}
	}
	if strings.Contains(out.String(), "empty") {
		t.Errorf("a restore with nothing to read was shown:\n%q", out.String())
	}
}

// TestHealthz: liveness follows the engine's Live, so that a stuck loop
// gets the pod restarted; readiness is separate.
func TestHealthz(t *testing.T) {
	f := &fakeReadiness{}
	ops, err := serveOps("127.0.0.1:0", httpFlags{}, http.NotFoundHandler(), f, noPage{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ops.stop()
	get := func() (int, string) {
		resp, err := http.Get("http://" + ops.addr.String() + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 200 {
		t.Fatalf("live loop: %d %q", code, body)
	}
	f.mu.Lock()
	f.stuck = errors.New("the processing loop has been stuck for 1m")
	f.mu.Unlock()
	if code, body := get(); code != 503 || !strings.Contains(body, "stuck") {
		t.Fatalf("stuck loop: %d %q, want 503 saying why", code, body)
	}
}
