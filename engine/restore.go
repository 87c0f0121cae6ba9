package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

// RestoreProgress describes one store partition's restore from its
// changelog, as it runs.
type RestoreProgress struct {
	Store     string
	Partition int32
	// The restore reads the changelog partition from From (the store's
	// checkpoint) to End, its last stable offset when the restore began.
	// End is -1 until it is known.
	From, End int64
	// Position is the next changelog offset to read.
	Position int64
	// Records counts the records applied so far.
	Records int64
	// Started is when the restore began.
	Started time.Time
	// Done marks the last report of a restore. Err is nil if it finished,
	// and says why not if it failed or was stopped (partition revoked,
	// replica stopping).
	Done bool
	Err  error
}

// Remaining returns the changelog offsets left to read. It bounds the
// records left from above: compaction and transaction markers leave gaps
// in the offsets.
func (p RestoreProgress) Remaining() int64 {
	if p.End < 0 {
		return 0
	}
	return max(0, p.End-p.Position)
}

// Total returns the offsets the restore reads in all.
func (p RestoreProgress) Total() int64 {
	if p.End < 0 {
		return 0
	}
	return max(0, p.End-p.From)
}

// Rate returns the changelog offsets read per second so far.
func (p RestoreProgress) Rate(now time.Time) float64 {
	el := now.Sub(p.Started).Seconds()
	if el <= 0 || p.End < 0 {
		return 0
	}
	return float64(p.Position-p.From) / el
}

// ETA estimates the time left at the rate so far, and false while there
// is no rate to go by.
func (p RestoreProgress) ETA(now time.Time) (time.Duration, bool) {
	r := p.Rate(now)
	if r <= 0 {
		return 0, false
	}
	return time.Duration(float64(p.Remaining()) / r * float64(time.Second)), true
}

// String is one line for people: "store count partition 3: 120000 of
// 500000 (24%), 81000/s, about 5s left".
func (p RestoreProgress) String() string {
	now := time.Now()
	if p.End < 0 {
		return fmt.Sprintf("store %s partition %d: starting", p.Store, p.Partition)
	}
	done, total := p.Position-p.From, p.Total()
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	s := fmt.Sprintf("store %s partition %d: %d of %d changelog offsets (%.0f%%), %.0f/s", p.Store, p.Partition, done, total, pct, p.Rate(now))
	if eta, ok := p.ETA(now); ok {
		s += fmt.Sprintf(", about %v left", eta.Round(time.Second))
	}
	return s
}

// RestoreHook observes state restores as they run: one report when a
// restore knows its range, one about every second while it runs, and a
// last one (Done) when it ends. Package metrics turns them into a gauge of
// the offsets left per store partition.
type RestoreHook interface {
	OnRestoreProgress(RestoreProgress)
}

// RestoreDisplay is a RestoreHook that shows progress to a person itself,
// as a terminal progress bar does. With one among the hooks, the engine
// still logs each restore's start and end, but not its periodic progress
// lines.
type RestoreDisplay interface {
	RestoreHook
	DisplaysRestoreProgress()
}

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
	// fetchBytes bounds one fetch of a changelog partition, as kgo's
	// consumer does by default. Decompressed, a response can be ten times
	// larger, and its records as many again, all garbage soon after: with
	// 8 MB, a 10M-key restore held 480 MB of live heap (bench/RESULTS.md,
	// "State"). Three are held at most per restore: one being applied,
	// one queued, one being read.
	fetchBytes = 1 << 20
	// stallTimeout fails a restore whose reads make no progress for this
	// long (the broker answers, but the position does not move).
	stallTimeout = 2 * time.Minute
	// bulkOffsets: a store this far behind its changelog is restored in
	// bulk mode (see restoreFrom). Below it, reopening costs more than the
	// log it saves.
	bulkOffsets = 100_000
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
	top      *topology.Topology
	dir      string
	brokers  []string
	extra    []kgo.Opt
	log      *slog.Logger
	hooks    []StateHook
	progress []RestoreHook
	// display is set when a hook draws progress itself: no periodic lines.
	display bool
	opts    state.PebbleOptions
	// bySource lists, per source topic, the stores its tasks open.
	bySource map[string][]string
	// holds keep partitions paused until their restores are done.
	holds *holds

	ctx    context.Context // canceled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	clMu sync.Mutex
	cl   *kgo.Client // for restores, made on first use
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

