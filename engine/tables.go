package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

// TableOpener opens the table datasets that a task's join pipes look
// records up in. The engine's opener keeps them in Pebble, read from their
// topics; without one, tasks get empty in-memory tables (MemoryTables).
type TableOpener interface {
	OpenTable(table string, partition int32) (pipes.Table, error)
}

// Tables in a replica (tableSyncer).
//
// A table dataset is a compacted topic read as a table: the latest value per
// key, a null value deleting the key. Its topic is an input, not consumed by
// the group: each replica reads it into local Pebble stores, one per (table,
// partition), under <state-dir>/<group>/table-<name>/<partition>. A store's
// checkpoint is the next table offset to read, committed in the same atomic
// write as the rows it covers (state.Store.Commit), so a restart resumes
// exactly where the store stopped. The table's writes are not part of the
// Kafka transaction, and need not be: they are derived from a topic the
// replica only reads, and the checkpoint travels with them.
//
// Freshness: before the engine processes a poll, sync brings every table
// partition the poll needs (for a partitioned table, the polled partitions;
// for a global one, all of its partitions) up to the table topic's last
// stable offset, with one ListCommittedOffsets for all of them and fetches
// of the missing ranges only. A stream record therefore sees every table
// update committed before it was polled. Opening a table partition is the
// same catch-up from its checkpoint. On assignment it is done ahead, in the
// background, with the partitions paused (prepare); a task built later finds
// its tables caught up, and its first sync reads only what came since.
//
// A partitioned table must have as many partitions as every source stream
// that reaches a pipe joining it: the record key then lives in the same
// partition number in both, and the task of stream partition p reads only
// table partition p. The engine checks the real counts when it first opens
// a table, and refuses a mismatch.
type tableSyncer struct {
	top      *topology.Topology
	m        *materialiser // opens, admits and reads the table stores
	faults   *Options      // Options.Faults, through reach
	hooks    []TableHook
	skips    []TableSkipHook
	log      *slog.Logger
	bySource map[string][]*topology.Dataset // source topic → the tables its tasks use

	startMu  sync.Mutex
	started  bool
	startErr error // a refusal, kept; a broker that was away is retried

	mu    sync.Mutex // guards parts, meta
	parts map[tableKey]*tablePart
	meta  map[string]topicMeta // table topics

	// catchUpMu serialises catch-ups: the loop's sync and the loads of
	// newly assigned partitions may want the same table partitions.
	catchUpMu sync.Mutex
	// Loads of the tables of newly assigned partitions (load).
	ctx    context.Context // canceled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup
	loads  atomic.Int64 // partitions waiting for a load
}

type tableKey struct {
	table     string
	partition int32
}

type topicMeta struct {
	id         [16]byte
	partitions int
	leaders    map[int32]int32
}

// tablePart is one open (table, partition) store, shared by the tasks that
// use it; users counts them.
type tablePart struct {
	ds    *topology.Dataset
	key   tableKey
	part  part
	mu    sync.Mutex // guards st: tasks of several partitions read a global table at once
	st    *state.Pebble
	pos   int64 // the next table offset to read: the store's checkpoint
	fresh bool  // nothing read yet: the store may start at the log start
	users int
	// admitted is set once the materialiser admitted the store
	// (materialiser.admit), under mu; synced once a catch-up reached the
	// end.
	admitted, synced bool
	markedAt         time.Time // when synced was last recorded on disk
	// Freshness (tables_freshness.go): when it was opened and last caught
	// up, and whether records wait for it, as last reported.
	openedAt, caughtUpAt time.Time
	behind               bool
}

// syncBudget bounds one sync. The sync runs inside the poll's transaction,
// which the broker aborts past its timeout (10 s by default): a table far
// behind (a first start, a large global table) is caught up in several
// syncs instead. Past the budget, sync keeps what it read (each response
// commits with its position) and returns an error wrapping
// pipes.ErrUnavailable, so the engine aborts the transaction, pauses, and
// polls the same records again; the next sync goes on from there.
const syncBudget = 4 * time.Second

// errTableBudget is the error of a catch-up that ran out of its budget.
var errTableBudget = errors.New("engine: tables not caught up")

