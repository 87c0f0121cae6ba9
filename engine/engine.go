// Package engine runs a compiled topology as one replica of a Kafka consumer
// group, exactly once.
//
// Data flow of one replica:
//
//	PollRecords ──► per-partition Task ──► Produce (sinks, dead letters)
//	     ▲                                        │
//	     └──── End(TryCommit) every CommitInterval: outputs + offsets in one transaction
//
// Exactly-once rests on franz-go's GroupTransactSession (EOS v2, KIP-447):
// one transactional id per replica, read_committed consumption, and consumed
// offsets committed inside the transaction that holds the outputs. A
// transaction spans many polls and ends when CommitInterval has passed. If
// the group rebalances while a transaction is open, ending it aborts, and the
// client rewinds to the committed offsets, so nothing is lost or doubled.
//
// Every polled record is processed before the transaction ends, because the
// offsets committed are those of everything polled.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/topology"
)

// Engine runs one replica of a topology.
type Engine struct {
	top  *topology.Topology
	opts Options
	ran  atomic.Bool

	sources  map[string]*topology.Dataset // by topic
	internal map[string]bool              // the repartition and merge topics read
	tasks    map[partitionKey]*Task

	revokedMu sync.Mutex
	revoked   []partitionKey

	hooks      *hooks
	local      *localState  // stores and tables (local.go), nil without either
	dirLock    *os.File     // the state directory's lock when local is nil (LockStateDir)
	state      StateOpener  // local's, nil without stores
	tables     *tableSyncer // local's: the tables joins look records up in, or nil
	pebble     *pebbleState // local's store restorer, nil without stores
	purge      *purger      // deletes consumed records of internal topics, or nil
	bounds     *bounded     // the end of a bounded run (Options.Bounds), or nil
	produceErr atomic.Pointer[error]

	// changelogEnd tracks, per changelog partition, the offset after the
	// last record the open transaction wrote; stores commit at it.
	changelogMu  sync.Mutex
	changelogEnd map[partitionKey]int64
	changelogs   map[string]bool
	sizesAt      time.Time // when store sizes were last reported
	assigned     atomic.Int64
	ready        atomic.Bool // joined, with an assignment; false once lost or stopped
	live         liveness
}

// New returns an engine for t. It validates the options and does no I/O.
func New(t *topology.Topology, o Options) (*Engine, error) {
	if o.MinCommitInterval == 0 {
		o.MinCommitInterval = t.MinCommitInterval
	}
	if err := o.setDefaults(t.CommitInterval); err != nil {
		return nil, err
	}
	// Every log line of the replica says which topology and replica.
	o.Logger = o.Logger.With("topology", t.Name, "replica", o.ReplicaID)
	e := &Engine{top: t, opts: o, sources: map[string]*topology.Dataset{}, tasks: map[partitionKey]*Task{}, hooks: sortHooks(o.Hooks)}
	e.internal = map[string]bool{}
	for _, d := range t.Sources() {
		e.sources[d.Topic] = d
	}
	for _, d := range t.Internal() {
		e.internal[d.Topic] = true
	}
	e.changelogEnd, e.changelogs = map[partitionKey]int64{}, map[string]bool{}
	e.purge = newPurger(t, o.PurgeInterval, o.Logger, e.hooks.purge)
	e.bounds = newBounded(t, e.opts)
	for _, s := range t.Stores() {
		e.changelogs[t.ChangelogTopic(s)] = true
	}
	e.local = newLocalState(t, &e.opts, e.hooks)
	e.tables, e.pebble, e.state = e.local.syncer(), e.local.restorer(), e.local.opener()
	if len(e.sources) == 0 {
		return nil, fmt.Errorf("engine: topology %q reads no topic", t.Name)
	}
	return e, nil
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return e.opts.Stats }

// TransactionalID returns the replica's transactional id.
func (e *Engine) TransactionalID() string { return e.top.TransactionalID(e.opts.ReplicaID) }

// Ready reports whether the replica has joined the group, holds an
// assignment (it may be empty if there are more replicas than partitions),
// has restored the state of every partition assigned to it, and has loaded
// the tables they join.
func (e *Engine) Ready() bool {
	return e.ready.Load() && !e.local.pending()
}

