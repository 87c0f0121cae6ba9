package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

// The partition materialiser (DESIGN.md, "State").
//
// A changelogged store and a table are the same thing seen from the disk: a
// topic partition materialised into a Pebble store under <state-dir>/<group>,
// from the store's checkpoint up to the topic's last stable offset, with raw
// read_committed fetches (fetchLoop). A table is a read-only store whose
// changelog is its own topic. The materialiser owns what both need:
//
//   - the process lock on <state-dir>/<group> (lockGroupDir): two processes
//     of one group on one state directory would share, and delete, each
//     other's live stores;
//   - opening a store, where only classified corruption wipes it (a lock
//     held, a permission error, a newer format never do);
//   - the guards run before a store is trusted (admit): its topic ID, its
//     age (a store out of sync for longer than the topic's
//     delete.retention.ms may have missed tombstones compacted away since),
//     and its checkpoint against the topic's high watermark and last stable
//     offset (truncation wipes; an open transaction below the checkpoint is
//     waited for);
//   - the record of when a store was last in sync (markSynced);
//   - removing the directories of stores this replica has not used for
//     CleanupDelay.
//
// The restorer (restore.go) and the table syncer (tables.go) are its two
// users: they decide when to materialise, it decides whether a directory
// can be trusted and how a partition is read.
type materialiser struct {
	top     *topology.Topology
	root    string // <state-dir>
	dir     string // <state-dir>/<group>
	brokers []string
	extra   []kgo.Opt
	log     *slog.Logger
	opts    state.PebbleOptions
	faults  *Options
	// lsoWait bounds the wait for an open transaction below a store's
	// checkpoint to end: a transaction ends within its timeout, and the
	// broker looks for timed-out ones every 10 s.
	lsoWait time.Duration
	cleanup time.Duration

	lockMu sync.Mutex
	lock   *os.File

	clMu sync.Mutex
	cl   *kgo.Client // made on first use, for restores, table reads, guards

	retMu     sync.Mutex
	retention map[string]time.Duration // delete.retention.ms by topic

	useMu sync.Mutex
	inUse map[string]int       // open store directories, by path
	freed map[string]time.Time // when a directory was last let go of
	owned map[string]part      // stores a task owns: in sync while it does

	stop chan struct{}
	done chan struct{}
}

// Files the materialiser keeps beside Pebble's in a store's directory.
const (
	// syncedFile holds the Unix time in milliseconds at which the store
	// was last known to hold its topic partition up to the end: a restore
	// or catch-up finished, its owner closed it, and every minute while a
	// task owns it (tend).
	syncedFile = "STREAMER-SYNCED"
	// lockFile, in <state-dir>/<group>, is flocked by the process using it.
	lockFile = "STREAMER-LOCK"
)

func newMaterialiser(t *topology.Topology, o *Options) *materialiser {
	return &materialiser{
		top: t, root: o.StateDir, dir: filepath.Join(o.StateDir, t.Group), brokers: o.Brokers, extra: o.ClientOpts,
		log: o.Logger, faults: o, opts: state.PebbleOptions{NoSyncCommit: !o.StateSync}, lsoWait: o.TransactionTimeout + 30*time.Second, cleanup: o.StateCleanupDelay,
		retention: map[string]time.Duration{}, inUse: map[string]int{}, freed: map[string]time.Time{}, owned: map[string]part{},
	}
}

// start locks the group's state directory and starts the cleanup of
// directories left unused. It fails if another process holds the lock.
func (m *materialiser) start() error {
	m.lockMu.Lock()
	defer m.lockMu.Unlock()
	if m.lock != nil {
		return nil
	}
	f, err := lockGroupDir(m.dir)
	if err != nil {
		return err
	}
	m.lock = f
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	go m.tend()
	return nil
}

// ErrStateDirInUse: another process of the group holds the lock of its
// state directory, <StateDir>/<group>: a second replica of the group on
// this machine with the same StateDir (Run, LockStateDir).
var ErrStateDirInUse = errors.New("engine: state directory in use")

// errLocked is ErrStateDirInUse, as flock returns it.
var errLocked = ErrStateDirInUse

