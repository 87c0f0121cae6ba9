package engine

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/time/rate"

	"github.com/streamerio/streamer/topology"
)

// Bounds make a run bounded, as a backfill is: it processes each source
// partition from the group's committed offset up to an end offset, and Run
// returns nil by itself once the whole group is done (see Options.Bounds).
// The start offsets are not here: they are the group's committed offsets,
// set before the first run (a re-run goes on from where the last stopped).
type Bounds struct {
	// End is, per source topic and partition, the offset the run stops
	// at: records at or past it are not processed. A partition of a
	// source topic that is not listed is not processed at all.
	End map[string]map[int32]int64
	// Start is, per source partition, where the range begins: only the
	// progress figures use it. Missing: 0.
	Start map[string]map[int32]int64
	// Rate limits the records polled per second on this replica. The
	// wait follows a poll, and may hold a transaction open: keep the
	// topology's MaxPollRecords to a fraction of Rate (the CLI takes
	// Rate/10). Default: 0, no limit.
	Rate float64
	// CheckInterval is how often the replica reads the group's committed
	// offsets to learn whether the run is done. Default: 1s.
	CheckInterval time.Duration
}

// BoundedProgress is how far the group of a bounded run has come, as of
// the last check of its committed offsets.
type BoundedProgress struct {
	// Done and Total count offsets of the source ranges (transaction
	// markers included): committed, and in all.
	Done, Total int64
	// Behind are the source partitions not yet done, with the offsets
	// each has left, sorted by topic and partition.
	Behind []PartitionLag
	// Draining is set when every source partition is done and the
	// internal topics are still being read.
	Draining bool
	// Checked is when the offsets were read; zero before the first check.
	Checked time.Time
	// RecordsIn counts the records of the ranges this replica has read
	// and processed (again, after an aborted transaction), not those
	// of internal topics; it is current, not as of Checked.
	RecordsIn int64
}

// bounded is the engine's side of Bounds. The processing loop calls filter
// after each poll; a goroutine started by watch checks the group and ends
// the run. A nil *bounded is an unbounded run: every method does nothing.
type bounded struct {
	b        Bounds
	group    string
	internal []string // the repartition and merge topics the group reads
	limiter  *rate.Limiter
	brokers  []string
	extra    []kgo.Opt
	log      *slog.Logger

	finished atomic.Bool
	progress atomic.Pointer[BoundedProgress]
	in       atomic.Int64 // records of the source ranges kept by filter

	mu sync.Mutex
	// pending are the partitions filter paused in the open transaction:
	// their end is reached only once it commits.
	pending map[partitionKey]bool
}

func newBounded(t *topology.Topology, o Options) *bounded {
	if o.Bounds == nil {
		return nil
	}
	bd := &bounded{b: *o.Bounds, group: t.Group, brokers: o.Brokers, extra: o.ClientOpts, log: o.Logger}
	if bd.b.CheckInterval <= 0 {
		bd.b.CheckInterval = time.Second
	}
	if bd.b.End == nil {
		bd.b.End = map[string]map[int32]int64{}
	}
	for _, d := range t.Sources() {
		if d.IsInternal() {
			bd.internal = append(bd.internal, d.Topic)
		} else if bd.b.End[d.Topic] == nil {
			bd.b.End[d.Topic] = map[int32]int64{} // nothing of it to process
		}
	}
	if bd.b.Rate > 0 {
		bd.limiter = rate.NewLimiter(rate.Limit(bd.b.Rate), max(1, int(bd.b.Rate)))
	}
	return bd
}

// clientOpts are the options of the replica's client for a bounded run:
// transaction markers come through the poll, so that the consumed position
// (and with it the committed offset) moves past a partition's trailing
// markers, and filter drops them; the internal topics, new to the run,
// are read from their start whatever the topology's start_offset.
func (b *bounded) clientOpts() []kgo.Opt {
	if b == nil {
		return nil
	}
	return []kgo.Opt{kgo.KeepControlRecords(), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
}

// filter drops from a poll the transaction markers and the records at or
// past their partition's end, and pauses the partitions that reached it.
// It reports whether it dropped any: the consumed positions then moved
// without records to process, and the offsets must still be committed
// (the loop opens a transaction even if nothing is left). With Rate set,
// it waits for the records kept. It must not be called concurrently with
// itself or ended.
func (b *bounded) filter(ctx context.Context, fetches kgo.Fetches, cl *kgo.Client) (dropped bool) {
	if b == nil {
		return false
	}
	var pause map[string][]int32
	kept := 0
	for i := range fetches {
		for j := range fetches[i].Topics {
			ft := &fetches[i].Topics[j]
			ends, isSource := b.b.End[ft.Topic]
			for k := range ft.Partitions {
				fp := &ft.Partitions[k]
				if len(fp.Records) == 0 {
					continue
				}
				end, ok := ends[fp.Partition]
				if isSource && !ok {
					end = 0 // not part of the run
				}
				last := fp.Records[len(fp.Records)-1].Offset
				recs := fp.Records[:0]
				for _, r := range fp.Records {
					if r.Attrs.IsControl() || (isSource && r.Offset >= end) {
						dropped = true
						continue
					}
					recs = append(recs, r)
				}
				fp.Records = recs
				kept += len(recs)
				if isSource {
					b.in.Add(int64(len(recs)))
				}
				if isSource && last+1 >= end {
					if pause == nil {
						pause = map[string][]int32{}
					}
					pause[ft.Topic] = append(pause[ft.Topic], fp.Partition)
				}
			}
		}
	}
	if pause != nil {
		cl.PauseFetchPartitions(pause)
		b.mu.Lock()
		if b.pending == nil {
			b.pending = map[partitionKey]bool{}
		}
		for topic, ps := range pause {
			for _, p := range ps {
				b.pending[partitionKey{topic, p}] = true
			}
		}
		b.mu.Unlock()
	}
	if b.limiter != nil {
		for kept > 0 && ctx.Err() == nil {
			n := min(kept, b.limiter.Burst())
			_ = b.limiter.WaitN(ctx, n) // on cancel, the records are processed all the same
			kept -= n
		}
	}
	return dropped
}

// ended is called when a transaction ends. A commit makes the pauses of
// filter for good: the partitions' committed offsets are at their ends.
// An abort rewinds the partitions to their committed offsets, before
// their ends: the pauses filter made in the transaction are lifted, or
// the partitions would never be read again, and the run never end.
func (b *bounded) ended(committed bool, cl *kgo.Client) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !committed && len(b.pending) > 0 {
		resume := map[string][]int32{}
		for pk := range b.pending {
			resume[pk.topic] = append(resume[pk.topic], pk.partition)
		}
		cl.ResumeFetchPartitions(resume)
	}
	clear(b.pending)
}