// LoadingTables returns how many assigned partitions wait, paused, for the
// tables they join to be read: while any do, the replica is not ready.
func (e *Engine) LoadingTables() int { return int(e.local.loading()) }

// Restoring returns the state restores under way, by store and partition:
// while there are any, the replica is not ready.
func (e *Engine) Restoring() []RestoreProgress {
	return e.local.restoring()
}

// Run joins the consumer group and processes until ctx is canceled or a
// fatal error occurs. On cancel it commits the open transaction (bounded by
// ShutdownTimeout), leaves the group and returns nil. It closes everything it
// opened. Run may be called once.
func (e *Engine) Run(ctx context.Context) (err error) {
	if !e.ran.CompareAndSwap(false, true) {
		return errors.New("engine: Run called twice")
	}
	log := e.opts.Logger
	// The state directory's lock goes, even if LockStateDir took it and
	// Run stops before it starts.
	defer e.unlockStateDir()
	defer e.local.close()
	if ctx.Err() != nil {
		return nil // stopped before it started
	}
	// A second process of the group on the same state directory is
	// refused before it touches anything (a topology with stores or
	// tables; LockStateDir locks a stateless one too).
	if err := e.local.start(); err != nil {
		return err
	}
	if err := EnsureTopics(ctx, e.top, e.opts.Brokers, e.opts.ClientOpts, log); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while starting
		}
		return outage(err) // the brokers were checked before Run: a dial error now is an outage
	}
	sess, err := kgo.NewGroupTransactSession(e.clientOpts()...)
	if err != nil {
		return fmt.Errorf("engine: kafka client: %w", err)
	}
	defer func() {
		e.local.stopLoads() // before the tasks let go of the tables
		var errs []error
		for k, t := range e.tasks {
			errs = append(errs, t.Close())
			delete(e.tasks, k)
		}
		e.local.stopRestores() // after the tasks closed their stores
		e.purge.stop()         // a deletion under way uses the session's client
		e.ready.Store(false)
		e.leave(sess)
		err = errors.Join(append([]error{err}, errs...)...)
		log.Info("replica stopped")
	}()
	// Bounded runs (engine/bounded.go): ctx is canceled once the whole group is done.
	ctx, stopBounded := e.bounds.watch(ctx)
	defer stopBounded()
	log.Info("replica starting", "group", e.top.Group, "transactional_id", e.TransactionalID(), "topics", e.top.TopicsRead())
	watched := e.top.TopicsRead()
	for _, d := range e.top.Tables() {
		watched = append(watched, d.Topic)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	watching := make(chan struct{})
	go func() {
		defer close(watching)
		(&txnWatcher{adm: kadm.NewClient(sess.Client()), topics: watched, interval: 15 * time.Second, hooks: e.hooks.openTxn}).run(wctx)
	}()
	defer func() { stopWatch(); <-watching }() // before the client closes
	return e.loop(ctx, sess, log)
}

// compression returns the codec of a topology's processing.compression;
// the compiler has checked the name.
func compression(name string) kgo.CompressionCodec {
	switch name {
	case "lz4":
		return kgo.Lz4Compression()
	case "zstd":
		return kgo.ZstdCompression()
	case "gzip":
		return kgo.GzipCompression()
	case "none":
		return kgo.NoCompression()
	}
	return kgo.SnappyCompression()
}

