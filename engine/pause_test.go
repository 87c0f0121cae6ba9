package engine_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/pipes"
)

// down makes the "flaky" pipe fail partition 0's batches as unavailable.
var down atomic.Bool

type flakyConfig struct{}

type flaky struct{}

func (flaky) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	// Only partition 0 fails: the others' outputs are already produced,
	// buffered in the transaction, when the loop aborts it.
	if down.Load() && b.Partition == 0 {
		return fmt.Errorf("model server: %w", pipes.ErrUnavailable)
	}
	for _, r := range b.Records {
		m := r.Value.(map[string]any)
		m["double"] = m["id"].(int64) * 2
		out.Emit(0, r)
	}
	return nil
}

func init() {
	pipes.MustRegister("flaky", pipes.Spec{Summary: "test: doubles id, or fails as unavailable"},
		func(flakyConfig, *pipes.Env) (pipes.Pipe, error) { return flaky{}, nil })
}

type pauses struct{ n atomic.Int64 }

func (p *pauses) OnPause(engine.Pause) { p.n.Add(1) }

// TestUnavailableDependencyPausesWithoutLoss fails partition 0's batches
// as unavailable for a while, while the other partitions' outputs are
// produced into the same transactions: the replica must keep running,
// abort and retry the same records, and in the end have written each
// exactly once, with nothing dead-lettered.
func TestUnavailableDependencyPausesWithoutLoss(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 3})
	top := compile(t, `
name: pause
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 3}}
  dead: {topic: dead, create: {partitions: 1}}
dead_letter: dead
pipes:
  tag:
    from: in
    to: out
    flaky: {}
`)
	const n = 3000
	if err := produce(brokers, 0, n/2); err != nil {
		t.Fatal(err)
	}
	down.Store(true)
	h := &pauses{}
	e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: "p", Hooks: []engine.Hook{h},
		RetryBackoff: 20 * time.Millisecond, MaxRetryBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	deadline := time.Now().Add(30 * time.Second)
	for h.n.Load() < 3 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if h.n.Load() < 3 {
		t.Fatalf("%d pauses while the dependency was down, want at least 3", h.n.Load())
	}
	if c := e.Stats().CommittedIn.Load(); c != 0 {
		t.Fatalf("%d records committed while every batch failed", c)
	}
	down.Store(false)
	if err := produce(brokers, n/2, n); err != nil {
		t.Fatal(err)
	}
	for e.Stats().CommittedIn.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("replica: %v", err)
	}
	if got := e.Stats().Pauses.Load(); got != h.n.Load() {
		t.Errorf("Stats.Pauses %d, hook saw %d", got, h.n.Load())
	}
	if d := e.Stats().DeadLettered.Load(); d != 0 {
		t.Errorf("%d records dead-lettered because a dependency was down", d)
	}
	checkExactlyOnce(t, brokers, n)
}
