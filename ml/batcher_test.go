package ml_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamerio/streamer/ml"
)

// sumModel scores a row as the sum of its features. It can be told to fail,
// to block, and to reject rows whose first feature is negative.
type sumModel struct {
	features int
	calls    atomic.Int64
	rowsSeen atomic.Int64
	running  atomic.Int64
	peak     atomic.Int64
	fail     atomic.Int64 // calls left to fail with a retryable error
	gate     chan struct{}
	delay    time.Duration // each call's time
}

type temporary struct{ error }

func (temporary) Retryable() bool { return true }

func (m *sumModel) NumFeatures() int { return m.features }
func (m *sumModel) NumOutputs() int  { return 1 }

func (m *sumModel) Predict(ctx context.Context, rows []float32, out []float64) error {
	m.calls.Add(1)
	n := m.running.Add(1)
	defer m.running.Add(-1)
	for p := m.peak.Load(); n > p && !m.peak.CompareAndSwap(p, n); p = m.peak.Load() {
	}
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	time.Sleep(m.delay)
	if m.fail.Add(-1) >= 0 {
		return temporary{errors.New("connection refused")}
	}
	for i := range out {
		row := rows[i*m.features : (i+1)*m.features]
		if row[0] < 0 {
			return fmt.Errorf("row %d: negative feature", i)
		}
		s := 0.0
		for _, v := range row {
			s += float64(v)
		}
		out[i] = s
	}
	m.rowsSeen.Add(int64(len(out)))
	return nil
}

// rowsFor makes n rows whose sums identify the caller and row.
func rowsFor(caller, n, features int) ([]float32, []float64) {
	rows := make([]float32, n*features)
	want := make([]float64, n)
	for i := range n {
		rows[i*features] = float32(caller*10000 + i)
		want[i] = float64(caller*10000 + i)
	}
	return rows, want
}

func TestBatcherMergesCallersAndKeepsEachOnesScores(t *testing.T) {
	for _, tt := range []struct {
		name               string
		callers, rows, max int
		linger, delay      time.Duration
		inFlight           int
		maxCalls, minCalls int64
	}{
		// While the model is busy, the rows of the partitions that wait
		// go together in the next call.
		{name: "small partitions share calls to a busy model", callers: 8, rows: 10, max: 256, linger: time.Millisecond, delay: 50 * time.Millisecond, inFlight: 1, maxCalls: 3, minCalls: 1},
		{name: "a big caller is split", callers: 1, rows: 1000, max: 256, linger: time.Millisecond, maxCalls: 4, minCalls: 4},
		// Full calls, and calls nobody else is adding to, do not linger.
		{name: "full calls go before the linger ends", callers: 4, rows: 300, max: 100, linger: time.Hour, maxCalls: 12, minCalls: 12},
		{name: "a lone caller does not linger", callers: 1, rows: 10, max: 256, linger: time.Hour, maxCalls: 1, minCalls: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := &sumModel{features: 3, delay: tt.delay}
			b := ml.NewBatcher(m, ml.BatchOptions{MaxRows: tt.max, Linger: tt.linger, InFlight: tt.inFlight})
			defer b.Close()
			var wg sync.WaitGroup
			errs := make([]error, tt.callers)
			for c := range tt.callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					rows, want := rowsFor(c, tt.rows, 3)
					out := make([]float64, tt.rows)
					if err := b.Predict(context.Background(), rows, out); err != nil {
						errs[c] = err
						return
					}
					for i := range out {
						if out[i] != want[i] {
							errs[c] = fmt.Errorf("caller %d row %d: %v, want %v", c, i, out[i], want[i])
							return
						}
					}
				}()
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatal(err)
			}
			if n := m.calls.Load(); n > tt.maxCalls || n < tt.minCalls {
				t.Errorf("%d model calls, want %d to %d", n, tt.minCalls, tt.maxCalls)
			}
			if got, want := m.rowsSeen.Load(), int64(tt.callers*tt.rows); got != want {
				t.Errorf("model scored %d rows, want %d", got, want)
			}
		})
	}
}

func TestBatcherBoundsCallsInFlightAndBlocksCallers(t *testing.T) {
	m := &sumModel{features: 1, gate: make(chan struct{})}
	b := ml.NewBatcher(m, ml.BatchOptions{MaxRows: 10, Linger: time.Microsecond, InFlight: 2, Timeout: time.Minute})
	defer b.Close()
	var returned atomic.Int64
	var wg sync.WaitGroup
	for c := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rows, _ := rowsFor(c, 10, 1)
			if err := b.Predict(context.Background(), rows, make([]float64, 10)); err != nil {
				t.Error(err)
			}
			returned.Add(1)
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if n := m.running.Load(); n != 2 {
		t.Errorf("%d calls running, want 2 (InFlight)", n)
	}
	if n := returned.Load(); n != 0 {
		t.Errorf("%d callers returned while the model was blocked", n)
	}
	close(m.gate)
	wg.Wait()
	if p := m.peak.Load(); p > 2 {
		t.Errorf("peak %d calls at once, want at most 2", p)
	}
}