func (e *Engine) clientOpts() []kgo.Opt {
	start := kgo.NewOffset().AtStart()
	if e.top.StartOffset == "latest" {
		start = kgo.NewOffset().AtEnd()
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(e.opts.Brokers...),
		kgo.ConsumerGroup(e.top.Group),
		kgo.ConsumeTopics(e.top.TopicsRead()...),
		kgo.ConsumeResetOffset(start),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.TransactionalID(e.TransactionalID()),
		kgo.TransactionTimeout(e.opts.TransactionTimeout),
		kgo.SessionTimeout(e.opts.SessionTimeout),
		// Produce blocks past this many unacknowledged records: that is the
		// backpressure that bounds memory when the broker is slower than
		// the pipes (64k records of 1 KB is 64 MB).
		kgo.MaxBufferedRecords(1 << 16),
		// Changelog records go to the partition of the task that wrote
		// them; everything else by key, as Kafka's default partitioner.
		kgo.RecordPartitioner(changelogPartitioner{e.changelogs}),
		kgo.ProducerBatchMaxBytes(1 << 20),
		// No record delivery timeout: after one record times out,
		// franz-go's transactional producer fails every later record of
		// the partition at once, and the replica never recovers (seen in
		// TestReset under load). What bounds a transaction during a broker
		// outage is the context of its flush and End (txn.endBudget).
		// start_offset applies to the external sources only: the job's
		// own repartition and merge topics are always read from their
		// start, or records written there before the group first
		// committed an offset on them would be skipped.
		kgo.AdjustFetchOffsetsFn(e.internalFromStart),
		kgo.ProducerBatchCompression(compression(e.top.Compression)),
		kgo.OnPartitionsAssigned(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			e.opts.Logger.Info("partitions assigned", "partitions", m)
			e.countAssigned(m, 1)
			// Fetching from these partitions begins when this returns:
			// those with state or tables wait, paused, for their restores
			// and table loads.
			e.local.Prepare(cl, m)
			e.ready.Store(true)
			for _, h := range e.hooks.rebalance {
				h.OnRebalance(Rebalance{Assigned: m})
			}
		}),
		kgo.OnPartitionsRevoked(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			if len(m) > 0 {
				e.opts.Logger.Info("partitions revoked", "partitions", m)
			}
			e.drop(cl, m)
			for _, h := range e.hooks.rebalance {
				h.OnRebalance(Rebalance{Revoked: m})
			}
		}),
		kgo.OnPartitionsLost(func(_ context.Context, cl *kgo.Client, m map[string][]int32) {
			e.opts.Logger.Warn("partitions lost", "partitions", m)
			// Out of the group (session expired, fenced) until assigned again.
			e.ready.Store(false)
			e.drop(cl, m)
			for _, h := range e.hooks.rebalance {
				h.OnRebalance(Rebalance{Revoked: m, Lost: true})
			}
		}),
	}
	if len(e.opts.ClientHooks) > 0 {
		opts = append(opts, kgo.WithHooks(e.opts.ClientHooks...))
	}
	if e.opts.Faults != nil {
		opts = append(opts, kgo.WithHooks(offsetsHook{&e.opts}))
	}
	opts = append(opts, e.bounds.clientOpts()...) // bounded runs: markers through the poll
	return append(opts, e.opts.ClientOpts...)
}

// leave leaves the group and closes the client, within 3 s at most:
// with the broker down, a leave would otherwise retry for ever. A replica
// that could not leave is dropped by the group when its session expires.
func (e *Engine) leave(sess *kgo.GroupTransactSession) {
	ctx, cancel := context.WithTimeout(context.Background(), min(e.opts.ShutdownTimeout, 3*time.Second))
	defer cancel()
	if err := sess.Client().LeaveGroupContext(ctx); err != nil {
		e.opts.Logger.Warn("could not leave the group; it drops this replica when its session times out", "err", err)
	}
	closed := make(chan struct{})
	go func() {
		sess.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-ctx.Done():
		e.opts.Logger.Warn("the Kafka client did not close in time; stopping without it")
	}
}

// internalFromStart is the group's AdjustFetchOffsetsFn: a repartition or
// merge partition with no committed offset starts at its first record,
// whatever the topology's start_offset.
func (e *Engine) internalFromStart(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	for topic, ps := range offsets {
		if !e.internal[topic] {
			continue
		}
		for p, o := range ps {
			if o.EpochOffset().Offset < 0 { // no commit: the reset offset
				ps[p] = kgo.NewOffset().AtStart()
			}
		}
	}
	return offsets, nil
}

func (e *Engine) countAssigned(m map[string][]int32, sign int64) {
	for _, ps := range m {
		e.assigned.Add(sign * int64(len(ps)))
	}
}