func newPebbleState(t *topology.Topology, o Options, hs *hooks, held *holds) *pebbleState {
	ctx, cancel := context.WithCancel(context.Background())
	p := &pebbleState{
		top: t, dir: o.StateDir, brokers: o.Brokers, extra: o.ClientOpts, log: o.Logger, hooks: hs.state,
		bySource: storesBySource(t), holds: held,
		ctx: ctx, cancel: cancel,
		tokens: map[storeKey]chan struct{}{}, restored: map[storeKey]*heldStore{},
		parts: map[partitionKey]*partRestore{}, active: map[*restoreRun]struct{}{},
		slots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0))),
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

func (p *pebbleState) client() (*kgo.Client, error) {
	p.clMu.Lock()
	defer p.clMu.Unlock()
	if p.cl != nil {
		return p.cl, nil
	}
	cl, err := seedClient(p.brokers, p.extra)
	if err != nil {
		return nil, err
	}
	p.cl = cl
	return cl, nil
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
}

func (h *heldStore) Close() error {
	err := h.Pebble.Close()
	h.once.Do(h.release)
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
	p.clMu.Lock()
	if p.cl != nil {
		p.cl.Close()
		p.cl = nil
	}
	p.clMu.Unlock()
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
			return st, nil
		}
		select {
		case tok <- struct{}{}:
			st, err := p.openHeld(p.ctx, k, run)
			if err != nil {
				return nil, err // not a typed nil in the interface
			}
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
// A store that fails to open is wiped and rebuilt from the changelog; so is
// one whose checkpoint is past the changelog's end (the topic was
// recreated). On error it gives the token back. It reports the end of run.
func (p *pebbleState) openHeld(ctx context.Context, k storeKey, run *restoreRun) (st *heldStore, err error) {
	defer func() { p.finish(run, err) }()
	tok := p.token(k)
	release := func() { <-tok }
	dir := state.Dir(p.dir, p.top.Group, k.store, k.partition)
	for attempt := 0; ; attempt++ {
		pb, err := state.OpenPebbleWith(dir, p.opts)
		if err != nil {
			if attempt > 0 {
				release()
				return nil, err
			}
			p.log.Warn("state store unreadable; rebuilding it from the changelog", "store", k.store, "partition", k.partition, "err", err)
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				release()
				return nil, fmt.Errorf("removing %s: %w", dir, rmErr)
			}
			continue
		}
		from, ok, err := pb.Checkpoint()
		if err == nil {
			if !ok || from < 0 {
				from = 0
			}
			pb, err = p.restoreFrom(ctx, pb, dir, k, from, run)
		}
		if (errors.Is(err, errAhead) || errors.Is(err, errRecreated)) && attempt == 0 {
			why := "state store is ahead of its changelog (was the topic recreated?); rebuilding it"
			if errors.Is(err, errRecreated) {
				why = "state store comes from a changelog topic since deleted and made again (a reset?); rebuilding it"
			}
			p.log.Warn(why, "store", k.store, "partition", k.partition, "checkpoint", from, "err", err)
			if pb != nil {
				pb.Close()
			}
			if rmErr := os.RemoveAll(dir); rmErr != nil {
				release()
				return nil, fmt.Errorf("removing %s: %w", dir, rmErr)
			}
			continue
		}
		if err != nil {
			if pb != nil {
				pb.Close()
			}
			release()
			return nil, err
		}
		return &heldStore{Pebble: pb, release: release}, nil
	}
}

// errAhead: the store's checkpoint is past the changelog's end.
var errAhead = errors.New("state store checkpoint past the changelog end")

// errRecreated: the store was restored from another changelog topic of the
// same name, since deleted.
var errRecreated = errors.New("state store restored from a changelog topic since deleted")

// sameChangelog checks that the store in dir comes from the changelog
// topic that exists now (see sameTopic).
func sameChangelog(ctx context.Context, cl *kgo.Client, topic, dir string) error {
	ids, err := topicIDs(ctx, cl, topic)
	if err != nil {
		return fmt.Errorf("describing changelog topic %s: %w", topic, err)
	}
	had, same, err := sameTopic(dir, ids[topic])
	if err == nil && !same {
		err = fmt.Errorf("%w: %s had ID %s, now %s", errRecreated, topic, had, ids[topic])
	}
	return err
}