// loadBudget bounds each catch-up of a load (tableSyncer.load). A load
// runs in slices so that the processing loop's sync, which waits for it,
// is not held up for long.
const loadBudget = time.Second

// brokerTimeout bounds the requests of one sync: past it the broker is
// taken to be away, and the engine pauses and retries the poll.
const brokerTimeout = 30 * time.Second

// bigCatchUp is how many offsets behind a table partition must be for its
// catch-up to be logged.
const bigCatchUp = 10_000

// newTableSyncer returns the syncer of t's tables, or nil when t joins no
// table.
func newTableSyncer(t *topology.Topology, o *Options, m *materialiser, hs *hooks) *tableSyncer {
	tables := t.Tables()
	if len(tables) == 0 {
		return nil
	}
	s := &tableSyncer{top: t, m: m, faults: o, hooks: hs.table, skips: hs.tableSkip, log: o.Logger,
		bySource: map[string][]*topology.Dataset{}, parts: map[tableKey]*tablePart{}}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	for _, d := range tables {
		for _, p := range t.Joiners(d) {
			for _, src := range t.UpstreamSources(p) {
				if !slices.Contains(s.bySource[src.Topic], d) {
					s.bySource[src.Topic] = append(s.bySource[src.Topic], d)
				}
			}
		}
	}
	return s
}

// opener returns s as a TableOpener, and a nil interface (not a typed nil)
// when there are no tables.
func (s *tableSyncer) opener() TableOpener {
	if s == nil {
		return nil
	}
	return s
}

var _ TableOpener = (*tableSyncer)(nil)

// OpenTable returns the table for a task of one partition: the table's
// partition of that number when partitioned, all of it when global. The
// rows are brought up to date by the next sync, before the task processes
// anything. Closing the table releases it; the last user closes the store.
func (s *tableSyncer) OpenTable(name string, partition int32) (pipes.Table, error) {
	if s == nil {
		return nil, fmt.Errorf("engine: no tables: dataset %q is not a table", name)
	}
	d, ok := s.top.Datasets[name]
	if !ok || d.Table == "" {
		return nil, fmt.Errorf("engine: dataset %q is not a table", name)
	}
	if err := s.start(); err != nil {
		return nil, err
	}
	parts := s.partitionsOf(d, []int32{partition})
	h := &tableHandle{s: s, ds: d}
	for _, p := range parts {
		tp, err := s.acquire(d, p)
		if err != nil {
			h.Close()
			return nil, err
		}
		h.parts = append(h.parts, tp)
	}
	return h, nil
}

// partitionsOf returns the partitions of table d that stream partitions ps
// look up: the same numbers for a partitioned table, all for a global one.
func (s *tableSyncer) partitionsOf(d *topology.Dataset, ps []int32) []int32 {
	if d.Table != topology.TableGlobal {
		return ps
	}
	s.mu.Lock()
	n := s.meta[d.Topic].partitions
	s.mu.Unlock()
	all := make([]int32, 0, n)
	for p := range int32(n) {
		all = append(all, p)
	}
	return all
}

// acquire opens the store of (table, partition), or counts one more user.
// A store that does not open is rebuilt from the topic.
func (s *tableSyncer) acquire(d *topology.Dataset, partition int32) (*tablePart, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := tableKey{d.Name, partition}
	if tp, ok := s.parts[k]; ok {
		tp.users++
		return tp, nil
	}
	pt := tablePartOf(d, partition)
	st, err := s.m.open(pt, false)
	if err != nil {
		return nil, err
	}
	pos, ok, err := st.Checkpoint()
	if err != nil {
		st.Close()
		s.m.closed(pt, false)
		return nil, fmt.Errorf("engine: table %q partition %d: %w", d.Name, partition, err)
	}
	fresh := !ok || pos < 0
	if fresh {
		pos = 0
	}
	tp := &tablePart{ds: d, key: k, part: pt, st: st, pos: pos, fresh: fresh, users: 1, openedAt: time.Now()}
	s.parts[k] = tp
	s.report(tp, time.Time{}, false)
	return tp, nil
}

