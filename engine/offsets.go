package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

// PartitionOffsets is where a group stands in one source partition.
type PartitionOffsets struct {
	Topic     string
	Partition int32
	// Committed is the group's committed offset, the next record it
	// reads; -1 when it has none.
	Committed int64
	// End is the partition's end offset (high watermark).
	End int64
	// Lag is End - Committed (End - Start when nothing is committed): the
	// offsets still to read, transaction markers included.
	Lag int64
	// Next is the timestamp of the record at the committed offset, the
	// next one to process: how far in time the group has come. Zero when
	// there is none (the group is at the end) or it could not be read.
	Next time.Time
}

// ShowOffsets returns where t's consumer group stands in each partition of
// its source topics, sorted by topic and partition.
func ShowOffsets(ctx context.Context, t *topology.Topology, brokers []string, clientOpts []kgo.Opt) ([]PartitionOffsets, error) {
	if len(brokers) == 0 {
		return nil, errors.New("engine: offsets: no brokers given")
	}
	cl, err := seedClient(brokers, clientOpts)
	if err != nil {
		return nil, fmt.Errorf("engine: offsets: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	topics := t.ExternalTopicsRead()
	starts, ends, err := listBounds(ctx, adm, topics)
	if err != nil {
		return nil, fmt.Errorf("engine: offsets: %w", err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, t.Group, topics...)
	if err == nil {
		err = committed.Error()
	}
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return nil, fmt.Errorf("engine: offsets: fetching the offsets of group %s: %w", t.Group, err)
	}
	var out []PartitionOffsets
	for _, e := range ends.Offsets().Sorted() {
		po := PartitionOffsets{Topic: e.Topic, Partition: e.Partition, Committed: -1, End: e.At}
		if c, ok := committed.Lookup(e.Topic, e.Partition); ok && c.Err == nil && c.At >= 0 {
			po.Committed = c.At
			po.Lag = max(0, e.At-c.At)
		} else if s, ok := starts.Lookup(e.Topic, e.Partition); ok {
			po.Lag = e.At - s.Offset
		}
		out = append(out, po)
	}
	at := kadm.Offsets{}
	for _, po := range out {
		if po.Committed >= 0 && po.Committed < po.End {
			at.AddOffset(po.Topic, po.Partition, po.Committed, -1)
		}
	}
	times := recordTimes(ctx, brokers, clientOpts, at)
	for i, po := range out {
		out[i].Next = times[partitionKey{po.Topic, po.Partition}]
	}
	return out, nil
}

// listBounds returns the start and end offsets of the topics.
func listBounds(ctx context.Context, adm *kadm.Client, topics []string) (starts, ends kadm.ListedOffsets, err error) {
	starts, err = adm.ListStartOffsets(ctx, topics...)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing the start offsets of %v: %w", topics, err)
	}
	ends, err = adm.ListEndOffsets(ctx, topics...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("listing the end offsets of %v: %w", topics, err)
	}
	return starts, ends, nil
}

// recordTimes returns the timestamp of the first committed record at or
// after each offset, reading for at most 5 s; partitions it could not read
// are missing.
func recordTimes(ctx context.Context, brokers []string, clientOpts []kgo.Opt, at kadm.Offsets) map[partitionKey]time.Time {
	out := map[partitionKey]time.Time{}
	if len(at) == 0 {
		return out
	}
	ko := map[string]map[int32]kgo.Offset{}
	want := 0
	at.Each(func(o kadm.Offset) {
		if ko[o.Topic] == nil {
			ko[o.Topic] = map[int32]kgo.Offset{}
		}
		ko[o.Topic][o.Partition] = kgo.NewOffset().At(o.At)
		want++
	})
	cl, err := seedClient(brokers, append([]kgo.Opt{kgo.ConsumePartitions(ko), kgo.FetchIsolationLevel(kgo.ReadCommitted())}, clientOpts...))
	if err != nil {
		return out
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	for len(out) < want && ctx.Err() == nil {
		fs := cl.PollFetches(ctx)
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			k := partitionKey{p.Topic, p.Partition}
			if _, seen := out[k]; seen || len(p.Records) == 0 {
				return
			}
			out[k] = p.Records[0].Timestamp
			cl.PauseFetchPartitions(map[string][]int32{p.Topic: {p.Partition}})
		})
	}
	return out
}

