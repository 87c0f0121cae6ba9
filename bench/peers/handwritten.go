package main

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
)

// The hand-written peers: what a Go team writes with franz-go alone, exactly
// once, in the way kgo documents it (a GroupTransactSession: consume,
// produce in a transaction, commit the consumed offsets in it).
//
// naive does the work one record at a time: it polls what the client has
// buffered, and for each record produces the output synchronously
// (ProduceSync waits for the broker's ack before the next record), in one
// transaction per poll that commits the poll's offsets. It is the
// "non-framework implementation" of the seed paper: the first program that
// is correct. (W3 and W4 take at most 1,000 records per poll: their work
// is slow enough that a poll of everything buffered, up to 65,536 records,
// would outlast the transaction timeout on a loaded machine.) (A transaction per record was measured too, once: 58
// records/s, too slow to run over the whole input; see bench/RESULTS.md.)
//
// careful takes a whole poll (up to 10,000 records; W4: 1,000, as its
// topology's max_poll_records), does the work on all
// of it at once (W1: in turn; W3 and W4: on every core, w3.go and w4.go),
// produces every output asynchronously into one transaction and commits it
// once per poll: the honest upper anchor of hand-written exactly-once code.
// Both read read_committed and start at the earliest offset.

func transactSession(j job, extra ...kgo.Opt) (*kgo.GroupTransactSession, error) {
	opts := append([]kgo.Opt{
		kgo.SeedBrokers(j.brokers...),
		kgo.ConsumerGroup(j.group),
		kgo.ConsumeTopics(j.input),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionalID(j.group + "-txn"),
	}, extra...)
	return kgo.NewGroupTransactSession(opts...)
}

// recordFn is the work on one record: its output value, or false to drop it.
type recordFn func(value []byte) ([]byte, bool, error)

// batchFn is the work on a poll's values: outs[i] is the output of
// values[i], nil to drop it.
type batchFn func(values [][]byte) (outs [][]byte, err error)

// sequential applies fn to each value in turn.
func sequential(fn recordFn) batchFn {
	return func(values [][]byte) ([][]byte, error) {
		outs := make([][]byte, len(values))
		for i, v := range values {
			out, keep, err := fn(v)
			if err != nil {
				return nil, err
			}
			if keep {
				outs[i] = out
			}
		}
		return outs, nil
	}
}

func runNaive(ctx context.Context, j job, t *timing, work recordFn, maxPoll int) error {
	s, err := transactSession(j, kgo.MaxBufferedRecords(1<<16), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	defer s.Close()
	done := 0
	for done < j.records {
		fs := s.PollRecords(ctx, maxPoll) // 0: all buffered
		if ctx.Err() != nil {
			return fmt.Errorf("committed %d of %d: %w", done, j.records, ctx.Err())
		}
		if err := fetchErr(fs); err != nil {
			return err
		}
		recs := fs.Records()
		if len(recs) == 0 {
			continue
		}
		if done == 0 {
			t.start()
		}
		if err := s.Begin(); err != nil {
			return err
		}
		for _, r := range recs {
			out, keep, err := work(r.Value)
			if err != nil {
				return err
			}
			if keep {
				if err := s.ProduceSync(ctx, &kgo.Record{Topic: j.output, Key: r.Key, Value: out}).FirstErr(); err != nil {
					return err
				}
			}
		}
		committed, err := s.End(ctx, kgo.TryCommit)
		if err != nil {
			return err
		}
		if !committed {
			return fmt.Errorf("transaction aborted after %d records (a rebalance: the bench runs one member)", done)
		}
		done += len(recs)
	}
	t.stop()
	return nil
}

func runCareful(ctx context.Context, j job, t *timing, work batchFn, maxPoll int) error {
	s, err := transactSession(j, kgo.MaxBufferedRecords(1<<16), kgo.ProducerBatchMaxBytes(1<<20))
	if err != nil {
		return err
	}
	defer s.Close()
	var first benchkit.FirstErr
	promise := first.Promise
	done := 0
	for j.records == 0 || done < j.records {
		fs := s.PollRecords(ctx, maxPoll)
		if ctx.Err() != nil && j.records == 0 {
			break // latency mode (latency.go): stdin closed
		}
		if ctx.Err() != nil {
			return fmt.Errorf("committed %d of %d: %w", done, j.records, ctx.Err())
		}
		if err := fetchErr(fs); err != nil {
			return err
		}
		n := fs.NumRecords()
		if n == 0 {
			continue
		}
		if done == 0 {
			t.start()
		}
		if err := s.Begin(); err != nil {
			return err
		}
		recs := fs.Records()
		values := make([][]byte, len(recs))
		for i, r := range recs {
			values[i] = r.Value
		}
		outs, err := work(values)
		if err != nil {
			return err
		}
		for i, r := range recs {
			if outs[i] != nil {
				s.Produce(ctx, &kgo.Record{Topic: j.output, Key: r.Key, Value: outs[i], Timestamp: r.Timestamp}, promise)
			}
		}
		// End flushes the produced records before it commits.
		committed, err := s.End(ctx, kgo.TryCommit)
		if err != nil {
			return err
		}
		if perr := first.Err(); perr != nil {
			return perr
		}
		if !committed {
			return fmt.Errorf("transaction aborted after %d records (a rebalance: the bench runs one member)", done)
		}
		done += n
	}
	t.stop()
	return nil
}

// fetchErr returns a poll's fetch error, if any, naming its partition.
func fetchErr(fs kgo.Fetches) error {
	var ferr error
	fs.EachError(func(tp string, p int32, err error) { ferr = fmt.Errorf("fetching %s[%d]: %w", tp, p, err) })
	return ferr
}
