package engine

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Target is a position in a set of source topics: where a backfill starts
// or ends, or where `offsets reset` moves a group. Parse one with
// ParseTarget; resolve it to offsets with Resolve.
type Target struct {
	// Kind says which of the fields below counts.
	Kind TargetKind
	// Time is the target of TargetTime: the first record at or after it.
	Time time.Time
	// Offsets are the explicit offsets of TargetOffsets, by topic and
	// partition. Partitions not listed are left out.
	Offsets map[string]map[int32]int64
	text    string
}

// TargetKind is a kind of Target.
type TargetKind int

// The kinds of target.
const (
	TargetEarliest TargetKind = iota // the start of each partition
	TargetLatest                     // the end of each partition: earliest, latest or now
	TargetTime                       // the first record at or after Target.Time
	TargetOffsets                    // explicit topic:partition:offset lists
)

// String returns the target as it was given.
func (t Target) String() string { return t.text }

// ParseTarget parses a position: earliest, latest (or now), an RFC 3339
// time, a duration ago (24h, 90m: the first record at or after now minus
// it), or a comma-separated list of topic:partition:offset. now is the
// time durations count back from.
func ParseTarget(s string, now time.Time) (Target, error) {
	s = strings.TrimSpace(s)
	t := Target{text: s}
	switch s {
	case "earliest":
		t.Kind = TargetEarliest
		return t, nil
	case "latest", "now":
		t.Kind = TargetLatest
		return t, nil
	case "":
		return t, errors.New("empty position: want earliest, latest, now, an RFC 3339 time, a duration ago such as 24h, or topic:partition:offset lists")
	}
	if ts, err := time.Parse(time.RFC3339, s); err == nil {
		t.Kind, t.Time = TargetTime, ts
		return t, nil
	}
	if d, err := time.ParseDuration(s); err == nil {
		if d <= 0 {
			return t, fmt.Errorf("%q: a duration ago must be positive", s)
		}
		t.Kind, t.Time = TargetTime, now.Add(-d)
		return t, nil
	}
	if !strings.Contains(s, ":") || strings.Count(strings.Split(s, ",")[0], ":") < 2 {
		return t, fmt.Errorf("%q: want earliest, latest, now, an RFC 3339 time such as 2026-11-01T00:00:00Z, a duration ago such as 24h, or topic:partition:offset lists", s)
	}
	t.Kind, t.Offsets = TargetOffsets, map[string]map[int32]int64{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		// A topic name may not hold ':', so the last two fields are the
		// partition and the offset.
		i := strings.LastIndex(item, ":")
		j := strings.LastIndex(item[:max(i, 0)], ":")
		if i < 0 || j <= 0 {
			return t, fmt.Errorf("%q: want topic:partition:offset", item)
		}
		topic := item[:j]
		p, err := strconv.ParseInt(item[j+1:i], 10, 32)
		if err != nil || p < 0 {
			return t, fmt.Errorf("%q: the partition must be a number ≥ 0", item)
		}
		o, err := strconv.ParseInt(item[i+1:], 10, 64)
		if err != nil || o < 0 {
			return t, fmt.Errorf("%q: the offset must be a number ≥ 0", item)
		}
		if t.Offsets[topic] == nil {
			t.Offsets[topic] = map[int32]int64{}
		}
		if _, dup := t.Offsets[topic][int32(p)]; dup {
			return t, fmt.Errorf("%q: %s partition %d is listed twice", s, topic, p)
		}
		t.Offsets[topic][int32(p)] = o
	}
	return t, nil
}

// Resolve returns the offset of the target in every partition of topics,
// clamped to each partition's start and end. With TargetOffsets, the
// partitions not listed are missing from the result, and a listed topic
// not among topics, or a partition the topic does not have, is an error.
// adm is a client of the brokers; extra are the options of the consumer
// that checks times (TLS, SASL).
func (t Target) Resolve(ctx context.Context, adm *kadm.Client, brokers []string, extra []kgo.Opt, topics []string) (kadm.Offsets, error) {
	starts, ends, err := listBounds(ctx, adm, topics)
	if err != nil {
		return nil, err
	}
	out := kadm.Offsets{}
	clamp := func(topic string, p int32, at int64) {
		s, _ := starts.Lookup(topic, p)
		e, _ := ends.Lookup(topic, p)
		out.Add(kadm.Offset{Topic: topic, Partition: p, At: min(max(at, s.Offset), e.Offset), LeaderEpoch: -1})
	}
	switch t.Kind {
	case TargetEarliest:
		starts.Each(func(o kadm.ListedOffset) { clamp(o.Topic, o.Partition, o.Offset) })
	case TargetLatest:
		ends.Each(func(o kadm.ListedOffset) { clamp(o.Topic, o.Partition, o.Offset) })
	case TargetTime:
		at, err := adm.ListOffsetsAfterMilli(ctx, t.Time.UnixMilli(), topics...)
		if err == nil {
			err = at.Error()
		}
		if err != nil {
			return nil, fmt.Errorf("listing the offsets of %v at %s: %w", topics, t.Time.Format(time.RFC3339), err)
		}
		at.Each(func(o kadm.ListedOffset) {
			if o.Offset < 0 { // no record at or after the time
				e, _ := ends.Lookup(o.Topic, o.Partition)
				o.Offset = e.Offset
			}
			clamp(o.Topic, o.Partition, o.Offset)
		})
		if out, err = afterTime(ctx, brokers, extra, out, ends, t.Time); err != nil {
			return nil, fmt.Errorf("finding the records at %s in %v: %w", t.Time.Format(time.RFC3339), topics, err)
		}
	case TargetOffsets:
		var errs []error
		for _, topic := range slices.Sorted(maps.Keys(t.Offsets)) {
			if !slices.Contains(topics, topic) {
				errs = append(errs, fmt.Errorf("topic %q in %q is not a source topic of the topology (its sources: %s)", topic, t.text, strings.Join(topics, ", ")))
				continue
			}
			for p, at := range t.Offsets[topic] {
				if _, ok := ends.Lookup(topic, p); !ok {
					errs = append(errs, fmt.Errorf("topic %q has no partition %d", topic, p))
					continue
				}
				clamp(topic, p, at)
			}
		}
		if len(errs) > 0 {
			return nil, errors.Join(errs...)
		}
	}
	return out, nil
}

