package engine_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/pipes"
)

// blocking is where the "blocker" test pipe waits: Process returns only
// once the channel is closed.
var blocking struct {
	sync.Mutex
	ch chan struct{}
}

func init() {
	pipes.MustRegister("blocker", pipes.Spec{Summary: "test: blocks in Process until released"},
		func(_ struct{}, _ *pipes.Env) (pipes.Pipe, error) { return blocker{}, nil })
}

type blocker struct{}

func (blocker) Process(ctx context.Context, b *pipes.Batch, out *pipes.Output) error {
	blocking.Lock()
	ch := blocking.ch
	blocking.Unlock()
	<-ch
	for _, r := range b.Records {
		out.Emit(0, r)
	}
	return nil
}

// TestLiveness: a loop stuck in one poll's records for longer than the
// liveness timeout is reported (so /healthz fails and the pod restarts);
// an idle loop, and one that got going again, is live. Ready goes false
// when Run returns.
func TestLiveness(t *testing.T) {
	blocking.ch = make(chan struct{})
	brokers := cluster(t, map[string]int32{"in": 1, "out": 1})
	top := compile(t, `
name: stuck
datasets:
  in: {topic: in}
  out: {topic: out}
pipes:
  b:
    from: in
    to: out
    blocker: {}
`)
	e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: "a", StateDir: t.TempDir(), Logger: discard, LivenessTimeout: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				close(blocking.ch)
				cancel()
				t.Fatalf("timed out waiting for %s (run: %v)", what, <-done)
			}
		}
	}
	waitFor("ready", e.Ready)
	time.Sleep(500 * time.Millisecond) // idle, polling: live
	if err := e.Live(); err != nil {
		t.Fatalf("idle replica: %v", err)
	}
	cl := client(t, brokers)
	if err := cl.ProduceSync(ctx, &kgo.Record{Topic: "in", Value: []byte(`{}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor("Live to report the stuck loop", func() bool { return e.Live() != nil })
	close(blocking.ch)
	waitFor("Live to recover", func() bool { return e.Live() == nil && e.Stats().Commits.Load() > 0 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if e.Ready() {
		t.Error("ready after Run returned")
	}
}