// drop is called from the client's group goroutine: it only records which
// tasks to close, and the processing loop closes them.
func (e *Engine) drop(cl *kgo.Client, m map[string][]int32) {
	e.countAssigned(m, -1)
	e.local.Release(cl, m)
	e.bounds.revoked(m)
	if cl != nil && len(m) > 0 {
		// A pause outlives an assignment, and the partitions may come back.
		cl.ResumeFetchPartitions(m)
	}
	e.revokedMu.Lock()
	defer e.revokedMu.Unlock()
	for t, ps := range m {
		for _, p := range ps {
			e.revoked = append(e.revoked, partitionKey{t, p})
		}
	}
}

func (e *Engine) closeRevoked() error {
	e.revokedMu.Lock()
	rev := e.revoked
	e.revoked = nil
	e.revokedMu.Unlock()
	var errs []error
	for _, k := range rev {
		e.opts.Stats.dropLag(k.topic, k.partition)
		for _, h := range e.hooks.lag {
			h.OnLag(k.topic, k.partition, -1)
		}
		if t, ok := e.tasks[k]; ok {
			errs = append(errs, t.Close())
			delete(e.tasks, k)
		}
	}
	return errors.Join(errs...)
}

func (e *Engine) task(topic string, partition int32) (*Task, error) {
	k := partitionKey{topic, partition}
	if t, ok := e.tasks[k]; ok {
		return t, nil
	}
	src := e.sources[topic]
	t, err := NewTask(e.top, src.Name, partition, TaskOptions{Logger: e.opts.Logger.With("partition", partition), Stats: e.opts.Stats, Hooks: e.opts.Hooks, State: e.state, Tables: e.tables.opener()})
	if err != nil {
		return nil, err
	}
	e.tasks[k] = t
	return t, nil
}

func (e *Engine) produce(sess *kgo.GroupTransactSession) func(*kgo.Record) {
	stats := e.opts.Stats
	promise := func(r *kgo.Record, err error) {
		if errors.Is(err, kgo.ErrAborting) {
			// The loop aborts the transaction itself (a pause, or after
			// the produce error recorded first): its buffered records
			// are meant to go.
			return
		}
		if err != nil {
			e.produceErr.CompareAndSwap(nil, &err)
			return
		}
		if e.changelogs[r.Topic] {
			k := partitionKey{r.Topic, r.Partition}
			e.changelogMu.Lock()
			e.changelogEnd[k] = max(e.changelogEnd[k], r.Offset+1)
			e.changelogMu.Unlock()
			return
		}
		if r.Topic != e.deadLetterTopic() {
			stats.RecordsOut.Add(1)
		}
	}
	return func(r *kgo.Record) {
		// The context is not the run's: a record handed to the client must
		// stay in the transaction until it ends, commit or abort.
		sess.Produce(context.Background(), r, promise)
	}
}

func (e *Engine) deadLetterTopic() string {
	if e.top.DeadLetter == nil {
		return ""
	}
	return e.top.DeadLetter.Topic
}

// settleState commits the tasks' stores after their Kafka transaction
// committed, or drops their writes after it aborted.
func (e *Engine) settleState(committed bool) error {
	if e.state == nil {
		return nil
	}
	e.changelogMu.Lock()
	ends := e.changelogEnd
	e.changelogEnd = map[partitionKey]int64{}
	e.changelogMu.Unlock()
	var errs []error
	report := len(e.hooks.state) > 0 && time.Since(e.sizesAt) >= 10*time.Second
	if report {
		e.sizesAt = time.Now()
	}
	for _, t := range e.tasks {
		if report {
			t.reportSizes(e.hooks.state)
		}
		if committed {
			errs = append(errs, t.CommitState(func(topic string, p int32) (int64, bool) {
				off, ok := ends[partitionKey{topic, p}]
				return off, ok
			}))
		} else {
			errs = append(errs, t.AbortState())
		}
	}
	return errors.Join(errs...)
}

// changelogPartitioner sends changelog records to the partition set on the
// record, and hashes the keys of all others like Kafka's default.
type changelogPartitioner struct{ changelogs map[string]bool }