// release drops one user of tp, closing its store after the last.
func (s *tableSyncer) release(tp *tablePart) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if tp.users--; tp.users > 0 {
		return nil
	}
	delete(s.parts, tp.key)
	tp.mu.Lock()
	err := tp.st.Close()
	s.m.closed(tp.part, tp.synced && err == nil)
	tp.mu.Unlock()
	s.report(tp, time.Time{}, true)
	return err
}

// sync brings the table partitions that the polled records need up to the
// end of their topics (see tableSyncer). A nil syncer has nothing to do.
// An error reaching Kafka wraps pipes.ErrUnavailable: the engine aborts,
// pauses and polls the same records again.
func (s *tableSyncer) sync(ctx context.Context, fetches kgo.Fetches) error {
	if s == nil {
		return nil
	}
	need := map[*tablePart]bool{}
	s.mu.Lock()
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if len(p.Records) == 0 {
			return
		}
		for _, d := range s.bySource[p.Topic] {
			for k, tp := range s.parts {
				if k.table == d.Name && (d.Table == topology.TableGlobal || k.partition == p.Partition) {
					need[tp] = true
				}
			}
		}
	})
	s.mu.Unlock()
	if len(need) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), brokerTimeout)
	defer cancel()
	s.catchUpMu.Lock()
	defer s.catchUpMu.Unlock()
	return s.catchUp(ctx, need, syncBudget)
}

// prepare starts loading the tables that newly assigned partitions join,
// in the background, holding the partitions paused until it is done: a
// first start, or a replica that takes over partitions, then reads a large
// table before processing rather than inside transactions, a budget at a
// time, pausing as for an unavailable dependency. The replica is not ready
// while a load is under way. A load that fails only logs: the partitions go
// on, and their syncs catch the tables up as before. Called from the
// assignment callback.
func (s *tableSyncer) prepare(cl *kgo.Client, assigned map[string][]int32, h *holds) {
	if s == nil {
		return
	}
	type held struct {
		pk partitionKey
		g  *hold
	}
	var hs []held
	need := map[*topology.Dataset][]int32{}
	for topic, ps := range assigned {
		tables := s.bySource[topic]
		if len(tables) == 0 {
			continue
		}
		for _, d := range tables {
			need[d] = append(need[d], ps...)
		}
		for _, p := range ps {
			pk := partitionKey{topic, p}
			hs = append(hs, held{pk, h.take(cl, pk)})
		}
	}
	if len(hs) == 0 {
		return
	}
	s.loads.Add(int64(len(hs)))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.loads.Add(-int64(len(hs)))
		start := time.Now()
		if err := s.load(need); err != nil && s.ctx.Err() == nil {
			s.log.Warn("loading tables before processing failed; the partitions catch them up as they poll", "err", err)
		} else if err == nil {
			s.log.Info("tables loaded", "partitions", len(hs), "took", time.Since(start).Round(time.Millisecond))
		}
		for _, x := range hs {
			h.release(cl, x.pk, x.g)
		}
	}()
}

// load brings the table partitions in need (the partition numbers of each
// partitioned table; all of a global one) up to their topics' last stable
// offsets.
func (s *tableSyncer) load(need map[*topology.Dataset][]int32) error {
	if err := s.start(); err != nil {
		return err
	}
	parts := map[*tablePart]bool{}
	defer func() {
		for tp := range parts {
			if err := s.release(tp); err != nil {
				s.log.Warn("closing a table store", "table", tp.ds.Name, "partition", tp.key.partition, "err", err)
			}
		}
	}()
	for d, ps := range need {
		// Two source topics of one table may bring the same numbers.
		slices.Sort(ps)
		for _, p := range s.partitionsOf(d, slices.Compact(ps)) {
			tp, err := s.acquire(d, p)
			if err != nil {
				return err
			}
			parts[tp] = true
		}
	}
	backoff := 250 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(s.ctx, brokerTimeout)
		s.catchUpMu.Lock()
		err := s.catchUp(ctx, parts, loadBudget)
		s.catchUpMu.Unlock()
		cancel()
		switch {
		case err == nil:
			return nil
		case s.ctx.Err() != nil:
			return s.ctx.Err()
		case errors.Is(err, errTableBudget):
			continue // progress was made: the next slice
		case !errors.Is(err, pipes.ErrUnavailable):
			return err
		}
		select {
		case <-time.After(backoff):
			backoff = min(2*backoff, 5*time.Second)
		case <-s.ctx.Done():
			return s.ctx.Err()
		}
	}
}

