package engine_test

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamerio/streamer/engine"
)

const countOnly = `
name: counts
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 1}}
pipes:
  count:
    from: in
    to: out
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
`

// restoreGate is a RestoreHook that holds the first restore with records
// to read at its first report, until released, and keeps every report.
type restoreGate struct {
	once    sync.Once
	held    chan engine.RestoreProgress
	release chan struct{}

	mu      sync.Mutex
	reports []engine.RestoreProgress
}

func newRestoreGate() *restoreGate {
	return &restoreGate{held: make(chan engine.RestoreProgress, 1), release: make(chan struct{})}
}

func (g *restoreGate) OnRestoreProgress(p engine.RestoreProgress) {
	g.mu.Lock()
	g.reports = append(g.reports, p)
	g.mu.Unlock()
	if p.End > p.From && !p.Done {
		g.once.Do(func() {
			g.held <- p
			<-g.release
		})
	}
}

func (g *restoreGate) last() (engine.RestoreProgress, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.reports) - 1; i >= 0; i-- {
		if g.reports[i].Done && g.reports[i].End > g.reports[i].From {
			return g.reports[i], true
		}
	}
	return engine.RestoreProgress{}, false
}

// replica runs one engine until stop is called (once or more).
type replica struct {
	e    *engine.Engine
	stop func() error
}

func startReplica(t *testing.T, brokers []string, src, id, dir string, hooks ...engine.Hook) *replica {
	t.Helper()
	log := slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := engine.New(compile(t, src), engine.Options{Brokers: brokers, ReplicaID: id, StateDir: dir, Logger: log, SessionTimeout: 6 * time.Second, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	var once sync.Once
	var err2 error
	return &replica{e: e, stop: func() error {
		once.Do(func() { cancel(); err2 = <-done })
		return err2
	}}
}

func waitUntil(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestReadyWaitsForRestore: a replica that starts without local state
// restores it from the changelog as soon as it is assigned the partition,
// before any new record arrives. Until the restore is done it is not ready,
// says which store and partition it is restoring and how far, and does not
// process the partition's new records; then it becomes ready and counts on
// from the restored state.
func TestReadyWaitsForRestore(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 1})

	const first, second = 2000, 1000
	if err := produce(brokers, 0, first); err != nil {
		t.Fatal(err)
	}
	a := startReplica(t, brokers, countOnly, "a", t.TempDir())
	waitUntil(t, "replica a to count", 30*time.Second, func() bool { return a.e.Stats().CommittedIn.Load() >= first })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}

	// No new input yet: the restore must start on assignment, not wait
	// for records to arrive.
	gate := newRestoreGate()
	b := startReplica(t, brokers, countOnly, "b", t.TempDir(), gate)
	var held engine.RestoreProgress
	select {
	case held = <-gate.held:
	case <-time.After(30 * time.Second):
		close(gate.release)
		t.Fatal("no restore started")
	}
	if held.Store != "count" || held.Partition != 0 || held.From != 0 || held.End < first {
		t.Errorf("restore report %+v: want store count, partition 0, from 0 to at least %d", held, first)
	}
	if err := produce(brokers, first, first+second); err != nil {
		close(gate.release)
		t.Fatal(err)
	}
	// Held mid-restore: not ready, the restore listed, nothing consumed.
	time.Sleep(500 * time.Millisecond)
	ready, restoring, in := b.e.Ready(), b.e.Restoring(), b.e.Stats().RecordsIn.Load()
	close(gate.release)
	if ready {
		t.Error("ready while restoring")
	}
	if len(restoring) != 1 || restoring[0].Store != "count" || restoring[0].End != held.End || restoring[0].Remaining() != held.End {
		t.Errorf("Restoring() = %+v, want the held restore of count[0] with %d offsets left", restoring, held.End)
	}
	if in != 0 {
		t.Errorf("consumed %d records of a partition still restoring", in)
	}

	waitUntil(t, "replica b to be ready", 30*time.Second, b.e.Ready)
	if r := b.e.Restoring(); len(r) != 0 {
		t.Errorf("ready, yet restoring %+v", r)
	}
	finishRestored(t, b, gate, brokers, first, second)
}