func (c changelogPartitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if c.changelogs[topic] {
		return kgo.ManualPartitioner().ForTopic(topic)
	}
	return kgo.StickyKeyPartitioner(nil).ForTopic(topic)
}

// work is one partition's share of a poll.
type work struct {
	task *Task
	recs []*kgo.Record
}

// process runs the polled records through their partitions' tasks. Tasks
// share nothing, so partitions run in parallel, one goroutine each; each
// partition's records stay in order in its goroutine, and so do its
// outputs. It returns once every polled record is processed: End commits
// the offsets of everything polled.
//
// It returns how long the records took in the tasks, for the poll sizer:
// timed from when the tasks start, so without making new tasks or the
// tables' sync, which are not the pipes' speed per record (and without
// the stores' restores, done on assignment before the partitions are
// read). With an error, the duration means nothing.
func (e *Engine) process(ctx context.Context, fetches kgo.Fetches, emit func(*kgo.Record)) (time.Duration, error) {
	var ws []work
	var err error
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		if err != nil || len(p.Records) == 0 {
			return
		}
		last := p.Records[len(p.Records)-1].Offset
		lag := max(0, p.LastStableOffset-last-1)
		e.opts.Stats.setLag(p.Topic, p.Partition, lag)
		for _, h := range e.hooks.lag {
			h.OnLag(p.Topic, p.Partition, lag)
		}
		t, terr := e.task(p.Topic, p.Partition)
		if terr != nil {
			err = terr
			return
		}
		ws = append(ws, work{t, p.Records})
	})
	if err != nil {
		return 0, err
	}
	// Tables first: the records must see every table update committed
	// before they were polled (engine/tables.go).
	if err := e.tables.sync(ctx, fetches); err != nil {
		return 0, err
	}
	// The run's context is not passed down: once polled, a record is
	// processed.
	pctx := context.WithoutCancel(ctx)
	began := time.Now()
	if len(ws) == 1 {
		err := ws[0].task.Process(pctx, ws[0].recs, emit)
		return time.Since(began), err
	}
	// One goroutine per partition, not per core: a pipe that waits (a
	// remote model) then has every partition's rows in hand at once, so a
	// shared micro-batcher can merge them; CPU-bound pipes lose nothing,
	// the scheduler runs GOMAXPROCS of them at a time.
	errs := make([]error, len(ws))
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = w.task.Process(pctx, w.recs, emit)
		}()
	}
	wg.Wait()
	return time.Since(began), errors.Join(errs...)
}

// take readies a poll's records for the tasks. A bounded run's filter
// drops transaction markers and records past the end (engine/bounded.go);
// then, if anything is left to do (records to process, or consumed
// positions the filter moved past dropped records, which must still be
// committed), take begins the transaction unless one is open and counts
// the poll in it. It returns the records left for the tasks, and whether
// there is anything to do. cl is the transactional session's client.
//
// One poll has two counts, for two questions:
//   - Has the replica caught up (txn.polled)? That compares the records
//     the poll returned, before the filter, with limit, the most it
//     could return: a full poll means more may be waiting, however many
//     of its records the filter then drops. The count after the filter
//     would make a full poll that crosses a partition's end look short,
//     and end the transaction at MinCommitInterval though the replica is
//     behind (never a loss; only commits more often than the interval).
//   - How much do the tasks do? The records after the filter: the
//     transaction's count (txn.add) and the poll sizer's (the caller's),
//     which times the tasks; dropped records cost them nothing, and
//     counting them would make the pipes look faster than they are and
//     the next polls too big for the transaction.
//
// It must not be called concurrently with any method of tx.
func (e *Engine) take(ctx context.Context, tx *txn, cl *kgo.Client, fetches kgo.Fetches, limit int) (n int, todo bool, err error) {
	returned := fetches.NumRecords()
	dropped := e.bounds.filter(ctx, fetches, cl)
	n = fetches.NumRecords()
	if n == 0 && !dropped {
		return 0, false, nil
	}
	if err := tx.begin(); err != nil {
		return 0, false, err
	}
	tx.polled(returned, limit, cl.BufferedFetchRecords())
	tx.add(n)
	return n, true, nil
}