// lockGroupDir takes an exclusive, non-blocking lock of dir/STREAMER-LOCK,
// held until the returned file is closed (or the process ends), and writes
// the process id into it, which a refusal names.
func lockGroupDir(dir string) (*os.File, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("engine: state directory: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("engine: state directory: %w", err)
	}
	if err := flock(f); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, errLocked) {
			who := "another process"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
				who = fmt.Sprintf("another process (pid %d)", pid)
			}
			return nil, fmt.Errorf("%w: %s is used by %s of group %s: each replica on a machine needs its own state directory (--state-dir, Options.StateDir)", errLocked, dir, who, filepath.Base(dir))
		}
		return nil, fmt.Errorf("engine: locking state directory %s: %w", dir, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return f, nil
}

// close stops the cleanup, lets go of the lock and closes the client.
// Every store must be closed first.
func (m *materialiser) close() {
	if m == nil {
		return
	}
	m.lockMu.Lock()
	if m.stop != nil {
		close(m.stop)
		<-m.done
		m.stop = nil
	}
	if m.lock != nil {
		m.lock.Close() // closing the file drops the flock
		m.lock = nil
	}
	m.lockMu.Unlock()
	m.clMu.Lock()
	if m.cl != nil {
		m.cl.Close()
		m.cl = nil
	}
	m.clMu.Unlock()
}

func (m *materialiser) client() (*kgo.Client, error) {
	m.clMu.Lock()
	defer m.clMu.Unlock()
	if m.cl != nil {
		return m.cl, nil
	}
	cl, err := seedClient(m.brokers, m.extra)
	if err != nil {
		return nil, err
	}
	m.cl = cl
	return cl, nil
}

// part names one materialised partition: a store's (name = the store) or a
// table's (name = tableStoreName), read from topic.
type part struct {
	what      string // "store" or "table", for logs
	name      string // the directory name under <state-dir>/<group>
	topic     string
	partition int32
}

func storePart(t *topology.Topology, store string, p int32) part {
	return part{"store", store, t.ChangelogTopic(store), p}
}

func tablePartOf(d *topology.Dataset, p int32) part {
	return part{"table", tableStoreName(d), d.Topic, p}
}

func (m *materialiser) dirOf(p part) string {
	return state.Dir(m.root, m.top.Group, p.name, p.partition)
}

// open opens the store of p. A store whose files are corrupt is wiped and
// made anew; any other error (a lock held, permissions, a format newer than
// this build reads) is returned and leaves the directory as it is.
func (m *materialiser) open(p part, bulk bool) (*state.Pebble, error) {
	dir := m.dirOf(p)
	// Claimed before it opens: the cleanup leaves it alone.
	m.useMu.Lock()
	m.inUse[dir]++
	m.useMu.Unlock()
	openDB := state.OpenPebbleWith
	if bulk {
		openDB = state.OpenPebbleBulk
	}
	pb, err := openDB(dir, m.opts)
	if err != nil && state.IsCorrupt(err) {
		m.log.Warn("state store corrupt; rebuilding it from its topic", "what", p.what, "name", p.name, "partition", p.partition, "dir", dir, "err", err)
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			m.closed(p, false)
			return nil, fmt.Errorf("engine: removing %s: %w", dir, rmErr)
		}
		pb, err = openDB(dir, m.opts)
	}
	if err != nil {
		m.closed(p, false)
		return nil, fmt.Errorf("engine: opening %s %q partition %d in %s: %w", p.what, p.name, p.partition, dir, err)
	}
	return pb, nil
}

// closed tells the materialiser that a store of p, opened by open, is
// closed; synced marks it in sync now.
func (m *materialiser) closed(p part, synced bool) {
	dir := m.dirOf(p)
	if synced {
		m.markSynced(p)
	}
	m.useMu.Lock()
	if m.inUse[dir]--; m.inUse[dir] <= 0 {
		delete(m.inUse, dir)
		m.freed[dir] = time.Now()
	}
	m.useMu.Unlock()
}

