package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// How the materialiser reads a topic partition: one fetch loop for store
// restores and table loads alike.
const (
	// fetchBytes bounds one fetch of a partition, as kgo's consumer does
	// by default. Decompressed, a response can be ten times larger, and
	// its records as many again, all garbage soon after: with 8 MB, a
	// 10M-key restore held 480 MB of live heap (bench/RESULTS.md,
	// "State"). Three are held at most per partition read: one being
	// applied, one queued, one being read.
	fetchBytes = 1 << 20
	// stallTimeout fails a read that makes no progress for this long (the
	// broker answers, but the position does not move).
	stallTimeout = 2 * time.Minute
)

// lastStable lists the last stable offsets of the given partitions. A
// topic created a moment ago (by this replica or a racing one: a changelog,
// a table) can be unknown to the broker, or leaderless, for a little while,
// and the client caches that answer: forget it and ask again, for up to
// about 10 s.
func lastStable(ctx context.Context, cl *kgo.Client, want map[string][]int32) (kadm.ListedOffsets, error) {
	adm := kadm.NewClient(cl)
	topics := slices.Sorted(maps.Keys(want))
	wait := 50 * time.Millisecond
	for try := 0; ; try++ {
		ends, err := adm.ListCommittedOffsets(ctx, topics...)
		if err != nil && !kerr.IsRetriable(err) {
			return nil, fmt.Errorf("listing the ends of %s: %w", strings.Join(topics, ", "), err)
		}
		var why error // the first partition not listed yet, or retriable
		if err != nil {
			why = err
		} else {
		check:
			for t, ps := range want {
				for _, p := range ps {
					end, ok := ends.Lookup(t, p)
					switch {
					case !ok:
						why = fmt.Errorf("%s[%d] is not listed yet", t, p)
						break check
					case end.Err != nil && !kerr.IsRetriable(end.Err):
						return nil, fmt.Errorf("no end offset for %s[%d]: %w", t, p, end.Err)
					case end.Err != nil:
						why = fmt.Errorf("%s[%d]: %w", t, p, end.Err)
						break check
					}
				}
			}
		}
		if why == nil {
			return ends, nil
		}
		if try == 40 {
			return nil, fmt.Errorf("no end offsets after %d tries: %w", try+1, why)
		}
		cl.PurgeTopicsFromClient(topics...)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// fetchHint is what the caller knows of a partition's leader and topic
// ID; leader -1 if nothing: fetchLoop looks it up, and again after an
// error.
type fetchHint struct {
	leader int32
	id     [16]byte
}

var noHint = fetchHint{leader: -1}

// fetched is one fetch response of a changelog partition, parsed.
type fetched struct {
	recs []*kgo.Record
	next int64 // the offset to read next
	err  error
}

// fetchLoop reads topic[partition] from offset from until it passes end,
// sending each response's records and the next position on out. It closes
// out when done, on error (sent first) and when ctx ends.
//
// A fresh store (nothing read yet) that asks for an offset below the log
// start goes on from the log start: records before it were deleted
// (retention, DeleteRecords) or never there. Any other store that does
// gets an error: records it needs are gone, and rebuilding it is for a
// person to decide.
func fetchLoop(ctx context.Context, cl *kgo.Client, log *slog.Logger, topic string, partition int32, from, end int64, fresh bool, out chan<- fetched, hint fetchHint) {
	adm := kadm.NewClient(cl)
	defer close(out)
	send := func(f fetched) bool {
		select {
		case out <- f:
			return true
		case <-ctx.Done():
			return false
		}
	}
	var (
		leader  = hint.leader
		topicID = hint.id
		pos     = from
		moved   = time.Now() // when pos last advanced
		backoff = 50 * time.Millisecond
	)
	dec := kgo.DefaultDecompressor()
	for pos < end {
		if ctx.Err() != nil {
			return
		}
		if time.Since(moved) > stallTimeout {
			send(fetched{err: fmt.Errorf("no progress for %v", stallTimeout)})
			return
		}
		// retry waits before the next attempt; after an error, the leader
		// is looked up again.
		retry := func(why error) bool {
			log.Debug("fetch retry", "topic", topic, "partition", partition, "offset", pos, "err", why)
			if why != nil {
				leader = -1
			}
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, 2*time.Second)
				return true
			case <-ctx.Done():
				return false
			}
		}
		if leader < 0 {
			md, err := adm.Metadata(ctx, topic)
			if err != nil {
				if !retry(err) {
					return
				}
				continue
			}
			td, ok := md.Topics[topic]
			if !ok || td.Err != nil {
				if !retry(fmt.Errorf("metadata of %s: %v", topic, td.Err)) {
					return
				}
				continue
			}
			pd, ok := td.Partitions[partition]
			if !ok || pd.Err != nil || pd.Leader < 0 {
				if !retry(fmt.Errorf("no leader for %s[%d]", topic, partition)) {
					return
				}
				continue
			}
			leader, topicID = pd.Leader, td.ID
		}
		req := kmsg.NewPtrFetchRequest()
		req.ReplicaID = -1
		req.MaxWaitMillis = 500
		req.MinBytes = 1
		req.MaxBytes = fetchBytes
		req.IsolationLevel = 1 // read_committed
		req.SessionEpoch = -1  // no fetch session
		rt := kmsg.NewFetchRequestTopic()
		rt.Topic, rt.TopicID = topic, topicID
		rp := kmsg.NewFetchRequestTopicPartition()
		rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = partition, pos, fetchBytes
		rt.Partitions = append(rt.Partitions, rp)
		req.Topics = append(req.Topics, rt)
		resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
		if err != nil {
			if !retry(err) {
				return
			}
			continue
		}
		if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
			if !retry(err) {
				return
			}
			continue
		}
		if len(resp.Topics) != 1 || len(resp.Topics[0].Partitions) != 1 {
			if !retry(errors.New("fetch response without the partition")) {
				return
			}
			continue
		}
		rpart := &resp.Topics[0].Partitions[0]
		if err := kerr.ErrorForCode(rpart.ErrorCode); err != nil {
			if errors.Is(err, kerr.OffsetOutOfRange) && fresh && pos == from && rpart.LogStartOffset > pos {
				pos, moved = rpart.LogStartOffset, time.Now()
				if !send(fetched{next: pos}) {
					return
				}
				continue
			}
			if errors.Is(err, kerr.OffsetOutOfRange) {
				send(fetched{err: fmt.Errorf("offset %d is out of the topic's range (log start %d): records the store needs were deleted (is the topic compacted rather than deleted by retention?); remove the store's directory to rebuild it", pos, rpart.LogStartOffset)})
				return
			}
			if kerr.IsRetriable(err) {
				if !retry(err) {
					return
				}
				continue
			}
			send(fetched{err: err})
			return
		}
		fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
			Offset: pos, IsolationLevel: kgo.ReadCommitted(), Topic: topic, Partition: partition,
		}, rpart, dec, nil)
		if fp.Err != nil && next <= pos {
			send(fetched{err: fp.Err})
			return
		}
		if next <= pos {
			// Nothing new: the broker had nothing past pos yet below
			// the last stable offset we read to (or sent a partial
			// batch). Ask again.
			if !retry(nil) {
				return
			}
			continue
		}
		backoff = 50 * time.Millisecond
		pos, moved = next, time.Now()
		if !send(fetched{recs: fp.Records, next: next}) {
			return
		}
	}
}

// highWatermark returns the end of topic[partition]: the offset after its
// last record, committed or not.
func highWatermark(ctx context.Context, cl *kgo.Client, topic string, partition int32) (int64, error) {
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, fmt.Errorf("listing the end of %s: %w", topic, err)
	}
	o, ok := ends.Lookup(topic, partition)
	if !ok {
		return 0, fmt.Errorf("no end offset for %s[%d]", topic, partition)
	}
	if o.Err != nil {
		return 0, fmt.Errorf("no end offset for %s[%d]: %w", topic, partition, o.Err)
	}
	return o.Offset, nil
}
