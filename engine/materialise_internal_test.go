package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

func countTopology(t *testing.T) *topology.Topology {
	t.Helper()
	top, err := topology.Compile("t.yaml", []byte(`
name: counts
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 1}}
pipes:
  count:
    from: in
    to: out
    aggregate: {fields: {n: {op: count}}}
`), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	return top
}

// TestSecondProcessRefused: a second replica of the group on the same
// state directory is refused at start, with an error that says which
// directory and which flag, before it touches a store.
func TestSecondProcessRefused(t *testing.T) {
	top := countTopology(t)
	dir := t.TempDir()
	o := Options{Brokers: []string{"127.0.0.1:1"}, StateDir: dir, Logger: slog.New(slog.DiscardHandler)}
	first, err := New(top, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.local.start(); err != nil {
		t.Fatal(err)
	}
	defer first.local.close()
	second, err := New(top, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = second.Run(ctx)
	if !errors.Is(err, ErrStateDirInUse) || !strings.Contains(err.Error(), fmt.Sprintf("(pid %d)", os.Getpid())) || !strings.Contains(err.Error(), "--state-dir") || !strings.Contains(err.Error(), filepath.Join(dir, top.Group)) {
		t.Fatalf("second replica on the same state directory: %v; want a refusal naming --state-dir and %s", err, filepath.Join(dir, top.Group))
	}
	// Once the first lets go, the directory can be taken.
	first.local.close()
	m := newMaterialiser(top, &o)
	if err := m.start(); err != nil {
		t.Fatalf("after the first let go: %v", err)
	}
	m.close()
}

// TestLockedStoreNotWiped: a store another process (here, another handle)
// has open fails to open, and its directory is left as it is: a lock held
// is not corruption.
func TestLockedStoreNotWiped(t *testing.T) {
	top := countTopology(t)
	o := Options{Brokers: []string{"127.0.0.1:1"}, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	m := newMaterialiser(top, &o)
	defer m.close()
	pt := storePart(top, "count", 0)
	live, err := state.OpenPebble(m.dirOf(pt))
	if err != nil {
		t.Fatal(err)
	}
	if err := live.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := live.Commit(7); err != nil {
		t.Fatal(err)
	}
	if _, err := m.open(pt, false); err == nil {
		t.Fatal("opened a store another handle holds")
	}
	// The live store still has its row and checkpoint on disk.
	if v, ok, err := live.Get([]byte("k")); err != nil || !ok || string(v) != "v" {
		t.Fatalf("live store after the refused open: %q %v %v", v, ok, err)
	}
	live.Close()
	st, err := m.open(pt, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if cp, ok, _ := st.Checkpoint(); !ok || cp != 7 {
		t.Fatalf("after the refused open the store's checkpoint is %d (%v), want 7: it was wiped", cp, ok)
	}
}

// TestCorruptStoreWiped: a store whose files are corrupt is rebuilt.
func TestCorruptStoreWiped(t *testing.T) {
	top := countTopology(t)
	o := Options{Brokers: []string{"127.0.0.1:1"}, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	m := newMaterialiser(top, &o)
	defer m.close()
	pt := storePart(top, "count", 0)
	st, err := m.open(pt, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(3); err != nil {
		t.Fatal(err)
	}
	st.Close()
	m.closed(pt, false)
	manifests, _ := filepath.Glob(filepath.Join(m.dirOf(pt), "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST")
	}
	for _, f := range manifests {
		if err := os.WriteFile(f, []byte("this is not a manifest, not at all, no"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	st, err = m.open(pt, false)
	if err != nil {
		t.Fatalf("a corrupt store was not rebuilt: %v", err)
	}
	defer st.Close()
	if _, ok, _ := st.Checkpoint(); ok {
		t.Fatal("the corrupt store was not wiped")
	}
}

// TestCleanupUnusedStores: directories of the topology's stores unused for
// the cleanup delay go; one in use, one recently let go of, and one the
// materialiser does not recognise stay.
func TestCleanupUnusedStores(t *testing.T) {
	top := countTopology(t)
	o := Options{Brokers: []string{"127.0.0.1:1"}, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), StateCleanupDelay: time.Hour}
	m := newMaterialiser(top, &o)
	defer m.close()
	mk := func(p int32) part {
		pt := storePart(top, "count", p)
		st, err := m.open(pt, false)
		if err != nil {
			t.Fatal(err)
		}
		st.Close()
		m.closed(pt, true)
		return pt
	}
	old, recent, inUse := mk(0), mk(1), storePart(top, "count", 2)
	st, err := m.open(inUse, false)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	stranger := filepath.Join(m.dir, "not-a-store", "0")
	if err := os.MkdirAll(stranger, 0o755); err != nil {
		t.Fatal(err)
	}
	// old was let go of two hours ago (as recorded), recent just now.
	m.useMu.Lock()
	m.freed[m.dirOf(old)] = time.Now().Add(-2 * time.Hour)
	m.useMu.Unlock()
	m.clean(time.Now())
	exists := func(d string) bool { _, err := os.Stat(d); return err == nil }
	if exists(m.dirOf(old)) {
		t.Error("a store unused for longer than the delay was kept")
	}
	for _, d := range []string{m.dirOf(recent), m.dirOf(inUse), stranger} {
		if !exists(d) {
			t.Errorf("%s was removed", d)
		}
	}
}

// phaseCounter counts the phases reached.
type phaseCounter struct {
	mu sync.Mutex
	n  map[Phase]int
}

func (c *phaseCounter) Reached(p Phase) {
	c.mu.Lock()
	c.n[p]++
	c.mu.Unlock()
}

func (c *phaseCounter) count(p Phase) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[p]
}

// TestRestoreReachesFaultPhases: a restore reports PhaseMidRestore as it
// applies each fetch, and a bulk restore PhaseMidBulkFlush as it flushes;
// a small one never reaches the bulk phase. And a fresh store of a
// changelog whose head was deleted restores from the log start (the fetch
// loop the table reads share), where the restore used to fail.
func TestRestoreReachesFaultPhases(t *testing.T) {
	top := countTopology(t)
	const changelog = "streamer-counts-count-changelog"
	for _, tt := range []struct {
		name     string
		records  int
		bulk     bool
		deleteTo int64
	}{
		{"small", 50_000, false, 0},
		{"bulk", bulkOffsets + 20_000, true, 0},
		{"head deleted", 50_000, false, 5_000},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", changelog))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			brokers := cluster.ListenAddrs()
			ctx := context.Background()
			cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(changelog), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				t.Fatal(err)
			}
			var recs []*kgo.Record
			for i := range tt.records {
				recs = append(recs, &kgo.Record{Key: fmt.Appendf(nil, "k%d", i), Value: fmt.Appendf(nil, "value %d, padded to make several fetches", i)})
				if len(recs) == 10_000 || i == tt.records-1 {
					if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
						t.Fatal(err)
					}
					recs = recs[:0]
				}
			}
			if tt.deleteTo > 0 {
				resp, err := kadm.NewClient(cl).DeleteRecords(ctx, kadm.Offsets{changelog: {0: {At: tt.deleteTo}}})
				if err == nil {
					err = resp.Error()
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			cl.Close()
			faults := &phaseCounter{n: map[Phase]int{}}
			o := Options{Brokers: brokers, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler), Faults: faults}
			if err := o.setDefaults(top.CommitInterval); err != nil {
				t.Fatal(err)
			}
			m := newMaterialiser(top, &o)
			defer m.close()
			p := newPebbleState(top, &o, sortHooks(nil), newHolds(), m)
			defer p.close()
			p.mu.Lock()
			run := p.newRun("count", 0)
			p.mu.Unlock()
			st, err := p.openRestored(ctx, storeKey{"count", 0}, run)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			keys := 0
			if err := st.Prefix(nil, func(_, _ []byte) bool { keys++; return true }); err != nil {
				t.Fatal(err)
			}
			if want := tt.records - int(tt.deleteTo); keys != want {
				t.Errorf("restored %d keys, want %d", keys, want)
			}
			// One per fetch applied: kfake answers a small changelog in
			// one response.
			if n := faults.count(PhaseMidRestore); n < 1 || (tt.bulk && n < 2) {
				t.Errorf("PhaseMidRestore reached %d times, want one per fetch applied", n)
			}
			if n := faults.count(PhaseMidBulkFlush); (n > 0) != tt.bulk {
				t.Errorf("PhaseMidBulkFlush reached %d times; bulk restore: %v", n, tt.bulk)
			}
		})
	}
}