// wipe closes pb, removes p's directory and opens it empty.
func (m *materialiser) wipe(p part, pb *state.Pebble, why string, attrs ...any) (*state.Pebble, error) {
	dir := m.dirOf(p)
	m.log.Warn(why+"; rebuilding it from its topic", append([]any{"what", p.what, "name", p.name, "partition", p.partition, "dir", dir}, attrs...)...)
	if pb != nil {
		pb.Close()
		m.closed(p, false)
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, fmt.Errorf("engine: removing %s: %w", dir, err)
	}
	return m.open(p, false)
}

// markSynced records that the store of p is in sync now.
func (m *materialiser) markSynced(p part) {
	path := filepath.Join(m.dirOf(p), syncedFile)
	if err := os.WriteFile(path, strconv.AppendInt(nil, time.Now().UnixMilli(), 10), 0o644); err != nil {
		m.log.Warn("recording a state store's sync time", "path", path, "err", err)
	}
}

// lastSynced returns when the store in dir was last known in sync: its
// record, or for a store without one (made by an older version, or that
// never finished a first restore) the newest modification of its files.
func lastSynced(dir string) (time.Time, bool) {
	if b, err := os.ReadFile(filepath.Join(dir, syncedFile)); err == nil {
		if ms, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return time.UnixMilli(ms), true
		}
	}
	var newest time.Time
	entries, err := os.ReadDir(dir)
	if err != nil {
		return time.Time{}, false
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.ModTime().After(newest) {
			newest = fi.ModTime()
		}
	}
	return newest, !newest.IsZero()
}

// Why admit wipes a store (errors.Is).
var (
	// errAhead: the store's checkpoint is past the topic's high watermark:
	// the topic was truncated, or deleted and made again.
	errAhead = errors.New("state store checkpoint past the topic's high watermark")
	// errRecreated: the store was read from another topic of the same
	// name, since deleted.
	errRecreated = errors.New("state store read from a topic since deleted")
	// errStale: the store was out of sync for longer than the topic keeps
	// tombstones.
	errStale = errors.New("state store out of sync for longer than the topic's delete.retention.ms")
)

// admit checks that the store pb of p, at checkpoint from (has: the store
// ever committed), can be trusted and read on from there, and returns the
// offset to read up to: the topic's last stable offset, once it has
// reached the checkpoint. It returns a wipe reason (errAhead, errRecreated,
// errStale) when the store must be rebuilt, and other errors when it cannot
// tell. It runs the guards in order: topic ID, age, high watermark, and
// waits (bounded, logged) for an open transaction below the checkpoint.
func (m *materialiser) admit(ctx context.Context, p part, from int64, has, wait bool) (int64, error) {
	cl, err := m.client()
	if err != nil {
		return 0, err
	}
	// The topic ID after lastStable, which waits for a topic made a
	// moment ago to be known.
	ends, err := lastStable(ctx, cl, map[string][]int32{p.topic: {p.partition}})
	if err != nil {
		return 0, err
	}
	ids, err := topicIDs(ctx, cl, p.topic)
	if err != nil {
		return 0, fmt.Errorf("describing topic %s: %w", p.topic, err)
	}
	dir := m.dirOf(p)
	had, same, err := sameTopic(dir, ids[p.topic])
	if err != nil {
		return 0, err
	}
	if !same {
		return 0, fmt.Errorf("%w: %s had ID %s, now %s", errRecreated, p.topic, had, ids[p.topic])
	}
	if has {
		if err := m.checkAge(ctx, cl, p, dir); err != nil {
			return 0, err
		}
	}
	lso, _ := ends.Lookup(p.topic, p.partition)
	return m.past(ctx, cl, p, from, lso.Offset, wait)
}

// end returns the offset to read p up to from from: the topic's last
// stable offset, once it has reached from. A checkpoint past the high
// watermark is errAhead; one between the last stable offset and the high
// watermark is waited for (waitStable) with wait, and without returns
// from: nothing to read yet. (A table store reads only committed offsets,
// so its position is never above a last stable offset it has seen; only a
// changelog store, whose checkpoint is its own writes' offsets, needs the
// wait.)
func (m *materialiser) end(ctx context.Context, p part, from int64, wait bool) (int64, error) {
	cl, err := m.client()
	if err != nil {
		return 0, err
	}
	ends, err := lastStable(ctx, cl, map[string][]int32{p.topic: {p.partition}})
	if err != nil {
		return 0, err
	}
	lso, _ := ends.Lookup(p.topic, p.partition)
	return m.past(ctx, cl, p, from, lso.Offset, wait)
}

