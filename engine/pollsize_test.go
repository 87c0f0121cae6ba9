package engine

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/topology"
)

// TestPollSizer: the first poll is small; then a poll takes what fits in a
// quarter of the transaction timeout at the slowest recent speed, between
// 1 and max_poll_records; a slowdown counts at once, a speed-up by halves.
func TestPollSizer(t *testing.T) {
	p := newPollSizer(10000, 20*time.Second, slog.Default()) // budget 5 s
	if got := p.limit(); got != firstPoll {
		t.Fatalf("first limit %d, want %d", got, firstPoll)
	}
	p.observe(100, time.Millisecond) // 10 µs a record: everything fits
	if got := p.limit(); got != 10000 {
		t.Fatalf("fast pipes: limit %d, want max_poll_records", got)
	}
	p.observe(10000, 100*time.Second) // 10 ms a record: slower at once
	if got := p.limit(); got != 500 {
		t.Fatalf("slow pipes: limit %d, want 500 (5 s / 10 ms)", got)
	}
	p.observe(500, 500*time.Millisecond) // 1 ms a record: (10+1)/2 = 5.5 ms
	if got := p.limit(); got != 909 {
		t.Fatalf("after a faster poll: limit %d, want 909 (5 s / 5.5 ms)", got)
	}
	p.observe(1, time.Minute) // slower than the whole budget: still 1
	if got := p.limit(); got != 1 {
		t.Fatalf("very slow pipes: limit %d, want 1", got)
	}
	p.observe(0, time.Hour) // nothing processed: nothing learnt
	if got := p.limit(); got != 1 {
		t.Fatalf("an empty poll changed the limit to %d", got)
	}
}

// TestSlowPipePollsFewer: a pipe slow enough that a full poll would outlast
// the transaction is given polls that fit in a quarter of the transaction
// timeout, and the run still gets through every record.
func TestSlowPipePollsFewer(t *testing.T) {
	var biggest, seen atomic.Int64
	type slowConfig struct{}
	slow := pipes.MustNewType("slow", pipes.Spec{Summary: "Sleeps 10 ms a record.", Example: "{}", KeepsSchema: true},
		func(slowConfig, *pipes.Env) (pipes.Pipe, error) {
			return slowPipe(func(n int) {
				seen.Add(int64(n))
				for {
					b := biggest.Load()
					if int64(n) <= b || biggest.CompareAndSwap(b, int64(n)) {
						return
					}
				}
			}), nil
		})
	env := pipes.NewEnvironment()
	env.MustRegister(slow)
	const src = `
name: slow
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 1}}
pipes:
  wait:
    from: in
    to: out
    slow: {}
`
	top, err := topology.Compile("t.yaml", []byte(src), fstest.MapFS{}, topology.WithPipes(env))
	if err != nil {
		t.Fatal(err)
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	const n = 600
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: "in", Key: []byte{byte(i)}, Value: []byte(`{}`)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	cl.Close()
	// Transaction timeout 8 s: a quarter is 2 s, 200 records at 10 ms.
	e, err := New(top, Options{Brokers: brokers, ReplicaID: "r", Logger: slog.Default(),
		SessionTimeout: 6 * time.Second, TransactionTimeout: 8 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	deadline := time.Now().Add(60 * time.Second)
	for e.Stats().CommittedIn.Load() < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	if got := e.Stats().CommittedIn.Load(); got != n {
		t.Fatalf("committed %d of %d records", got, n)
	}
	// 10 ms a record and more (sleeps overrun): at most 200 a poll, and
	// the first poll 100. Without the sizer the first poll takes all 600.
	if b := biggest.Load(); b > 200 {
		t.Errorf("the slow pipe got a batch of %d records, more than fit in a quarter of the transaction timeout (200)", b)
	}
}

type slowPipe func(n int)

func (f slowPipe) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	f(len(b.Records))
	for _, r := range b.Records {
		time.Sleep(10 * time.Millisecond)
		out.Emit(0, r)
	}
	return nil
}