// TestRestoreSlowFetchesAndAbortedTail restores a changelog whose fetches
// each take longer than a poll and whose last records belong to an aborted
// transaction: the restore must read to the end, skip the aborted records
// and not stop early.
func TestRestoreSlowFetchesAndAbortedTail(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()

	const first, second = 1500, 500
	if err := produce(brokers, 0, first); err != nil {
		t.Fatal(err)
	}
	a := startReplica(t, brokers, countOnly, "a", t.TempDir())
	waitUntil(t, "replica a to count", 30*time.Second, func() bool { return a.e.Stats().CommittedIn.Load() >= first })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	// An aborted transaction at the changelog's end, with values that
	// would break the counts if they were applied.
	txn, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("tail"))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := txn.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	for k := 0; k < 50; k++ {
		r := &kgo.Record{Topic: "streamer-counts-count-changelog", Partition: 0, Key: []byte("k" + itoa(k)), Value: []byte("not a count")}
		if err := txn.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	txn.Close()
	if err := produce(brokers, first, first+second); err != nil {
		t.Fatal(err)
	}

	// Every fetch now takes 700 ms, longer than the old restore's poll.
	var slow atomic.Bool
	slow.Store(true)
	cluster.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if slow.Load() {
			cluster.SleepControl(func() { time.Sleep(700 * time.Millisecond) })
		}
		return nil, nil, false
	})
	gate := newRestoreGate()
	close(gate.release) // observe only
	b := startReplica(t, brokers, countOnly, "b", t.TempDir(), gate)
	waitUntil(t, "replica b to be ready", time.Minute, b.e.Ready)
	slow.Store(false)
	finishRestored(t, b, gate, brokers, first, second)
}

// TestReassignedWhileIdle: a partition leaves a replica and comes back
// while no records arrive. The replica must take its store back, restore
// it and become ready again, though nothing wakes its poll.
func TestReassignedWhileIdle(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 2})
	if err := produce(brokers, 0, 1000); err != nil {
		t.Fatal(err)
	}
	a := startReplica(t, brokers, countOnly, "a", t.TempDir())
	defer a.stop()
	waitUntil(t, "replica a to count", 30*time.Second, func() bool { return a.e.Stats().CommittedIn.Load() >= 1000 })
	// b takes a partition from a, then leaves: a gets it back, idle.
	b := startReplica(t, brokers, countOnly, "b", t.TempDir())
	waitUntil(t, "replica b to be ready", 30*time.Second, b.e.Ready)
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "replica a to be ready again", 30*time.Second, a.e.Ready)
	if err := produce(brokers, 1000, 2000); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "replica a to count the rest", 30*time.Second, func() bool { return a.e.Stats().CommittedIn.Load() >= 2000 })
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	want, _ := produced(2000)
	checkCounts(t, brokers, "out", want, nil)
}

// finishRestored lets replica b, which restored the state of first records,
// count second more; then checks its last restore report (done, at the
// changelog's end, first records applied) and the counts of all records.
func finishRestored(t *testing.T, b *replica, gate *restoreGate, brokers []string, first, second int) {
	t.Helper()
	waitUntil(t, "replica b to count", 30*time.Second, func() bool { return b.e.Stats().CommittedIn.Load() >= int64(second) })
	if err := b.stop(); err != nil {
		t.Fatal(err)
	}
	done, ok := gate.last()
	if !ok || done.Err != nil || done.Position < done.End || done.Records != int64(first) {
		t.Errorf("last restore report %+v (found %v): want done, at its end, %d records", done, ok, first)
	}
	want, _ := produced(first + second)
	checkCounts(t, brokers, "out", want, nil)
}