// past is end once the last stable offset lso is known.
func (m *materialiser) past(ctx context.Context, cl *kgo.Client, p part, from, lso int64, wait bool) (int64, error) {
	if from <= lso {
		return lso, nil
	}
	hwm, err := highWatermark(ctx, cl, p.topic, p.partition)
	if err != nil {
		return 0, err
	}
	if from > hwm {
		return 0, fmt.Errorf("%w: %s[%d] checkpoint %d, high watermark %d", errAhead, p.topic, p.partition, from, hwm)
	}
	if !wait {
		return from, nil
	}
	return m.waitStable(ctx, cl, p, from, lso)
}

// waitStable waits for the last stable offset of p to reach from: a
// transaction opened below the checkpoint and still open (a paused former
// owner's, a foreign producer's) hides committed records past it from
// read_committed, but it ends within its timeout.
func (m *materialiser) waitStable(ctx context.Context, cl *kgo.Client, p part, from, lso int64) (int64, error) {
	m.log.Warn("a transaction open below the store's checkpoint holds the topic's last stable offset back; waiting for it to end (within its transaction timeout)",
		"what", p.what, "name", p.name, "partition", p.partition, "topic", p.topic, "checkpoint", from, "last_stable", lso, "wait_at_most", m.lsoWait)
	deadline := time.Now().Add(m.lsoWait)
	for {
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
		ends, err := lastStable(ctx, cl, map[string][]int32{p.topic: {p.partition}})
		if err != nil {
			return 0, err
		}
		if e, _ := ends.Lookup(p.topic, p.partition); e.Offset >= from {
			m.log.Info("the open transaction ended; restoring", "what", p.what, "name", p.name, "partition", p.partition, "last_stable", e.Offset)
			return e.Offset, nil
		} else if time.Now().After(deadline) {
			return 0, fmt.Errorf("engine: %s[%d]: the last stable offset stayed at %d, below the store's checkpoint %d, for %v: a transaction is left open on the topic (see kafka-transactions.sh --find-hanging)", p.topic, p.partition, e.Offset, from, m.lsoWait)
		}
	}
}

// checkAge returns errStale if the store in dir was last in sync longer
// ago than its topic keeps tombstones (delete.retention.ms): deletions it
// has not read may be gone from the topic.
func (m *materialiser) checkAge(ctx context.Context, cl *kgo.Client, p part, dir string) error {
	at, ok := lastSynced(dir)
	if !ok {
		return nil
	}
	keep, err := m.tombstoneRetention(ctx, cl, p.topic)
	if err != nil {
		return err
	}
	if age := time.Since(at); age > keep {
		return fmt.Errorf("%w: last in sync %v ago, %s keeps tombstones %v", errStale, age.Round(time.Second), p.topic, keep)
	}
	return nil
}

// tombstoneRetention returns the topic's delete.retention.ms, once per
// topic per run.
func (m *materialiser) tombstoneRetention(ctx context.Context, cl *kgo.Client, topic string) (time.Duration, error) {
	m.retMu.Lock()
	d, ok := m.retention[topic]
	m.retMu.Unlock()
	if ok {
		return d, nil
	}
	rcs, err := kadm.NewClient(cl).DescribeTopicConfigs(ctx, topic)
	var rc kadm.ResourceConfig
	if err == nil {
		rc, err = rcs.On(topic, nil)
	}
	if err == nil {
		err = rc.Err
	}
	denied := errors.Is(err, kerr.TopicAuthorizationFailed) || errors.Is(err, kerr.ClusterAuthorizationFailed)
	if err != nil && !denied {
		return 0, fmt.Errorf("describing the configs of %s: %w", topic, err)
	}
	if denied {
		// Not allowed to describe it (DescribeConfigs ACL), say: Kafka's
		// default is the best guess, and blocking the replica is worse.
		m.log.Warn("cannot read the topic's delete.retention.ms; assuming Kafka's default of 24h for the state store age guard", "topic", topic, "err", err)
	}
	d = 24 * time.Hour // Kafka's default
	for _, c := range rc.Configs {
		if c.Key == "delete.retention.ms" && c.Value != nil {
			if ms, err := strconv.ParseInt(*c.Value, 10, 64); err == nil {
				d = time.Duration(ms) * time.Millisecond
			}
		}
	}
	m.retMu.Lock()
	m.retention[topic] = d
	m.retMu.Unlock()
	return d, nil
}

