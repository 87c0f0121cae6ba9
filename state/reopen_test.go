package state

import (
	"bytes"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// bulkLoad writes keys 0..n-1 in a scattered order through a bulk store's
// Loader, with a syncing Flush every n/flushes keys: each makes an L0
// table overlapping all the others, as a restore from far behind does.
func bulkLoad(t testing.TB, dir string, n, flushes int) {
	t.Helper()
	b, err := OpenPebbleBulk(dir, PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ld, err := b.Loader()
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		k := (i * 7919) % n // 7919 is prime: a permutation of 0..n-1
		if err := ld.Put(fmt.Appendf(nil, "k%07d", k), fmt.Appendf(nil, "v%d", k)); err != nil {
			t.Fatal(err)
		}
		if (i+1)%(n/flushes) == 0 {
			if err := ld.Flush(int64(i+1), true); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := ld.Flush(int64(n), true); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(ld.Close(), b.Close()); err != nil {
		t.Fatal(err)
	}
}

func l0(p *Pebble) int { return int(p.db.Metrics().Levels[0].Sublevels) }

// within fails the test if fn does not return in d: it detects a stall
// (a write waiting for compactions that cannot run), it times nothing.
func within(t *testing.T, d time.Duration, what string, fn func() error) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- fn() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	case <-time.After(d):
		// Let the stalled call finish before the store is closed.
		holdCompactions.Store(false)
		<-done
		t.Fatalf("%s: blocked for %v, until compactions were let run", what, d)
	}
}

// TestBulkLoadedStoreTakesWritesBeforeItsL0IsMerged: a store reopened
// after a bulk load (a restore from far behind) opens without merging its
// deep L0 first, takes writes at once even while no compaction has run
// (the replica is ready and processing while Pebble merges in the
// background), reads every key right, merges its L0 in the background,
// and closes during that merge with nothing lost.
func TestBulkLoadedStoreTakesWritesBeforeItsL0IsMerged(t *testing.T) {
	const n, flushes = 40000, 20
	dir := t.TempDir()
	bulkLoad(t, dir, n, flushes)

	holdCompactions.Store(true)
	defer holdCompactions.Store(false)
	p, err := OpenPebbleWith(dir, PebbleOptions{MemTableSize: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	if d := l0(p); d < flushes {
		t.Fatalf("L0 has %d sublevels after open, want the bulk load's %d: the open merged them", d, flushes)
	}
	// Far more than a memtable, in commits, while nothing is compacted: at
	// Pebble's default of 12 L0 sublevels, writes would stop until the
	// merge, which the hold keeps from running.
	within(t, 30*time.Second, "writes after open", func() error {
		for i := range 40 {
			for j := range 200 {
				if err := p.Put(fmt.Appendf(nil, "new%03d-%03d", i, j), bytes.Repeat([]byte{'x'}, 200)); err != nil {
					return err
				}
			}
			if err := p.Commit(int64(n + i)); err != nil {
				return err
			}
		}
		return nil
	})
	if d := l0(p); d <= flushes {
		t.Fatalf("L0 has %d sublevels after the writes: want the flushes of the writes above the bulk load's %d", d, flushes)
	}
	check := func(p *Pebble) {
		t.Helper()
		for k := range n {
			v, ok, err := p.Get(fmt.Appendf(nil, "k%07d", k))
			if err != nil || !ok || string(v) != fmt.Sprintf("v%d", k) {
				t.Fatalf("key %d: %q %v %v", k, v, ok, err)
			}
		}
		if at, ok, err := p.Checkpoint(); err != nil || !ok || at != n+39 {
			t.Fatalf("checkpoint %d %v %v, want %d", at, ok, err, n+39)
		}
	}
	check(p)

	// The merge runs in the background once allowed.
	holdCompactions.Store(false)
	deadline := time.Now().Add(2 * time.Minute)
	for l0(p) > 4 {
		if time.Now().After(deadline) {
			t.Fatalf("L0 still has %d sublevels", l0(p))
		}
		time.Sleep(20 * time.Millisecond)
	}
	check(p)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}

	// Opened with compactions allowed, on a disk slow enough to sync that
	// a scheduler granting during Open (Pebble's own offers one every
	// 100 ms) would start the merge, which Open would then wait for; then
	// closed while it merges: Close waits for the compaction under way
	// only, and the store reopens whole.
	dir2 := t.TempDir()
	bulkLoad(t, dir2, n, flushes)
	var slow atomic.Bool
	slow.Store(true)
	p2, err := OpenPebbleWith(dir2, PebbleOptions{FS: slowSyncFS{vfs.Default, &slow}})
	slow.Store(false)
	if err != nil {
		t.Fatal(err)
	}
	if d := l0(p2); d < flushes {
		t.Fatalf("L0 has %d sublevels after open, want the bulk load's %d: the open merged them", d, flushes)
	}
	for p2.db.Metrics().Compact.NumInProgress == 0 && l0(p2) >= flushes {
		time.Sleep(time.Millisecond)
	}
	within(t, time.Minute, "close during the merge", p2.Close)
	p3, err := OpenPebbleWith(dir2, PebbleOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer p3.Close()
	for k := range n {
		v, ok, err := p3.Get(fmt.Appendf(nil, "k%07d", k))
		if err != nil || !ok || string(v) != fmt.Sprintf("v%d", k) {
			t.Fatalf("after a close mid-merge, key %d: %q %v %v", k, v, ok, err)
		}
	}
}

// slowSyncFS makes the files created while slow is set take 300 ms to
// sync.
type slowSyncFS struct {
	vfs.FS
	slow *atomic.Bool
}

func (f slowSyncFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	file, err := f.FS.Create(name, c)
	if err != nil || !f.slow.Load() {
		return file, err
	}
	return slowFile{file}, nil
}

type slowFile struct{ vfs.File }

func (f slowFile) Sync() error {
	time.Sleep(300 * time.Millisecond)
	return f.File.Sync()
}