// afterTime corrects the broker's answer to "the first offset at or after
// a time". The broker looks batches up by their largest timestamp, and a
// transaction marker's is the time of its commit: where records carry
// timestamps older than their commit (events replayed or backdated, the
// outputs of another streamer job), it answers with the first marker past
// the time, perhaps long before the first record at it. afterTime reads
// the first committed record at each offset found; when it is older than
// t, it searches the rest of the partition (by bisection, assuming record
// timestamps grow with offsets, as the broker's index does).
func afterTime(ctx context.Context, brokers []string, extra []kgo.Opt, found kadm.Offsets, ends kadm.ListedOffsets, t time.Time) (kadm.Offsets, error) {
	cl, err := seedClient(brokers, append([]kgo.Opt{
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.KeepControlRecords(),
		kgo.FetchMaxPartitionBytes(64 << 10),
	}, extra...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	out := kadm.Offsets{}
	for _, o := range found.Sorted() {
		e, _ := ends.Lookup(o.Topic, o.Partition)
		pr := probe{cl: cl, topic: o.Topic, partition: o.Partition, end: e.Offset}
		at, err := pr.after(ctx, o.At, t)
		if err != nil {
			return nil, err
		}
		o.At = at
		out.Add(o)
	}
	return out, nil
}

// probe reads single records of one partition.
type probe struct {
	cl        *kgo.Client
	topic     string
	partition int32
	end       int64
}

// after returns the offset of the first committed record at or after
// offset from whose timestamp is at or after t, or the end.
func (p probe) after(ctx context.Context, from int64, t time.Time) (int64, error) {
	// f(m): the first record at or after m is at or after t (or there is
	// none). It is false up to the answer and true from there.
	f := func(m int64) (bool, int64, error) {
		off, ts, ok, err := p.first(ctx, m)
		return !ok || !ts.Before(t), off, err
	}
	ok, off, err := f(from)
	if err != nil || ok {
		return min(off, p.end), err
	}
	lo, hi := off+1, p.end
	for lo < hi {
		mid := lo + (hi-lo)/2
		ok, off, err := f(mid)
		if err != nil {
			return 0, err
		}
		if ok {
			hi = mid
		} else {
			lo = off + 1
		}
	}
	_, off, err = f(lo)
	return min(off, p.end), err
}

// first returns the offset and timestamp of the first committed record at
// or after offset m, skipping transaction markers; ok is false if there is
// none before the end (off is then the end).
func (p probe) first(ctx context.Context, m int64) (off int64, ts time.Time, ok bool, err error) {
	if m >= p.end {
		return p.end, ts, false, nil
	}
	p.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{p.topic: {p.partition: kgo.NewOffset().At(m)}})
	defer p.cl.RemoveConsumePartitions(map[string][]int32{p.topic: {p.partition}})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		fs := p.cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return 0, ts, false, fmt.Errorf("reading %s[%d] at offset %d: %w", p.topic, p.partition, m, ctx.Err())
		}
		if err := fs.Err(); err != nil {
			return 0, ts, false, fmt.Errorf("reading %s[%d] at offset %d: %w", p.topic, p.partition, m, err)
		}
		for _, r := range fs.Records() {
			if r.Topic != p.topic || r.Partition != p.partition || r.Offset < m {
				continue
			}
			if r.Offset >= p.end {
				return p.end, ts, false, nil
			}
			if !r.Attrs.IsControl() {
				return r.Offset, r.Timestamp, true, nil
			}
			if r.Offset+1 >= p.end {
				return p.end, ts, false, nil
			}
		}
	}
}