// OffsetsResetOptions configures ResetOffsets.
type OffsetsResetOptions struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string
	// To is where the group is to start in its source partitions. With
	// explicit offsets, the partitions not listed keep their offsets.
	To Target
	// Execute commits the new offsets; without it ResetOffsets only says
	// what it would do.
	Execute bool
	// ClientOpts are appended to the admin client's options (TLS, SASL).
	ClientOpts []kgo.Opt
}

// OffsetChange is the move of a group's offset in one partition.
type OffsetChange struct {
	Topic     string
	Partition int32
	// From is the committed offset before, -1 if none.
	From, To int64
}

// OffsetsResetReport says what ResetOffsets did, or would do.
type OffsetsResetReport struct {
	Group   string
	Changes []OffsetChange
	// Members is how many replicas were in the group when it looked (a
	// dry run): an execution would be refused.
	Members int
	// Executed is set when the offsets were committed.
	Executed bool
}

// ResetOffsets moves t's consumer group to o.To in its source partitions,
// and leaves everything else (state, internal topics, other offsets)
// alone: unlike Reset, the job goes on from there with the state it has.
// The group must have no members: the group coordinator refuses offset
// commits from outside while replicas run, and ResetOffsets relies on that
// refusal (checked and then acted on, the check could pass just before a
// replica joins), returning ErrGroupActive.
func ResetOffsets(ctx context.Context, t *topology.Topology, o OffsetsResetOptions) (*OffsetsResetReport, error) {
	if len(o.Brokers) == 0 {
		return nil, errors.New("engine: offsets reset: no brokers given")
	}
	cl, err := seedClient(o.Brokers, o.ClientOpts)
	if err != nil {
		return nil, fmt.Errorf("engine: offsets reset: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	rep := &OffsetsResetReport{Group: t.Group}
	topics := t.ExternalTopicsRead()
	to, err := o.To.Resolve(ctx, adm, o.Brokers, o.ClientOpts, topics)
	if err != nil {
		return rep, fmt.Errorf("engine: offsets reset: %w", err)
	}
	committed, err := adm.FetchOffsetsForTopics(ctx, t.Group, topics...)
	if err == nil {
		err = committed.Error()
	}
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return rep, fmt.Errorf("engine: offsets reset: fetching the offsets of group %s: %w", t.Group, err)
	}
	for _, off := range to.Sorted() {
		ch := OffsetChange{Topic: off.Topic, Partition: off.Partition, From: -1, To: off.At}
		if c, ok := committed.Lookup(off.Topic, off.Partition); ok && c.Err == nil {
			ch.From = c.At
		}
		rep.Changes = append(rep.Changes, ch)
	}
	if !o.Execute {
		if groups, err := adm.DescribeGroups(ctx, t.Group); err == nil {
			if g, ok := groups[t.Group]; ok && g.Err == nil {
				rep.Members = len(g.Members)
			}
		}
		return rep, nil
	}
	resp, err := adm.CommitOffsets(ctx, t.Group, to)
	if err == nil {
		err = resp.Error()
	}
	if err != nil {
		if groupActive(err) {
			return rep, fmt.Errorf("engine: offsets reset: %w: the coordinator of group %s refused the new offsets (%v); stop every replica first", ErrGroupActive, t.Group, err)
		}
		return rep, fmt.Errorf("engine: offsets reset: committing the offsets of group %s: %w", t.Group, err)
	}
	rep.Executed = true
	return rep, nil
}

// groupActive reports whether err is the coordinator's refusal of an
// offset commit or deletion from outside a group that has members.
func groupActive(err error) bool {
	for _, e := range []error{kerr.UnknownMemberID, kerr.IllegalGeneration, kerr.RebalanceInProgress, kerr.StaleMemberEpoch, kerr.FencedMemberEpoch, kerr.NonEmptyGroup, kerr.GroupSubscribedToTopic} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
