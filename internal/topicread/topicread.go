// Package topicread reads whole topics back with read_committed, to check
// what a job committed: the demo's final count, the integration tests and
// the benchmarks use it.
package topicread

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// All is AllOpts with no client options: a plaintext connection.
func All(ctx context.Context, brokers []string, idle time.Duration, fn func(*kgo.Record), topics ...string) error {
	return AllOpts(ctx, brokers, nil, idle, fn, topics...)
}

// AllOpts returns every committed record of the topics, calling fn for each.
// It reads from the start to the end offsets the topics have when it is
// called. Transaction markers and aborted records take offsets but are never
// returned, so it stops at the end offsets or after idle of silence, whichever
// is first. clientOpts are appended to the client's options: the
// connection's TLS and SASL settings (kafkaconf.Config.Options).
func AllOpts(ctx context.Context, brokers []string, clientOpts []kgo.Opt, idle time.Duration, fn func(*kgo.Record), topics ...string) error {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumeTopics(topics...),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	}, clientOpts...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		return fmt.Errorf("listing end offsets: %w", err)
	}
	remaining := map[string]map[int32]int64{}
	ends.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 {
			if remaining[o.Topic] == nil {
				remaining[o.Topic] = map[int32]int64{}
			}
			remaining[o.Topic][o.Partition] = o.Offset
		}
	})
	done := func() bool {
		for _, ps := range remaining {
			if len(ps) > 0 {
				return false
			}
		}
		return true
	}
	for !done() {
		pctx, cancel := context.WithTimeout(ctx, idle)
		fs := cl.PollFetches(pctx)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if fs.NumRecords() == 0 {
			return nil // idle: only markers or aborted records are left
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) {
			if pctx.Err() == nil {
				ferr = fmt.Errorf("fetching %s[%d]: %w", t, p, err)
			}
		})
		if ferr != nil {
			return ferr
		}
		fs.EachRecord(func(r *kgo.Record) {
			fn(r)
			if end, ok := remaining[r.Topic][r.Partition]; ok && r.Offset >= end-1 {
				delete(remaining[r.Topic], r.Partition)
			}
		})
	}
	return nil
}

// Count returns the number of committed records in each topic.
func Count(ctx context.Context, brokers []string, topics ...string) (map[string]int64, error) {
	counts := map[string]int64{}
	err := All(ctx, brokers, 1500*time.Millisecond, func(r *kgo.Record) { counts[r.Topic]++ }, topics...)
	return counts, err
}