// loading returns how many assigned partitions wait for a table load.
func (s *tableSyncer) loading() int64 {
	if s == nil {
		return 0
	}
	return s.loads.Load()
}

// stop ends the loads under way and waits for them.
func (s *tableSyncer) stop() {
	if s == nil {
		return
	}
	s.cancel()
	s.wg.Wait()
}

// catchUp reads each table partition in need from its checkpoint to its
// topic's last stable offset. A store not yet admitted since it was opened
// is admitted first (materialiser.admit: topic ID, age, high watermark),
// and rebuilt if the materialiser says so.
func (s *tableSyncer) catchUp(ctx context.Context, need map[*tablePart]bool, budget time.Duration) error {
	defer s.noteFreshness(need, time.Now())
	want := map[string][]int32{}
	for tp := range need {
		want[tp.ds.Topic] = append(want[tp.ds.Topic], tp.key.partition)
	}
	cl, err := s.m.client()
	if err != nil {
		return err
	}
	ends, err := lastStable(ctx, cl, want)
	if err != nil {
		return fmt.Errorf("%w: engine: table topics: %w", pipes.ErrUnavailable, err)
	}
	lag := map[*tablePart]int64{}
	for tp := range need {
		e, _ := ends.Lookup(tp.ds.Topic, tp.key.partition)
		end := e.Offset
		tp.mu.Lock()
		admitted, pos, fresh, marked := tp.admitted, tp.pos, tp.fresh, tp.markedAt
		tp.mu.Unlock()
		if admitted && !marked.IsZero() && time.Since(marked) > 2*markOwnedEvery {
			// Open but not caught up for a while (no records needed it):
			// tombstones may have been compacted away meanwhile, as for a
			// store that sat closed, so the guards run again.
			admitted = false
		}
		if !admitted || pos > end {
			// A table store's position is an offset it read committed, so
			// the last stable offset below it means truncation, which the
			// high watermark tells; the guards run once per opening, and
			// after an idle spell.
			if end, err = s.admit(ctx, tp, pos, fresh, admitted); err != nil {
				return err
			}
			pos = tp.position()
		}
		if pos < end {
			lag[tp] = end
			if behind := end - pos; behind >= bigCatchUp {
				s.log.Info("reading a table from its topic", "table", tp.ds.Name, "partition", tp.key.partition, "from", pos, "to", end, "offsets_to_go", behind)
			}
		} else {
			s.markSynced(tp)
		}
	}
	return s.fetch(ctx, cl, lag, budget)
}

// admit runs the materialiser's guards on tp (all of them unless admitted,
// else the high watermark only) and rebuilds the store if they say so. It
// returns the offset to read up to.
func (s *tableSyncer) admit(ctx context.Context, tp *tablePart, pos int64, fresh, admitted bool) (int64, error) {
	var end int64
	var err error
	if admitted {
		end, err = s.m.end(ctx, tp.part, pos, false)
	} else {
		end, err = s.m.admit(ctx, tp.part, pos, !fresh, false)
	}
	if why, wipe := wipeReason(err); wipe {
		tp.mu.Lock()
		st, werr := s.m.wipe(tp.part, tp.st, why, "checkpoint", pos, "err", err)
		if werr != nil {
			tp.mu.Unlock()
			return 0, werr
		}
		tp.st, tp.pos, tp.fresh = st, 0, true
		tp.mu.Unlock()
		end, err = s.m.admit(ctx, tp.part, 0, false, false)
	}
	if err != nil {
		if _, wipe := wipeReason(err); wipe || errors.Is(err, pipes.ErrUnavailable) {
			return 0, err
		}
		return 0, fmt.Errorf("%w: engine: table %q partition %d: %w", pipes.ErrUnavailable, tp.ds.Name, tp.key.partition, err)
	}
	tp.mu.Lock()
	tp.admitted = true
	tp.mu.Unlock()
	return end, nil
}

func (tp *tablePart) position() int64 {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return tp.pos
}