// breakerHook records breaker changes and calls.
type breakerHook struct {
	mu      sync.Mutex
	changes []bool
	calls   []ml.ModelCall
}

func (h *breakerHook) OnModelCall(c ml.ModelCall) {
	h.mu.Lock()
	h.calls = append(h.calls, c)
	h.mu.Unlock()
}
func (h *breakerHook) OnBreaker(_ string, open bool) {
	h.mu.Lock()
	h.changes = append(h.changes, open)
	h.mu.Unlock()
}

func TestBatcherRetriesThenOpensTheBreaker(t *testing.T) {
	m := &sumModel{features: 1}
	h := &breakerHook{}
	b := ml.NewBatcher(m, ml.BatchOptions{Retries: 2, Backoff: time.Millisecond, BreakerFailures: 2, BreakerCooldown: 200 * time.Millisecond, Hook: h, Name: "fraud"})
	defer b.Close()
	predict := func() error {
		rows, _ := rowsFor(1, 4, 1)
		return b.Predict(context.Background(), rows, make([]float64, 4))
	}

	// Two failures are retried away.
	m.fail.Store(2)
	if err := predict(); err != nil {
		t.Fatalf("after 2 transient failures and 2 retries: %v", err)
	}
	if n := m.calls.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}

	// Calls that exhaust their retries are unavailable; the second in a
	// row opens the breaker, which then refuses without calling the model.
	m.fail.Store(1000)
	for i := range 2 {
		if err := predict(); !errors.Is(err, ml.ErrUnavailable) || errors.Is(err, ml.ErrCircuitOpen) {
			t.Fatalf("call %d: %v, want unavailable after retries", i, err)
		}
	}
	before := m.calls.Load()
	if err := predict(); !errors.Is(err, ml.ErrCircuitOpen) || !errors.Is(err, ml.ErrUnavailable) {
		t.Fatalf("with the breaker open: %v", err)
	}
	if m.calls.Load() != before {
		t.Fatal("the open breaker let a call reach the model")
	}

	// After the cooldown a probe goes through; its success closes it.
	m.fail.Store(0)
	time.Sleep(250 * time.Millisecond)
	if err := predict(); err != nil {
		t.Fatalf("probe after cooldown: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if fmt.Sprint(h.changes) != "[true false]" {
		t.Errorf("breaker changes %v, want [true false]", h.changes)
	}
	if c := h.calls[0]; c.Model != "fraud" || c.Attempts != 3 || c.Err != nil || c.Rows != 4 {
		t.Errorf("first call reported as %+v", c)
	}
}

func TestBatcherBlamesOnlyTheRowsTheModelRejects(t *testing.T) {
	m := &sumModel{features: 2}
	b := ml.NewBatcher(m, ml.BatchOptions{MaxRows: 64, Linger: 50 * time.Millisecond})
	defer b.Close()
	bad := map[int]bool{3: true, 40: true, 41: true, 99: true}
	rows, want := rowsFor(0, 100, 2)
	for i := range bad {
		rows[i*2] = -1
	}
	out := make([]float64, 100)
	err := b.Predict(context.Background(), rows, out)
	var re *ml.RowErrors
	if !errors.As(err, &re) {
		t.Fatalf("got %v, want *RowErrors", err)
	}
	if len(re.Rows) != len(bad) {
		t.Errorf("blamed rows %v, want %v", re.Rows, bad)
	}
	for i := range re.Rows {
		if !bad[i] {
			t.Errorf("row %d blamed", i)
		}
	}
	for i := range out {
		if !bad[i] && out[i] != want[i] {
			t.Errorf("row %d scored %v, want %v", i, out[i], want[i])
		}
	}
}

func TestBatcherRejectsMisshapenInput(t *testing.T) {
	b := ml.NewBatcher(&sumModel{features: 3}, ml.BatchOptions{})
	defer b.Close()
	if err := b.Predict(context.Background(), make([]float32, 5), make([]float64, 2)); err == nil {
		t.Fatal("5 values for 2 rows of 3 features were accepted")
	}
	if err := b.Predict(context.Background(), nil, nil); err != nil {
		t.Fatalf("no rows: %v", err)
	}
}

func TestBatcherFailsAfterClose(t *testing.T) {
	b := ml.NewBatcher(&sumModel{features: 1}, ml.BatchOptions{})
	rows, _ := rowsFor(0, 1, 1)
	if err := b.Predict(context.Background(), rows, make([]float64, 1)); err != nil {
		t.Fatal(err)
	}
	b.Close()
	b.Close()
	if err := b.Predict(context.Background(), rows, make([]float64, 1)); err == nil {
		t.Fatal("Predict after Close succeeded")
	}
}

func TestIsRetryable(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want bool
	}{
		{context.DeadlineExceeded, true},
		{fmt.Errorf("call: %w", context.DeadlineExceeded), true},
		{temporary{errors.New("503")}, true},
		{fmt.Errorf("wrapped: %w", temporary{errors.New("503")}), true},
		{errors.New("bad shape"), false},
		{context.Canceled, false},
	} {
		if got := ml.IsRetryable(tt.err); got != tt.want {
			t.Errorf("IsRetryable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