// restoreRun is the progress of one restore, shared with readiness checks.
type restoreRun struct {
	mu       sync.Mutex
	p        RestoreProgress
	lastHook time.Time
	lastLog  time.Time
	logged   bool
}

func (r *restoreRun) snapshot() RestoreProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// newRun registers a restore as under way; p.mu must be held.
func (p *pebbleState) newRun(store string, partition int32) *restoreRun {
	r := &restoreRun{p: RestoreProgress{Store: store, Partition: partition, End: -1, Started: time.Now()}}
	p.active[r] = struct{}{}
	return r
}

// finish reports the end of a restore and drops it from those under way.
// Only the first call for a run counts.
func (p *pebbleState) finish(r *restoreRun, err error) {
	p.mu.Lock()
	_, ok := p.active[r]
	delete(p.active, r)
	p.mu.Unlock()
	if !ok {
		return
	}
	r.mu.Lock()
	r.p.Done, r.p.Err = true, err
	pr := r.p
	r.mu.Unlock()
	for _, h := range p.progress {
		h.OnRestoreProgress(pr)
	}
	if err != nil || pr.End < 0 {
		return
	}
	took := time.Since(pr.Started)
	for _, h := range p.hooks {
		h.OnStateRestored(StateRestore{Store: pr.Store, Partition: pr.Partition, Records: int(pr.Records), Duration: took})
	}
	if r.logged {
		p.log.Info("state store restored", "store", pr.Store, "partition", pr.Partition, "from", pr.From, "to", pr.Position,
			"records", pr.Records, "took", took.Round(time.Millisecond), "records_per_s", int64(float64(pr.Records)/max(took.Seconds(), 1e-9)))
	}
}

// update records progress, and tells hooks and the log when it is time.
func (p *pebbleState) update(r *restoreRun, pos, records int64) {
	now := time.Now()
	r.mu.Lock()
	r.p.Position, r.p.Records = pos, records
	pr := r.p
	hook := now.Sub(r.lastHook) >= progressEvery
	if hook {
		r.lastHook = now
	}
	logLine := !p.display && r.logged && now.Sub(r.lastLog) >= logEvery
	if logLine {
		r.lastLog = now
	}
	r.mu.Unlock()
	if hook {
		for _, h := range p.progress {
			h.OnRestoreProgress(pr)
		}
	}
	if logLine {
		eta, _ := pr.ETA(now)
		p.log.Info("restoring state store", "store", pr.Store, "partition", pr.Partition, "records", pr.Records,
			"offsets_left", pr.Remaining(), "offsets_per_s", int64(pr.Rate(now)), "eta", eta.Round(time.Second))
	}
}

// fetched is one fetch response of a changelog partition, parsed.
type fetched struct {
	recs []*kgo.Record
	next int64 // the offset to read next
	err  error
}

// restoreFrom brings the open store pb in dir up to the changelog's end
// from offset from, and returns it open, or nil with an error. Far behind
// (bulkOffsets or more to read), it restores through the store reopened
// for a bulk load (state.OpenPebbleBulk: no write-ahead log, larger
// memtables), then reopens it as usual.
func (p *pebbleState) restoreFrom(ctx context.Context, pb *state.Pebble, dir string, k storeKey, from int64, run *restoreRun) (*state.Pebble, error) {
	end, err := p.begin(ctx, k, dir, from, run)
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
	if end-from < bulkOffsets {
		return pb, p.apply(ctx, pb, k, from, end, run)
	}
	if err := pb.Close(); err != nil {
		return nil, err
	}
	bulk, err := state.OpenPebbleBulk(dir, p.opts)
	if err != nil {
		return nil, err
	}
	err = p.apply(ctx, bulk, k, from, end, run)
	if err == nil {
		// The bulk load left its tables in L0, all overlapping: merge
		// them in one pass now, rather than have them slow every read
		// and stall writes once processing begins.
		err = bulk.CompactAll()
	}
	// Close flushes what the restore wrote, also when it stopped early: a
	// later restore goes on from there.
	err = errors.Join(err, bulk.Close())
	if err != nil {
		return nil, err
	}
	return state.OpenPebbleWith(dir, p.opts)
}

