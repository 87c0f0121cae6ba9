package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

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
	dir      string
	brokers  []string
	extra    []kgo.Opt
	log      *slog.Logger
	bySource map[string][]*topology.Dataset // source topic → the tables its tasks use

	startMu  sync.Mutex
	started  bool
	startErr error // a refusal, kept; a broker that was away is retried

	mu    sync.Mutex // guards parts, cl, meta
	parts map[tableKey]*tablePart
	cl    *kgo.Client
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
	mu    sync.Mutex // guards st: tasks of several partitions read a global table at once
	st    state.Store
	pos   int64 // the next table offset to read: the store's checkpoint
	fresh bool  // nothing read yet: the store may start at the log start
	users int
	// idChecked is set once the store is known to come from the topic
	// that exists now (sameTopic), under mu.
	idChecked bool
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
func newTableSyncer(t *topology.Topology, o Options) *tableSyncer {
	tables := t.Tables()
	if len(tables) == 0 {
		return nil
	}
	s := &tableSyncer{top: t, dir: o.StateDir, brokers: o.Brokers, extra: o.ClientOpts, log: o.Logger,
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

// client returns the syncer's Kafka client, made on first use; s.mu held.
func (s *tableSyncer) client() (*kgo.Client, error) {
	if s.cl != nil {
		return s.cl, nil
	}
	cl, err := seedClient(s.brokers, s.extra)
	if err != nil {
		return nil, fmt.Errorf("engine: kafka client for tables: %w", err)
	}
	s.cl = cl
	return cl, nil
}

// start checks, once, that every table topic exists (creating those the
// job owns) and that partitioned tables have the partition counts of the
// streams that join them.
func (s *tableSyncer) start() error {
	s.startMu.Lock()
	defer s.startMu.Unlock()
	if s.started {
		return s.startErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.check(ctx)
	if errors.Is(err, pipes.ErrUnavailable) {
		return err
	}
	s.started, s.startErr = true, err
	return err
}

func (s *tableSyncer) check(ctx context.Context) error {
	s.mu.Lock()
	cl, err := s.client()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	adm := kadm.NewClient(cl)
	tables := s.top.Tables()
	var topics []string
	for _, d := range tables {
		topics = append(topics, d.Topic)
	}
	for _, src := range s.top.Sources() {
		topics = append(topics, src.Topic)
	}
	md, err := adm.Metadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("%w: metadata of the table topics: %w", pipes.ErrUnavailable, err)
	}
	var errs []error
	for _, d := range tables {
		td, ok := md.Topics[d.Topic]
		if ok && td.Err == nil && len(td.Partitions) > 0 {
			continue
		}
		if d.Create == nil {
			errs = append(errs, fmt.Errorf("table %q: topic %s does not exist (create it, or declare create: on the dataset)", d.Name, d.Topic))
			continue
		}
		cfg := configs(d.Create.Config)
		if cfg == nil {
			cfg = map[string]*string{}
		}
		if _, set := cfg["cleanup.policy"]; !set {
			cfg["cleanup.policy"] = kadm.StringPtr("compact") // a table keeps the latest value per key
		}
		resp, err := adm.CreateTopic(ctx, int32(d.Create.Partitions), int16(d.Create.Replication), cfg, d.Topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
			errs = append(errs, fmt.Errorf("table %q: creating topic %s: %w", d.Name, d.Topic, err))
			continue
		}
		s.log.Info("created table topic", "topic", d.Topic, "dataset", d.Name, "partitions", d.Create.Partitions)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if err := s.refresh(ctx); err != nil {
		return err
	}
	for _, d := range tables {
		if d.Table != topology.TablePartitioned {
			continue
		}
		nt := s.meta[d.Topic].partitions
		for _, p := range s.top.Joiners(d) {
			for _, src := range s.top.UpstreamSources(p) {
				ns := len(md.Topics[src.Topic].Partitions)
				if ns != nt {
					errs = append(errs, fmt.Errorf("partitioned table %q (topic %s) has %d partitions, but stream %q (topic %s), which pipe %q joins with it, has %d: they must be co-partitioned (same partition count, same key); repartition one of them, or declare the table global",
						d.Name, d.Topic, nt, src.Name, src.Topic, p.Name, ns))
				}
			}
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	return nil
}

// refresh reads the table topics' ids, partition counts and leaders.
func (s *tableSyncer) refresh(ctx context.Context) error {
	s.mu.Lock()
	cl, err := s.client()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	var topics []string
	for _, d := range s.top.Tables() {
		topics = append(topics, d.Topic)
	}
	md, err := kadm.NewClient(cl).Metadata(ctx, topics...)
	if err != nil {
		return fmt.Errorf("%w: engine: metadata of the table topics: %w", pipes.ErrUnavailable, err)
	}
	meta := map[string]topicMeta{}
	for _, t := range topics {
		td := md.Topics[t]
		if td.Err != nil || len(td.Partitions) == 0 {
			return fmt.Errorf("%w: engine: metadata of table topic %s: %v", pipes.ErrUnavailable, t, td.Err)
		}
		m := topicMeta{id: td.ID, partitions: len(td.Partitions), leaders: map[int32]int32{}}
		for _, p := range td.Partitions {
			m.leaders[p.Partition] = p.Leader
		}
		meta[t] = m
	}
	s.mu.Lock()
	s.meta = meta
	s.mu.Unlock()
	return nil
}

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
	dir := state.Dir(s.dir, s.top.Group, "table-"+d.Name, partition)
	st, err := state.OpenPebble(dir)
	if err != nil {
		s.log.Warn("table store unreadable; rebuilding it from its topic", "table", d.Name, "partition", partition, "err", err)
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			return nil, fmt.Errorf("engine: removing %s: %w", dir, rmErr)
		}
		if st, err = state.OpenPebble(dir); err != nil {
			return nil, fmt.Errorf("engine: opening table %q partition %d: %w", d.Name, partition, err)
		}
	}
	pos, ok, err := st.Checkpoint()
	if err != nil {
		st.Close()
		return nil, fmt.Errorf("engine: table %q partition %d: %w", d.Name, partition, err)
	}
	fresh := !ok || pos < 0
	if fresh {
		pos = 0
	}
	tp := &tablePart{ds: d, key: k, st: st, pos: pos, fresh: fresh, users: 1}
	s.parts[k] = tp
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
	tp.mu.Unlock()
	if len(s.parts) == 0 && s.cl != nil {
		// No task uses a table any more (the replica is stopping, or holds
		// no partition): the client goes too, and comes back on demand.
		s.cl.Close()
		s.cl = nil
	}
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
// topic's last stable offset.
func (s *tableSyncer) catchUp(ctx context.Context, need map[*tablePart]bool, budget time.Duration) error {
	want := map[string][]int32{}
	for tp := range need {
		want[tp.ds.Topic] = append(want[tp.ds.Topic], tp.key.partition)
	}
	s.mu.Lock()
	cl, err := s.client()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	ends, err := lastStable(ctx, cl, want)
	if err != nil {
		return fmt.Errorf("%w: engine: table topics: %w", pipes.ErrUnavailable, err)
	}
	// After lastStable, which waits for a topic made a moment ago to be
	// known.
	if err := s.checkIDs(ctx, cl, need); err != nil {
		return fmt.Errorf("%w: engine: table topics: %w", pipes.ErrUnavailable, err)
	}
	lag := map[*tablePart]int64{}
	for tp := range need {
		end, _ := ends.Lookup(tp.ds.Topic, tp.key.partition)
		if tp.pos > end.Offset {
			// The topic was recreated: what the store holds is gone.
			s.log.Warn("table store is ahead of its topic (was the topic recreated?); rebuilding it", "table", tp.ds.Name, "partition", tp.key.partition, "checkpoint", tp.pos, "end", end.Offset)
			if err := tp.reset(s.dir, s.top.Group); err != nil {
				return err
			}
		}
		if tp.pos < end.Offset {
			lag[tp] = end.Offset
			if behind := end.Offset - tp.pos; behind >= bigCatchUp {
				s.log.Info("reading a table from its topic", "table", tp.ds.Name, "partition", tp.key.partition, "from", tp.pos, "to", end.Offset, "offsets_to_go", behind)
			}
		}
	}
	return s.fetch(ctx, cl, lag, budget)
}

// checkIDs rebuilds, once per opening, the stores in need that were read
// from a table topic since deleted and made again (see sameTopic).
func (s *tableSyncer) checkIDs(ctx context.Context, cl *kgo.Client, need map[*tablePart]bool) error {
	var topics []string
	for tp := range need {
		tp.mu.Lock()
		if !tp.idChecked && !slices.Contains(topics, tp.ds.Topic) {
			topics = append(topics, tp.ds.Topic)
		}
		tp.mu.Unlock()
	}
	if len(topics) == 0 {
		return nil
	}
	ids, err := topicIDs(ctx, cl, topics...)
	if err != nil {
		return err
	}
	for tp := range need {
		tp.mu.Lock()
		checked := tp.idChecked
		tp.mu.Unlock()
		if checked {
			continue
		}
		dir := state.Dir(s.dir, s.top.Group, "table-"+tp.ds.Name, tp.key.partition)
		had, same, err := sameTopic(dir, ids[tp.ds.Topic])
		if err != nil {
			return err
		}
		if !same {
			s.log.Warn("table store comes from a topic since deleted and made again (a reset?); rebuilding it", "table", tp.ds.Name, "partition", tp.key.partition, "checkpoint", tp.pos, "topic_id", ids[tp.ds.Topic], "store_topic_id", had)
			if err := tp.reset(s.dir, s.top.Group); err != nil {
				return err
			}
			if _, _, err := sameTopic(dir, ids[tp.ds.Topic]); err != nil {
				return err
			}
		}
		tp.mu.Lock()
		tp.idChecked = true
		tp.mu.Unlock()
	}
	return nil
}

// reset empties the store of tp, to be read again from offset 0.
func (tp *tablePart) reset(root, group string) error {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	dir := state.Dir(root, group, "table-"+tp.ds.Name, tp.key.partition)
	if err := tp.st.Close(); err != nil {
		return err
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("engine: removing %s: %w", dir, err)
	}
	st, err := state.OpenPebble(dir)
	if err != nil {
		return fmt.Errorf("engine: reopening table %q partition %d: %w", tp.ds.Name, tp.key.partition, err)
	}
	tp.st, tp.pos, tp.fresh = st, 0, true
	return nil
}

// fetch reads, read_committed, every partition in lag from its position
// until it passes its end, with raw fetch requests: one per leader per
// round, covering all its lagging partitions. The position after each
// response (kgo.ProcessFetchPartition) says exactly when the end is
// reached, also when the last offsets are transaction markers or records
// compacted away, where a consumer would return nothing to go by. Each
// response's rows commit with the position they bring the store to.
func (s *tableSyncer) fetch(ctx context.Context, cl *kgo.Client, lag map[*tablePart]int64, budget time.Duration) error {
	dec := kgo.DefaultDecompressor()
	backoff := 20 * time.Millisecond
	start := time.Now()
	for len(lag) > 0 {
		if ctx.Err() != nil {
			return fmt.Errorf("%w: engine: reading tables: %w", pipes.ErrUnavailable, ctx.Err())
		}
		// Past the budget, but only after a round of fetches: every sync
		// makes progress.
		if time.Since(start) > budget {
			var behind []string
			for tp, end := range lag {
				behind = append(behind, fmt.Sprintf("%s[%d] %d offsets", tp.ds.Name, tp.key.partition, end-tp.pos))
			}
			slices.Sort(behind)
			return fmt.Errorf("%w: %w within %v, going on after a pause (to go: %s)", pipes.ErrUnavailable, errTableBudget, budget, strings.Join(behind, ", "))
		}
		s.mu.Lock()
		meta := s.meta
		s.mu.Unlock()
		byLeader := map[int32][]*tablePart{}
		for tp := range lag {
			leader, ok := meta[tp.ds.Topic].leaders[tp.key.partition]
			if !ok {
				leader = -1
			}
			byLeader[leader] = append(byLeader[leader], tp)
		}
		progress, retry := false, false
		for leader, tps := range byLeader {
			if leader < 0 {
				retry = true
				continue
			}
			req := kmsg.NewPtrFetchRequest()
			req.ReplicaID = -1
			req.MaxWaitMillis = 100
			req.MinBytes = 1
			req.MaxBytes = 32 << 20
			req.IsolationLevel = 1 // read_committed
			req.SessionEpoch = -1  // no fetch session
			byTopic := map[string]int{}
			for _, tp := range tps {
				i, ok := byTopic[tp.ds.Topic]
				if !ok {
					rt := kmsg.NewFetchRequestTopic()
					rt.Topic, rt.TopicID = tp.ds.Topic, meta[tp.ds.Topic].id
					req.Topics = append(req.Topics, rt)
					i = len(req.Topics) - 1
					byTopic[tp.ds.Topic] = i
				}
				rp := kmsg.NewFetchRequestTopicPartition()
				rp.Partition, rp.FetchOffset, rp.PartitionMaxBytes = tp.key.partition, tp.pos, 8<<20
				req.Topics[i].Partitions = append(req.Topics[i].Partitions, rp)
			}
			resp, err := req.RequestWith(ctx, cl.Broker(int(leader)))
			if err == nil {
				err = kerr.ErrorForCode(resp.ErrorCode)
			}
			if err != nil {
				s.log.Debug("table fetch failed; retrying", "leader", leader, "err", err)
				retry = true
				continue
			}
			for ti := range resp.Topics {
				rt := &resp.Topics[ti]
				for pi := range rt.Partitions {
					rpart := &rt.Partitions[pi]
					tp := findPart(tps, meta, rt.Topic, rt.TopicID, rpart.Partition)
					if tp == nil {
						continue
					}
					moved, err := s.apply(tp, rpart, dec)
					if err != nil {
						if kerr.IsRetriable(err) {
							retry = true
							continue
						}
						return err
					}
					if moved {
						progress = true
					}
					if tp.pos >= lag[tp] {
						delete(lag, tp)
					}
				}
			}
		}
		if retry {
			if err := s.refresh(ctx); err != nil {
				s.log.Debug("table metadata refresh failed", "err", err)
			}
		}
		if progress {
			backoff = 20 * time.Millisecond
			continue
		}
		if len(lag) > 0 {
			select {
			case <-time.After(backoff):
				backoff = min(2*backoff, time.Second)
			case <-ctx.Done():
			}
		}
	}
	return nil
}

// findPart returns the partition of a response among those asked for; a
// response names the topic by id when the request version uses ids.
func findPart(tps []*tablePart, meta map[string]topicMeta, topic string, id [16]byte, partition int32) *tablePart {
	for _, tp := range tps {
		if tp.key.partition != partition {
			continue
		}
		if tp.ds.Topic == topic || (id != [16]byte{} && meta[tp.ds.Topic].id == id) {
			return tp
		}
	}
	return nil
}

// apply writes one fetch response of tp to its store and commits it with
// the new position. It reports whether the position moved.
func (s *tableSyncer) apply(tp *tablePart, rpart *kmsg.FetchResponseTopicPartition, dec kgo.Decompressor) (bool, error) {
	if err := kerr.ErrorForCode(rpart.ErrorCode); err != nil {
		if errors.Is(err, kerr.OffsetOutOfRange) && tp.fresh && rpart.LogStartOffset > tp.pos {
			// An empty store reads what the topic still holds: records
			// before its start were deleted (retention) or never there.
			tp.pos = rpart.LogStartOffset
			return true, nil
		}
		if errors.Is(err, kerr.OffsetOutOfRange) {
			return false, fmt.Errorf("engine: table %q partition %d: offset %d is out of the topic's range (log start %d): records the table needs were deleted; is the topic compacted rather than deleted by retention?", tp.ds.Name, tp.key.partition, tp.pos, rpart.LogStartOffset)
		}
		return false, err
	}
	fp, next := kgo.ProcessFetchPartition(kgo.ProcessFetchPartitionOpts{
		Offset: tp.pos, IsolationLevel: kgo.ReadCommitted(), Topic: tp.ds.Topic, Partition: tp.key.partition,
	}, rpart, dec, nil)
	if fp.Err != nil && next <= tp.pos {
		return false, fp.Err
	}
	if next <= tp.pos {
		return false, nil
	}
	tp.mu.Lock()
	defer tp.mu.Unlock()
	for _, r := range fp.Records {
		var err error
		switch {
		case r.Key == nil:
			continue // a row needs a key; Kafka Streams skips these too
		case r.Value == nil:
			err = tp.st.Delete(r.Key)
		default:
			err = tp.st.Put(r.Key, r.Value)
		}
		if err != nil {
			return false, fmt.Errorf("engine: table %q partition %d: %w", tp.ds.Name, tp.key.partition, err)
		}
	}
	if err := tp.st.Commit(next); err != nil {
		return false, fmt.Errorf("engine: table %q partition %d: %w", tp.ds.Name, tp.key.partition, err)
	}
	tp.pos, tp.fresh = next, false
	return true, nil
}

// tableHandle is what a join pipe holds: one store for a partitioned
// table, every partition's for a global one.
type tableHandle struct {
	s     *tableSyncer
	ds    *topology.Dataset
	parts []*tablePart
	once  sync.Once
}

var _ pipes.Table = (*tableHandle)(nil)

func (h *tableHandle) Get(key []byte) (any, bool, error) {
	for _, tp := range h.parts {
		raw, ok, err := tp.get(key)
		if err != nil {
			return nil, false, fmt.Errorf("table %q partition %d: %w", h.ds.Name, tp.key.partition, err)
		}
		if !ok {
			continue
		}
		v, err := h.ds.Codec.Decode(raw)
		if err != nil {
			return nil, false, fmt.Errorf("table %q: the value of key %q does not decode: %w", h.ds.Name, key, err)
		}
		return v, true, nil
	}
	return nil, false, nil
}

// get returns a copy of the stored value: the store's slice is only valid
// until its next call, which another task may make.
func (tp *tablePart) get(key []byte) ([]byte, bool, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	v, ok, err := tp.st.Get(key)
	if err != nil || !ok {
		return nil, false, err
	}
	return bytes.Clone(v), true, nil
}

func (h *tableHandle) Schema() *pipes.Schema { return h.ds.Schema }

func (h *tableHandle) Partitioned() bool { return h.ds.Table == topology.TablePartitioned }

// Close releases the handle's stores; only the first call counts.
func (h *tableHandle) Close() error {
	var errs []error
	h.once.Do(func() {
		for _, tp := range h.parts {
			errs = append(errs, h.s.release(tp))
		}
	})
	return errors.Join(errs...)
}

// MemoryTables is a TableOpener whose tables live in memory and are filled
// by Put: the test driver's, and a task's default. Records go to the
// partition their key hashes to, as Kafka's default partitioner puts them,
// among the table's declared partitions (one if it declares none).
type MemoryTables struct {
	top  *topology.Topology
	mu   sync.Mutex
	rows map[tableKey]map[string][]byte
}

var _ TableOpener = (*MemoryTables)(nil)

// NewMemoryTables returns empty tables for t's table datasets.
func NewMemoryTables(t *topology.Topology) *MemoryTables {
	return &MemoryTables{top: t, rows: map[tableKey]map[string][]byte{}}
}

// Put writes the encoded value of key to a table; a nil value deletes the
// key, as a tombstone does.
func (m *MemoryTables) Put(table string, key, value []byte) error {
	d, ok := m.top.Datasets[table]
	if !ok || d.Table == "" {
		return fmt.Errorf("dataset %q is not a table of topology %q", table, m.top.Name)
	}
	if key == nil {
		return fmt.Errorf("table %q: a row needs a key", table)
	}
	n := m.partitions(d)
	p := int32(kgo.StickyKeyPartitioner(nil).ForTopic(d.Topic).Partition(&kgo.Record{Key: key}, n))
	m.mu.Lock()
	defer m.mu.Unlock()
	k := tableKey{table, p}
	if m.rows[k] == nil {
		m.rows[k] = map[string][]byte{}
	}
	if value == nil {
		delete(m.rows[k], string(key))
		return nil
	}
	m.rows[k][string(key)] = bytes.Clone(value)
	return nil
}

// partitions is the count Put spreads a table's rows over: its declared
// one, or for a partitioned table that declares none, that of the streams
// joining it (what the test driver assumes for them), so that a key's row
// sits in the partition of the key's records.
func (m *MemoryTables) partitions(d *topology.Dataset) int {
	if n := d.DeclaredPartitions(); n > 0 || d.Table != topology.TablePartitioned {
		return max(1, n)
	}
	n := 1
	for _, p := range m.top.Joiners(d) {
		for _, src := range m.top.UpstreamSources(p) {
			n = max(n, src.DeclaredPartitions())
		}
	}
	return n
}

// OpenTable returns a view of the table: the partition's rows when it is
// partitioned, all rows when global.
func (m *MemoryTables) OpenTable(table string, partition int32) (pipes.Table, error) {
	d, ok := m.top.Datasets[table]
	if !ok || d.Table == "" {
		return nil, fmt.Errorf("engine: dataset %q is not a table", table)
	}
	return &memTable{m: m, ds: d, partition: partition}, nil
}

type memTable struct {
	m         *MemoryTables
	ds        *topology.Dataset
	partition int32
}

var _ pipes.Table = (*memTable)(nil)

func (t *memTable) Get(key []byte) (any, bool, error) {
	t.m.mu.Lock()
	var raw []byte
	found := false
	for k, rows := range t.m.rows {
		if k.table != t.ds.Name || (t.Partitioned() && k.partition != t.partition) {
			continue
		}
		if v, ok := rows[string(key)]; ok {
			raw, found = v, true
			break
		}
	}
	t.m.mu.Unlock()
	if !found {
		return nil, false, nil
	}
	v, err := t.ds.Codec.Decode(raw)
	if err != nil {
		return nil, false, fmt.Errorf("table %q: the value of key %q does not decode: %w", t.ds.Name, key, err)
	}
	return v, true, nil
}

func (t *memTable) Schema() *pipes.Schema { return t.ds.Schema }

func (t *memTable) Partitioned() bool { return t.ds.Table == topology.TablePartitioned }
