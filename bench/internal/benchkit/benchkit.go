// Package benchkit owns the pieces the end-to-end benchmarks share: the
// deterministic input (Fill) and the raw franz-go passthrough loop (the
// limit any Kafka processor is measured against). bench (go run ./bench)
// and bench/peers (go run ./bench/peers) both run them, so the two
// measure the same thing.
package benchkit

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/gen"
)

// Input says what Fill produces: n orders from internal/gen with seed 42,
// no bad records.
type Input struct {
	Records int
	Size    int  // gen.Orders.Pad
	Wide    bool // gen.Orders.Wide
}

// Orders returns the generator of the input, positioned at its start: the
// same sequence Fill produced, for oracles.
func (in Input) Orders() *gen.Orders {
	g := gen.NewOrders(42)
	g.Pad = in.Size
	g.Wide = in.Wide
	g.BadEvery = 0
	return g
}

// Fill produces the input to topic: fast, non-transactional, big batches.
// It returns the bytes of values produced.
func Fill(ctx context.Context, brokers []string, topic string, in Input) (int64, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(brokers...),
		kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(1<<16),
	)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	g := in.Orders()
	var (
		first FirstErr
		bytes int64
	)
	for i := 0; i < in.Records; i++ {
		o := g.Next()
		bytes += int64(len(o.Value))
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: o.Key, Value: o.Value}, first.Promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	return bytes, first.Err()
}

// FirstErr keeps the first error of the produce promises it is given to.
// Its methods may be called concurrently.
type FirstErr struct {
	mu  sync.Mutex
	err error
}

// Promise is a produce promise that records err if it is the first.
func (f *FirstErr) Promise(_ *kgo.Record, err error) {
	if err == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err == nil {
		f.err = err
	}
}

// Err returns the first error recorded, or nil.
func (f *FirstErr) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// PassthroughOpts are the client options of the passthrough besides the
// seeds, group and topic: the same buffer and batch limits as the engine's
// client, franz-go's default linger and compression, so that the
// difference to a streamer run is the engine.
func PassthroughOpts() []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.MaxBufferedRecords(1 << 16),
		kgo.ProducerBatchMaxBytes(1 << 20),
	}
}

// Passthrough reads n records with cl (a group client made with
// PassthroughOpts, no transactions) and produces every one unchanged to
// output, then flushes. started is called once, when the first records
// have been polled and before they are produced: the start of the timed
// interval. Passthrough must not be called concurrently with other uses
// of cl.
func Passthrough(ctx context.Context, cl *kgo.Client, output string, n int, started func() error) error {
	var (
		produced atomic.Int64
		prodErr  atomic.Pointer[error]
	)
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			prodErr.CompareAndSwap(nil, &err)
			return
		}
		produced.Add(1)
	}
	consumed := 0
	for consumed < n {
		fs := cl.PollRecords(ctx, 10000)
		if ctx.Err() != nil {
			return fmt.Errorf("consumed %d of %d: %w", consumed, n, ctx.Err())
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetching %s[%d]: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		k := fs.NumRecords()
		if k == 0 {
			continue
		}
		if consumed == 0 && started != nil {
			if err := started(); err != nil {
				return err
			}
		}
		consumed += k
		fs.EachRecord(func(r *kgo.Record) {
			cl.Produce(ctx, &kgo.Record{Topic: output, Key: r.Key, Value: r.Value, Headers: r.Headers, Timestamp: r.Timestamp}, promise)
		})
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	if p := prodErr.Load(); p != nil {
		return fmt.Errorf("producing: %w", *p)
	}
	if consumed != n || produced.Load() != int64(n) {
		return fmt.Errorf("consumed %d and produced %d records, want %d", consumed, produced.Load(), n)
	}
	return nil
}

// ProcessCPU is this process's user+sys CPU time (getrusage).
func ProcessCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// CreateTopic creates topic with partitions partitions and one replica.
func CreateTopic(ctx context.Context, adm *kadm.Client, topic string, partitions int) error {
	resp, err := adm.CreateTopic(ctx, int32(partitions), 1, nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", topic, err)
	}
	return nil
}

// DeleteTopics deletes topics within 30 s; a failure is only reported on
// standard error, prefixed by who, since the run's figures stand.
func DeleteTopics(adm *kadm.Client, who string, topics ...string) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := adm.DeleteTopics(ctx, topics...); err != nil {
		fmt.Fprintf(os.Stderr, "%s: deleting %v: %v\n", who, topics, err)
	}
}