// restore catches the open store st up from offset from to the changelog's
// end.
func (p *pebbleState) restore(ctx context.Context, st *state.Pebble, k storeKey, from int64, run *restoreRun) error {
	// The background restore that opened st has checked its topic ID.
	end, err := p.begin(ctx, k, "", from, run)
	if err != nil || end == from {
		return err
	}
	return p.apply(ctx, st, k, from, end, run)
}

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

// begin lists the end of the store's changelog partition, its last stable
// offset, and reports the restore's range. Records past the last stable
// offset belong to transactions still open, which read_committed does not
// show yet, or ever if they abort; a task's store is caught up again as
// the task is built. With the store's dir, it first checks that the store
// comes from the changelog topic that exists now (errRecreated); "" skips
// that.
func (p *pebbleState) begin(ctx context.Context, k storeKey, dir string, from int64, run *restoreRun) (int64, error) {
	topic := p.top.ChangelogTopic(k.store)
	cl, err := p.client()
	if err != nil {
		return 0, err
	}
	ends, err := lastStable(ctx, cl, map[string][]int32{topic: {k.partition}})
	if err != nil {
		return 0, err
	}
	// After lastStable, which waits for a topic made a moment ago to be
	// known.
	if dir != "" {
		if err := sameChangelog(ctx, cl, topic, dir); err != nil {
			return 0, err
		}
	}
	end, _ := ends.Lookup(topic, k.partition)
	if from > end.Offset {
		return 0, fmt.Errorf("%w: %s[%d] checkpoint %d, end %d", errAhead, topic, k.partition, from, end.Offset)
	}
	run.mu.Lock()
	run.p.From, run.p.End, run.p.Position, run.p.Started = from, end.Offset, from, time.Now()
	// Restores with nothing to read are not worth a log line.
	run.logged = end.Offset > from
	run.lastLog, run.lastHook = run.p.Started, run.p.Started
	pr := run.p
	run.mu.Unlock()
	for _, h := range p.progress {
		h.OnRestoreProgress(pr)
	}
	if end.Offset > from {
		p.log.Info("restoring state store from its changelog", "store", k.store, "partition", k.partition, "topic", topic,
			"from", from, "to", end.Offset, "offsets_to_go", end.Offset-from)
	}
	return end.Offset, nil
}

// apply reads the store's changelog partition, read_committed, from offset
// from until it passes end, and writes it to st through a state.Loader.
//
// It reads with raw fetch requests rather than a consumer: the position
// after each response (kgo.ProcessFetchPartition) tells exactly when the end
// is reached, also when the last offsets are transaction markers, aborted
// records or compacted away, where a consumer returns nothing to go by.
func (p *pebbleState) apply(ctx context.Context, st *state.Pebble, k storeKey, from, end int64, run *restoreRun) error {
	topic := p.top.ChangelogTopic(k.store)
	cl, err := p.client()
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
	go p.fetchLoop(rctx, cl, kadm.NewClient(cl), topic, k.partition, from, end, in)
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
		if pos >= end {
			p.update(run, pos, records)
			// The checkpoint is the position, which may pass end when a
			// response reached further: those records are committed too.
			return ld.Flush(pos, true)
		}
		if ld.Len() >= flushBytes {
			if err := ld.Flush(pos, false); err != nil {
				return err
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

// fetchLoop reads topic[partition] from offset from until it passes end,
// sending each response's records and the next position on out. It closes
// out when done, on error (sent first) and when ctx ends.
func (p *pebbleState) fetchLoop(ctx context.Context, cl *kgo.Client, adm *kadm.Client, topic string, partition int32, from, end int64, out chan<- fetched) {
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
		leader  int32 = -1
		topicID [16]byte
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
			p.log.Debug("restore fetch retry", "topic", topic, "partition", partition, "offset", pos, "err", why)
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
			if errors.Is(err, kerr.OffsetOutOfRange) {
				send(fetched{err: fmt.Errorf("offset %d is out of the changelog's range (log start %d): records the store needs were deleted; remove the store's directory to rebuild it", pos, rpart.LogStartOffset)})
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