// revoked forgets the pauses of revoked partitions: the engine resumes
// them (Engine.drop), and a partition assigned back may be held paused
// (holds) when the transaction ends, which ended must not undo. It may be
// called concurrently with filter and ended.
func (b *bounded) revoked(m map[string][]int32) {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	for topic, ps := range m {
		for _, p := range ps {
			delete(b.pending, partitionKey{topic, p})
		}
	}
}

// watch returns a context that is canceled when the whole group is done
// (or ctx is), and checks the group every CheckInterval until then; stop
// ends the checks and waits for them.
func (b *bounded) watch(ctx context.Context) (_ context.Context, stop func()) {
	if b == nil {
		return ctx, func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		cl, err := seedClient(b.brokers, b.extra)
		if err != nil {
			b.log.Error("bounded run: kafka client; the run will not stop by itself", "err", err)
			return
		}
		defer cl.Close()
		adm := kadm.NewClient(cl)
		t := time.NewTicker(b.b.CheckInterval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			done, err := b.check(ctx, adm)
			if err != nil {
				if ctx.Err() == nil {
					b.log.Warn("bounded run: checking the group's offsets", "err", err)
				}
				continue
			}
			if done {
				b.finished.Store(true)
				b.log.Info("bounded run: every source partition reached its end and every internal partition is committed; stopping")
				cancel()
				return
			}
		}
	}()
	return ctx, func() { cancel(); wg.Wait() }
}

// check reads the group's committed offsets, then the high watermarks of
// the internal topics, and reports whether the run is done: every source
// partition committed at or past its end, and every internal partition
// committed up to its high watermark. The order matters: a transaction
// that commits source offsets wrote its internal records before, so they
// are below a high watermark read after. The high watermark, not the last
// stable offset: a transaction whose markers are not all written yet
// still holds it up. The internal topics end with markers, which the
// replicas' polls pass (clientOpts), so the committed offsets reach it.
func (b *bounded) check(ctx context.Context, adm *kadm.Client) (bool, error) {
	committed, err := adm.FetchOffsets(ctx, b.group)
	if err != nil {
		return false, fmt.Errorf("fetching the offsets of group %s: %w", b.group, err)
	}
	at := func(topic string, p int32) int64 {
		if c, ok := committed.Lookup(topic, p); ok && c.Err == nil {
			return c.At
		}
		return -1
	}
	prog := &BoundedProgress{Checked: time.Now()}
	for topic, ends := range b.b.End {
		for p, end := range ends {
			start := b.b.Start[topic][p]
			c := min(max(at(topic, p), start), end)
			prog.Total += end - start
			prog.Done += c - start
			if c < end {
				prog.Behind = append(prog.Behind, PartitionLag{Topic: topic, Partition: p, Lag: end - c})
			}
		}
	}
	sortLags(prog.Behind)
	if len(prog.Behind) > 0 || len(b.internal) == 0 {
		b.progress.Store(prog)
		return len(prog.Behind) == 0, nil
	}
	prog.Draining = true
	b.progress.Store(prog)
	hw, err := adm.ListEndOffsets(ctx, b.internal...)
	if err == nil {
		err = hw.Error()
	}
	if err != nil {
		return false, fmt.Errorf("listing the end offsets of %v: %w", b.internal, err)
	}
	done := true
	hw.Each(func(o kadm.ListedOffset) {
		if o.Offset > 0 && at(o.Topic, o.Partition) < o.Offset {
			done = false
		}
	})
	return done, nil
}

func sortLags(ls []PartitionLag) {
	slices.SortFunc(ls, func(a, b PartitionLag) int {
		return cmp.Or(cmp.Compare(a.Topic, b.Topic), cmp.Compare(a.Partition, b.Partition))
	})
}

// Finished reports whether a bounded run (Options.Bounds) ended because
// the whole group was done, rather than because its context was canceled.
// It is false for an unbounded run.
func (e *Engine) Finished() bool { return e.bounds != nil && e.bounds.finished.Load() }

// BoundedProgress returns how far the group of a bounded run has come, as
// of its last check (zero before the first); nil for an unbounded run.
func (e *Engine) BoundedProgress() *BoundedProgress {
	if e.bounds == nil {
		return nil
	}
	var p BoundedProgress
	if last := e.bounds.progress.Load(); last != nil {
		p = *last
	}
	p.RecordsIn = e.bounds.in.Load()
	return &p
}
