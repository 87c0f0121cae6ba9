package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

// Restore tuning.
const (
	// progressEvery is how often hooks hear of a running restore, and
	// logEvery how often it is logged.
	progressEvery = time.Second
	logEvery      = 5 * time.Second
	// flushBytes is how much a restore writes to the store between
	// commits. Each commit records the offset reached, so a replica that
	// dies mid-restore resumes near where it stopped.
	flushBytes = 4 << 20
)

// storeKey names one local store: a store of the topology and a partition.
type storeKey struct {
	store     string
	partition int32
}

// pebbleState opens Pebble stores under a state directory and brings them
// up to date from their changelog partitions.
//
// Restores start when partitions are assigned, not when their first records
// arrive: prepare pauses fetching from each assigned partition whose tasks
// keep state, restores its stores in the background, and resumes the
// partition when they are done. Restoring never happens inside a Kafka
// transaction then (a long one would outlive the transaction timeout), the
// other partitions keep being processed meanwhile, and the replica reports
// itself ready only once every assigned partition's state is restored.
// OpenState, called as a task is built, takes the restored store and
// catches it up to the changelog's end, usually with nothing left to read.
type pebbleState struct {
	bulkOffsets int64 // Options.BulkRestoreOffsets
	top         *topology.Topology
	m           *materialiser // opens, admits and reads the stores
	faults      *Options      // Options.Faults, through reach
	log         *slog.Logger
	hooks       []StateHook
	progress    []RestoreHook
	// display is set when a hook draws progress itself: no periodic lines.
	display bool
	// bySource lists, per source topic, the stores its tasks open.
	bySource map[string][]string
	// holds keep partitions paused until their restores are done.
	holds *holds

	ctx    context.Context // canceled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	// slots bounds the restores that read and write at once, one per core:
	// more would only share the cores and hold more memory.
	slots chan struct{}

	mu sync.Mutex
	// tokens serialise the users of one store directory: a background
	// restore, the task the store goes to, and the next restore after a
	// revoke and re-assignment. A token is held from opening the store to
	// closing it.
	tokens map[storeKey]chan struct{}
	// restored holds stores restored in the background and not yet taken
	// by a task; parts the background restores by source partition.
	restored map[storeKey]*heldStore
	parts    map[partitionKey]*partRestore
	// active holds the restores under way (readiness).
	active map[*restoreRun]struct{}
}

type partRestore struct {
	cancel context.CancelFunc
	done   chan struct{}
}

var _ StateOpener = (*pebbleState)(nil)

func newPebbleState(t *topology.Topology, o *Options, hs *hooks, held *holds, m *materialiser) *pebbleState {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pebbleState{
		top: t, m: m, faults: o, log: o.Logger, hooks: hs.state,
		bySource: storesBySource(t), holds: held,
		ctx: ctx, cancel: cancel,
		tokens: map[storeKey]chan struct{}{}, restored: map[storeKey]*heldStore{},
		parts: map[partitionKey]*partRestore{}, active: map[*restoreRun]struct{}{},
		slots:       make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
		bulkOffsets: o.BulkRestoreOffsets,
	}
	for _, h := range o.Hooks {
		if x, ok := h.(RestoreHook); ok {
			p.progress = append(p.progress, x)
		}
		if _, ok := h.(RestoreDisplay); ok {
			p.display = true
		}
	}
	return p
}

// storesBySource lists the stores of the pipes downstream of each source:
// the stores a task of that source opens.
func storesBySource(t *topology.Topology) map[string][]string {
	out := map[string][]string{}
	for _, src := range t.Sources() {
		var stores []string
		for _, p := range t.TaskPipes(src) {
			for _, s := range p.Stores {
				if !slices.Contains(stores, s) {
					stores = append(stores, s)
				}
			}
		}
		if len(stores) > 0 {
			out[src.Topic] = stores
		}
	}
	return out
}

func (p *pebbleState) token(k storeKey) chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.tokens[k]
	if !ok {
		t = make(chan struct{}, 1)
		p.tokens[k] = t
	}
	return t
}

// heldStore is a store handed to a task: closing it frees its directory for
// the next user.
type heldStore struct {
	*state.Pebble
	once    sync.Once
	release func()
	disown  func() // set once a task took the store
}

// owned tells the materialiser that a task owns the store now.
func (h *heldStore) owned(m *materialiser, k storeKey) {
	pt := storePart(m.top, k.store, k.partition)
	m.own(pt)
	h.disown = func() { m.disown(pt) }
}

func (h *heldStore) Close() error {
	err := h.Pebble.Close()
	h.once.Do(func() {
		if h.disown != nil {
			h.disown()
		}
		h.release()
	})
	return err
}