// markSynced notes that tp reached its topic's end, and records it in
// the store's directory, at most every markOwnedEvery (for the age guard
// of the next opening; closing records it again).
func (s *tableSyncer) markSynced(tp *tablePart) {
	now := time.Now()
	tp.mu.Lock()
	due := now.Sub(tp.markedAt) >= markOwnedEvery
	tp.synced, tp.caughtUpAt = true, now
	if due {
		tp.markedAt = now
	}
	tp.mu.Unlock()
	if due {
		s.m.markSynced(tp.part)
	}
}

// fetch reads, read_committed, every partition in lag from its position
// until it passes its end, each with the materialiser's fetch loop
// (fetchLoop), all at once. Each response's rows commit with the position
// they bring the store to. Past the budget, what was read is kept and
// errTableBudget returned.
func (s *tableSyncer) fetch(ctx context.Context, cl *kgo.Client, lag map[*tablePart]int64, budget time.Duration) error {
	if len(lag) == 0 {
		return nil
	}
	bctx, cancel := context.WithTimeout(ctx, budget)
	defer cancel()
	s.mu.Lock()
	meta := s.meta
	s.mu.Unlock()
	var wg sync.WaitGroup
	errs := make(chan error, len(lag))
	for tp, end := range lag {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- s.read(bctx, cl, tp, end, meta[tp.ds.Topic])
		}()
	}
	wg.Wait()
	close(errs)
	var failed []error
	for err := range errs {
		if err != nil {
			failed = append(failed, err)
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("%w: engine: reading tables: %w", pipes.ErrUnavailable, errors.Join(failed...))
	}
	var behind []string
	for tp, end := range lag {
		if pos := tp.position(); pos < end {
			behind = append(behind, fmt.Sprintf("%s[%d] %d offsets", tp.ds.Name, tp.key.partition, end-pos))
		} else {
			s.markSynced(tp)
		}
	}
	if len(behind) == 0 {
		return nil
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w: engine: reading tables: %w", pipes.ErrUnavailable, ctx.Err())
	}
	slices.Sort(behind)
	return fmt.Errorf("%w: %w within %v, going on after a pause (to go: %s)", pipes.ErrUnavailable, errTableBudget, budget, strings.Join(behind, ", "))
}

// read reads tp up to end (fetchLoop) and applies each response; a
// context ended is not an error: fetch looks at the positions.
func (s *tableSyncer) read(ctx context.Context, cl *kgo.Client, tp *tablePart, end int64, meta topicMeta) error {
	tp.mu.Lock()
	from, fresh := tp.pos, tp.fresh
	tp.mu.Unlock()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	in := make(chan fetched, 1)
	leader, ok := meta.leaders[tp.key.partition]
	if !ok {
		leader = -1
	}
	go fetchLoop(rctx, cl, s.log, tp.ds.Topic, tp.key.partition, from, end, fresh, in, fetchHint{leader, meta.id})
	for f := range in {
		if f.err != nil {
			return fmt.Errorf("table %q partition %d: %w", tp.ds.Name, tp.key.partition, f.err)
		}
		if err := s.apply(tp, f); err != nil {
			return err
		}
		s.faults.reach(PhaseMidTableLoad)
	}
	return nil
}

// apply writes one fetch response of tp to its store and commits it with
// the new position.
func (s *tableSyncer) apply(tp *tablePart, f fetched) error {
	framed, err := s.framedRows(tp, f.recs) // encrypted tables (tables_crypt.go)
	if err != nil {
		return err
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for i, r := range f.recs {
		var err error
		switch {
		case r.Key == nil:
			continue // a row needs a key; Kafka Streams skips these too
		case r.Value == nil:
			err = tp.st.Delete(r.Key)
		case framed == nil:
			err = tp.st.Put(r.Key, r.Value)
		case framed[i] == nil:
			continue // does not decrypt: skipped, logged
		default:
			err = tp.st.Put(r.Key, framed[i])
		}
		if err != nil {
			return fmt.Errorf("engine: table %q partition %d: %w", tp.ds.Name, tp.key.partition, err)
		}
	}
	if err := tp.st.Commit(f.next); err != nil {
		return fmt.Errorf("engine: table %q partition %d: %w", tp.ds.Name, tp.key.partition, err)
	}
	tp.pos, tp.fresh = f.next, false
	return nil
}