// wipeReason reports whether err from admit means the store must be
// rebuilt, and a line for the log.
func wipeReason(err error) (string, bool) {
	switch {
	case errors.Is(err, errAhead):
		return "state store is ahead of its topic's high watermark (was the topic truncated or recreated?)", true
	case errors.Is(err, errRecreated):
		return "state store comes from a topic since deleted and made again (a reset?)", true
	case errors.Is(err, errStale):
		return "state store was out of sync longer than its topic keeps tombstones (deleted keys could come back)", true
	}
	return "", false
}

// markOwnedEvery is how often the stores tasks own are marked in sync: a
// task is its changelog partition's only writer, so its store is in sync
// as long as it owns it, and a crash must not leave it looking older than
// it is (the age guard would rebuild it).
const markOwnedEvery = time.Minute

// tend marks the owned stores in sync every markOwnedEvery and, unless
// CleanupDelay is negative, removes unused stores every CleanupDelay/2.
func (m *materialiser) tend() {
	defer close(m.done)
	mark := time.NewTicker(markOwnedEvery)
	defer mark.Stop()
	var clean <-chan time.Time
	if m.cleanup > 0 {
		t := time.NewTicker(max(m.cleanup/2, time.Second))
		defer t.Stop()
		clean = t.C
	}
	for {
		select {
		case <-m.stop:
			return
		case <-mark.C:
			m.useMu.Lock()
			owned := slices.Collect(maps.Values(m.owned))
			m.useMu.Unlock()
			for _, p := range owned {
				m.markSynced(p)
			}
		case <-clean:
			m.clean(time.Now())
		}
	}
}

// own and disown tell the materialiser that a task took the store of p,
// or let go of it.
func (m *materialiser) own(p part) {
	m.useMu.Lock()
	m.owned[m.dirOf(p)] = p
	m.useMu.Unlock()
}

func (m *materialiser) disown(p part) {
	m.useMu.Lock()
	delete(m.owned, m.dirOf(p))
	m.useMu.Unlock()
}

// clean removes the store directories under <state-dir>/<group> that
// belong to a store or table of the topology, are not in use, and were
// last used (by this process, or in sync by any) more than CleanupDelay
// before now. Directories it does not recognise are left alone.
func (m *materialiser) clean(now time.Time) {
	known := map[string]bool{}
	for _, s := range m.top.Stores() {
		known[s] = true
	}
	for _, d := range m.top.Tables() {
		known[tableStoreName(d)] = true
	}
	for name := range known {
		entries, err := os.ReadDir(filepath.Join(m.dir, name))
		if err != nil {
			continue
		}
		for _, e := range entries {
			if _, err := strconv.ParseInt(e.Name(), 10, 32); err != nil || !e.IsDir() {
				continue
			}
			dir := filepath.Join(m.dir, name, e.Name())
			m.useMu.Lock()
			used := m.inUse[dir] > 0
			last, ok := m.freed[dir]
			if !ok {
				last, _ = lastSynced(dir)
			}
			old := !used && now.Sub(last) > m.cleanup
			if old {
				// Under useMu: an open of dir waits for the removal.
				if err := os.RemoveAll(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
					m.log.Warn("removing an unused state store", "dir", dir, "err", err)
				} else {
					m.log.Info("removed a state store unused for the cleanup delay", "dir", dir, "unused_for", now.Sub(last).Round(time.Second))
				}
				delete(m.freed, dir)
			}
			m.useMu.Unlock()
		}
	}
}