// prepare starts restoring the stores of newly assigned partitions. It is
// called from the group's assignment callback, before fetching from them
// begins: it holds them paused (holds), and lets go of each once its
// stores are restored.
// It registers the restores before returning, so the replica is not ready
// from the moment it is assigned partitions with state to restore.
func (p *pebbleState) prepare(cl *kgo.Client, assigned map[string][]int32) {
	for topic, ps := range assigned {
		stores := p.bySource[topic]
		if len(stores) == 0 || len(ps) == 0 {
			continue
		}
		for _, part := range ps {
			pk := partitionKey{topic, part}
			g := p.holds.take(cl, pk)
			ctx, cancel := context.WithCancel(p.ctx)
			pr := &partRestore{cancel: cancel, done: make(chan struct{})}
			runs := make([]*restoreRun, len(stores))
			p.mu.Lock()
			prev := p.parts[pk] // a restore of a revoked assignment, stopping
			p.parts[pk] = pr
			for i, s := range stores {
				runs[i] = p.newRun(s, part)
			}
			p.mu.Unlock()
			p.wg.Add(1)
			go p.restorePartition(ctx, cl, pk, g, pr, prev, runs)
		}
	}
}

func (p *pebbleState) restorePartition(ctx context.Context, cl *kgo.Client, pk partitionKey, g *hold, pr *partRestore, prev *partRestore, runs []*restoreRun) {
	defer p.wg.Done()
	defer close(pr.done)
	if prev != nil {
		<-prev.done
	}
	for i, run := range runs {
		k := storeKey{run.p.Store, pk.partition}
		st, err := p.openRestored(ctx, k, run)
		if err != nil {
			for _, r := range runs[i+1:] {
				p.finish(r, err) // not started: unblock readiness
			}
			if ctx.Err() == nil {
				// The partition is resumed anyway: building its task
				// retries the restore, and a second failure stops the
				// replica.
				p.log.Error("restoring a state store failed", "store", k.store, "partition", k.partition, "err", err)
			}
			break
		}
		p.mu.Lock()
		if ctx.Err() != nil {
			p.mu.Unlock()
			p.closeStore(k, st)
			for _, r := range runs[i+1:] {
				p.finish(r, ctx.Err())
			}
			break
		}
		p.restored[k] = st
		p.mu.Unlock()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parts[pk] == pr {
		delete(p.parts, pk)
		if ctx.Err() == nil {
			p.holds.release(cl, pk, g)
		}
	}
}

// release stops the restores of revoked or lost partitions and closes
// their restored stores that no task took. (The engine resumes fetching
// from the partitions: a pause outlives an assignment.)
func (p *pebbleState) release(cl *kgo.Client, revoked map[string][]int32) {
	var toClose []storeKey
	p.mu.Lock()
	for topic, ps := range revoked {
		for _, part := range ps {
			if pr, ok := p.parts[partitionKey{topic, part}]; ok {
				// It stays listed until it stops: a restore of the
				// partition assigned back waits for it.
				pr.cancel()
			}
			for _, s := range p.bySource[topic] {
				if _, ok := p.restored[storeKey{s, part}]; ok {
					toClose = append(toClose, storeKey{s, part})
				}
			}
		}
	}
	stores := make([]*heldStore, len(toClose))
	for i, k := range toClose {
		stores[i] = p.restored[k]
		delete(p.restored, k)
	}
	p.mu.Unlock()
	for i, k := range toClose {
		p.closeStore(k, stores[i])
	}
}

// closeStore closes a store nobody took and frees its directory.
func (p *pebbleState) closeStore(k storeKey, st *heldStore) {
	if err := st.Close(); err != nil {
		p.log.Warn("closing a state store", "store", k.store, "partition", k.partition, "err", err)
	}
}

// close stops every restore, waits for them, and closes what they opened.
// Stores held by tasks are the tasks' to close.
func (p *pebbleState) close() {
	p.cancel()
	p.wg.Wait()
	p.mu.Lock()
	restored := p.restored
	p.restored = map[storeKey]*heldStore{}
	p.mu.Unlock()
	for k, st := range restored {
		p.closeStore(k, st)
	}
}

// restoring returns the restores under way, by store and partition.
func (p *pebbleState) restoring() []RestoreProgress {
	p.mu.Lock()
	out := make([]RestoreProgress, 0, len(p.active))
	for r := range p.active {
		out = append(out, r.snapshot())
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b RestoreProgress) int {
		if c := strings.Compare(a.Store, b.Store); c != 0 {
			return c
		}
		return int(a.Partition - b.Partition)
	})
	return out
}