func (e *Engine) loop(ctx context.Context, sess *kgo.GroupTransactSession, log *slog.Logger) error {
	emit := e.produce(sess)
	stats := e.opts.Stats
	tx := &txn{e: e, sess: sess, log: log}
	sizer := newPollSizer(e.top.MaxPollRecords, e.opts.TransactionTimeout, log)
	pause := e.opts.RetryBackoff
	// pauseAfter waits after a transaction aborted because a dependency
	// is down (a model server, the registry, the brokers), not because of
	// the records: the abort rewound to the committed offsets, and the
	// same records are read again after the wait.
	pauseAfter := func(cause error) {
		stats.Pauses.Add(1)
		for _, h := range e.hooks.pause {
			h.OnPause(Pause{Err: cause, Wait: pause})
		}
		log.Warn("a dependency is unavailable; transaction aborted, retrying the same records after a pause", "wait", pause, "err", cause)
		e.live.idle() // waiting on purpose is not being stuck
		select {
		case <-time.After(pause):
		case <-ctx.Done():
		}
		pause = min(2*pause, e.opts.MaxRetryBackoff)
	}
	for {
		if err := e.closeRevoked(); err != nil {
			log.Warn("closing revoked tasks", "err", err)
		}
		if ctx.Err() != nil {
			break
		}
		pollCtx, cancel := ctx, context.CancelFunc(func() {})
		if deadline, open := tx.pollDeadline(); open {
			pollCtx, cancel = context.WithDeadline(ctx, deadline)
		} else if e.pebble != nil {
			// A revoked task keeps its stores open until the top of this
			// loop closes it, and a restore of its partition, assigned
			// back, waits for them: an idle poll must not wait forever.
			pollCtx, cancel = context.WithTimeout(ctx, time.Second)
		}
		e.live.idle()
		limit := sizer.limit()
		fetches := sess.PollRecords(pollCtx, limit)
		cancel()
		e.live.busy()
		if fetches.IsClientClosed() {
			return errors.New("engine: kafka client closed")
		}
		fetches.EachError(func(topic string, partition int32, err error) {
			if !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
				log.Warn("fetch error", "topic", topic, "partition", partition, "err", err)
			}
		})
		n, todo, err := e.take(ctx, tx, sess.Client(), fetches, limit)
		if err != nil {
			return err
		}
		if todo {
			pctx, pcancel := tx.budget(ctx)
			took, procErr := e.process(pctx, fetches, emit)
			pcancel()
			if procErr == nil {
				sizer.observe(n, took)
			}
			if procErr != nil {
				actx, acancel := tx.endBudget(ctx, e.opts.ShutdownTimeout)
				abortErr := tx.finish(actx, kgo.TryAbort)
				acancel()
				if !errors.Is(procErr, pipes.ErrUnavailable) || abortErr != nil || ctx.Err() != nil {
					return errors.Join(procErr, abortErr)
				}
				pauseAfter(procErr)
				continue
			}
			e.purge.processed(fetches)
		}
		if tx.due() {
			// Not the run's context: a SIGTERM arriving mid-commit must not
			// cut the commit short (that would fail the run instead of
			// shutting down cleanly). The transaction timeout bounds it.
			cctx, cancel := tx.endBudget(ctx, e.opts.TransactionTimeout)
			err := tx.finish(cctx, kgo.TryCommit)
			cancel()
			if err != nil {
				return err
			}
			pause = e.opts.RetryBackoff
			e.purge.maybe(sess.Client())
		}
	}

	// Shutdown: commit what is open, within the shutdown budget.
	sctx, cancel := tx.endBudget(ctx, e.opts.ShutdownTimeout)
	defer cancel()
	if err := tx.finish(sctx, kgo.TryCommit); err != nil {
		return fmt.Errorf("engine: the last commit before stopping failed (nothing is lost: its records are processed again by the next owner of the partitions): %w", err)
	}
	return nil
}