// OpenState returns <dir>/<group>/<store>/<partition>, restored up to the
// changelog's last stable offset: the store a background restore prepared,
// caught up, or else the store opened and restored now. A restore that
// fails here fails the task, and the replica stops.
func (p *pebbleState) OpenState(store string, partition int32) (state.Store, error) {
	k := storeKey{store, partition}
	tok := p.token(k)
	p.mu.Lock()
	run := p.newRun(store, partition)
	p.mu.Unlock()
	// The store's token is free, or held by a background restore (which
	// hands the store over in restored) or by a task being closed. Fetching
	// from a partition waits for its restore, so this rarely waits at all.
	for {
		p.mu.Lock()
		st, ok := p.restored[k]
		delete(p.restored, k)
		p.mu.Unlock()
		if ok {
			// Records the previous owner committed after the background
			// restore listed the end: usually none.
			from, _, err := st.Checkpoint()
			if err == nil {
				err = p.restore(p.ctx, st.Pebble, k, from, run)
			}
			p.finish(run, err)
			if err != nil {
				st.Close()
				return nil, err
			}
			st.owned(p.m, k)
			return st, nil
		}
		select {
		case tok <- struct{}{}:
			st, err := p.openHeld(p.ctx, k, run)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
			st.owned(p.m, k)
			return st, nil
		case <-p.ctx.Done():
			p.finish(run, p.ctx.Err())
			return nil, p.ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// openRestored takes the store's token, then opens and restores the store
// (openHeld).
func (p *pebbleState) openRestored(ctx context.Context, k storeKey, run *restoreRun) (*heldStore, error) {
	select {
	case p.token(k) <- struct{}{}:
		return p.openHeld(ctx, k, run)
	case <-ctx.Done():
		p.finish(run, ctx.Err())
		return nil, ctx.Err()
	}
}

// openHeld opens the store whose token the caller took, and restores it.
// The materialiser admits the store first (materialiser.admit): a store it
// finds truncated, recreated or stale is wiped and rebuilt, once. On error
// it gives the token back. It reports the end of run.
func (p *pebbleState) openHeld(ctx context.Context, k storeKey, run *restoreRun) (st *heldStore, err error) {
	defer func() { p.finish(run, err) }()
	tok := p.token(k)
	release := func() { <-tok }
	pt := storePart(p.top, k.store, k.partition)
	pb, err := p.m.open(pt, false)
	if err != nil {
		release()
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		from, ok, err := pb.Checkpoint()
		if err == nil {
			if !ok || from < 0 {
				from = 0
			}
			pb, err = p.restoreFrom(ctx, pb, pt, k, from, !ok, run)
		}
		if why, wipe := wipeReason(err); wipe && attempt == 0 {
			if pb, err = p.m.wipe(pt, pb, why, "checkpoint", from, "err", err); err != nil {
				release()
				return nil, err
			}
			continue
		}
		if err != nil {
			if pb != nil {
				pb.Close()
				p.m.closed(pt, false)
			}
			release()
			return nil, err
		}
		p.m.markSynced(pt)
		return &heldStore{Pebble: pb, release: func() { p.m.closed(pt, true); release() }}, nil
	}
}

// restoreFrom brings the open store pb of pt up to the changelog's end
// from offset from, and returns it open, or nil with an error. Far behind
// (Options.BulkRestoreOffsets or more to read), it restores through the store reopened
// for a bulk load (state.OpenPebbleBulk: no write-ahead log, larger
// memtables), then reopens it as usual.
func (p *pebbleState) restoreFrom(ctx context.Context, pb *state.Pebble, pt part, k storeKey, from int64, fresh bool, run *restoreRun) (*state.Pebble, error) {
	end, err := p.begin(ctx, k, true, from, fresh, run)
	if err != nil || end == from {
		return pb, err
	}
	select {
	case p.slots <- struct{}{}:
		defer func() { <-p.slots }()
	case <-ctx.Done():
		return pb, ctx.Err()
	}
	// The clock starts now: rates and durations leave out the wait.
	run.mu.Lock()
	run.p.Started = time.Now()
	run.lastLog, run.lastHook = run.p.Started, run.p.Started
	run.mu.Unlock()
	if end-from < p.bulkOffsets {
		return pb, p.apply(ctx, pb, false, k, from, end, fresh, run)
	}
	err = pb.Close()
	p.m.closed(pt, false)
	if err != nil {
		return nil, err
	}
	bulk, err := p.m.open(pt, true)
	if err != nil {
		return nil, err
	}
	err = p.apply(ctx, bulk, true, k, from, end, fresh, run)
	if err == nil {
		// The bulk load left its tables in L0, all overlapping: merge
		// them in one pass now, rather than have them slow every read
		// and stall writes once processing begins.
		err = bulk.CompactAll()
	}
	// Close flushes what the restore wrote, also when it stopped early: a
	// later restore goes on from there.
	err = errors.Join(err, bulk.Close())
	p.m.closed(pt, false)
	if err != nil {
		return nil, err
	}
	return p.m.open(pt, false)
}

// restore catches the open store st up from offset from to the changelog's
// end.
func (p *pebbleState) restore(ctx context.Context, st *state.Pebble, k storeKey, from int64, run *restoreRun) error {
	// The background restore that opened st has admitted it.
	end, err := p.begin(ctx, k, false, from, false, run)
	if err != nil || end == from {
		return err
	}
	return p.apply(ctx, st, false, k, from, end, false, run)
}

// begin finds the end of the restore of the store's changelog partition
// from offset from, and reports the restore's range. The end is the last
// stable offset: records past it belong to transactions still open, which
// read_committed does not show yet, or ever if they abort; a task's store
// is caught up again as the task is built. With admit, the materialiser
// runs its guards first (materialiser.admit); without, the store was
// admitted moments ago, and only the end is listed (and waited for, if
// an open transaction holds it below from).
func (p *pebbleState) begin(ctx context.Context, k storeKey, admit bool, from int64, fresh bool, run *restoreRun) (int64, error) {
	pt := storePart(p.top, k.store, k.partition)
	var end int64
	var err error
	if admit {
		end, err = p.m.admit(ctx, pt, from, !fresh, true)
	} else {
		end, err = p.m.end(ctx, pt, from, true)
	}
	if err != nil {
		return 0, err
	}
	run.mu.Lock()
	run.p.From, run.p.End, run.p.Position, run.p.Started = from, end, from, time.Now()
	// Restores with nothing to read are not worth a log line.
	run.logged = end > from
	run.lastLog, run.lastHook = run.p.Started, run.p.Started
	pr := run.p
	run.mu.Unlock()
	for _, h := range p.progress {
		h.OnRestoreProgress(pr)
	}
	if end > from {
		p.log.Info("restoring state store from its changelog", "store", k.store, "partition", k.partition, "topic", pt.topic,
			"from", from, "to", end, "offsets_to_go", end-from)
	}
	return end, nil
}

// apply reads the store's changelog partition, read_committed, from offset
// from until it passes end, and writes it to st through a state.Loader.
//
// It reads with raw fetch requests rather than a consumer: the position
// after each response (kgo.ProcessFetchPartition) tells exactly when the end
// is reached, also when the last offsets are transaction markers, aborted
// records or compacted away, where a consumer returns nothing to go by.
func (p *pebbleState) apply(ctx context.Context, st *state.Pebble, bulk bool, k storeKey, from, end int64, fresh bool, run *restoreRun) error {
	topic := p.top.ChangelogTopic(k.store)
	cl, err := p.m.client()
	if err != nil {
		return err
	}
	ld, err := st.Loader()
	if err != nil {
		return err
	}
	defer ld.Close()
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// One response is applied while the next is read.
	in := make(chan fetched, 1)
	go fetchLoop(rctx, cl, p.log, topic, k.partition, from, end, fresh, in, noHint)
	pos, records := from, int64(0)
	for f := range in {
		if f.err != nil {
			return fmt.Errorf("restoring %s[%d] at offset %d: %w", topic, k.partition, pos, f.err)
		}
		for _, r := range f.recs {
			if r.Value == nil {
				err = ld.Delete(r.Key)
			} else {
				err = ld.Put(r.Key, r.Value)
			}
			if err != nil {
				return err
			}
		}
		records += int64(len(f.recs))
		pos = f.next
		p.faults.reach(PhaseMidRestore)
		if pos >= end {
			p.update(run, pos, records)
			if bulk {
				p.faults.reach(PhaseMidBulkFlush)
			}
			// The checkpoint is the position, which may pass end when a
			// response reached further: those records are committed too.
			return ld.Flush(pos, true)
		}
		if ld.Len() >= flushBytes {
			if err := ld.Flush(pos, false); err != nil {
				return err
			}
			if bulk {
				p.faults.reach(PhaseMidBulkFlush) // the batch commits in the background
			}
		}
		p.update(run, pos, records)
	}
	// The fetch loop stopped without an error: the context ended. What was
	// read is kept; a later restore goes on from its checkpoint.
	if err := ld.Flush(pos, false); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return fmt.Errorf("restoring %s[%d]: reads stopped at offset %d of %d", topic, k.partition, pos, end)
}
