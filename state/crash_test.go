package state

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestNoSyncCrashKeepsAConsistentPrefix: with NoSyncCommit, a machine crash
// may lose the last commits, but the store must come back as a prefix of
// its commits with that prefix's checkpoint: every key of a commit at or
// below the checkpoint, none above. The engine then restores on from the
// changelog at the checkpoint. Each crash keeps a random part of what was
// not synced (Pebble's crashable in-memory filesystem).
func TestNoSyncCrashKeepsAConsistentPrefix(t *testing.T) {
	const commits, flushedAt = 200, 80
	for seed := range uint64(20) {
		fs := vfs.NewCrashableMem()
		p, err := OpenPebbleWith("db", PebbleOptions{NoSyncCommit: true, FS: fs, CacheSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		for i := 1; i <= commits; i++ {
			// Each commit writes its own key and rewrites a shared one.
			// 2 KB values fill the log's 32 KB blocks, which Pebble writes
			// out as they fill: smaller commits stay in its buffer until a
			// sync, and are all lost together.
			if err := p.Put(fmt.Appendf(nil, "k%04d", i), value(i)); err != nil {
				t.Fatal(err)
			}
			if err := p.Put([]byte("last"), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
			if err := p.Commit(int64(i)); err != nil {
				t.Fatal(err)
			}
			if i == flushedAt {
				if err := p.db.Flush(); err != nil { // synced tables
					t.Fatal(err)
				}
			}
		}
		crashed := fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: []int{50, 90, 100}[seed%3], RNG: rand.New(rand.NewPCG(seed, 7))})
		if err := p.Close(); err != nil {
			t.Fatal(err)
		}
		q, err := OpenPebbleWith("db", PebbleOptions{FS: crashed, CacheSize: 1 << 20})
		if err != nil {
			t.Fatalf("seed %d: reopening after the crash: %v", seed, err)
		}
		at, ok, err := q.Checkpoint()
		if err != nil || !ok || at < flushedAt || at > commits {
			t.Fatalf("seed %d: checkpoint %d (%v, %v), want one from %d to %d", seed, at, ok, err, flushedAt, commits)
		}
		checkPrefix(t, q, seed, at, commits)
		if v, _, _ := q.Get([]byte("last")); string(v) != fmt.Sprint(at) {
			t.Fatalf("seed %d: checkpoint %d but last = %q", seed, at, v)
		}
		t.Logf("seed %d: came back at commit %d of %d", seed, at, commits)
		q.Close()
	}
}

// checkPrefix checks that q holds keys k0001.. of the written n exactly up
// to its checkpoint at, with their values.
func checkPrefix(t *testing.T, q *Pebble, seed uint64, at int64, n int) {
	t.Helper()
	for i := 1; i <= n; i++ {
		v, found, err := q.Get(fmt.Appendf(nil, "k%04d", i))
		if err != nil {
			t.Fatal(err)
		}
		if want := int64(i) <= at; found != want || (found && string(v) != string(value(i))) {
			t.Fatalf("seed %d: checkpoint %d but key %d found=%v (%d bytes)", seed, at, i, found, len(v))
		}
	}
}

func value(i int) []byte {
	v := fmt.Appendf(nil, "v%d-", i)
	for len(v) < 2048 {
		v = append(v, byte('a'+i%26))
	}
	return v
}

// TestBulkLoadCrashKeepsAConsistentPrefix: a bulk load (a restore from
// far behind) writes without a write-ahead log, so only what reached its
// tables survives a crash. Memtables flush whole and in order, and each
// Flush puts its checkpoint in the same batch as its records, so the store
// must come back as a prefix of the load with that prefix's checkpoint (or
// with no checkpoint and no records: the restore starts over), never with
// records past its checkpoint nor a checkpoint past its records.
func TestBulkLoadCrashKeepsAConsistentPrefix(t *testing.T) {
	const flushes = 300
	for seed := range uint64(12) {
		fs := vfs.NewCrashableMem()
		// Small memtables: some of them reach tables during the load.
		p, err := OpenPebbleBulk("db", PebbleOptions{FS: fs, CacheSize: 1 << 20, BulkMemTableSize: 256 << 10})
		if err != nil {
			t.Fatal(err)
		}
		ld, err := p.Loader()
		if err != nil {
			t.Fatal(err)
		}
		crashAt := flushes/3 + int(seed)*13
		var crashed *vfs.MemFS
		for i := 1; i <= flushes; i++ {
			if err := ld.Put(fmt.Appendf(nil, "k%04d", i), value(i)); err != nil {
				t.Fatal(err)
			}
			if err := ld.Put([]byte("last"), fmt.Appendf(nil, "%d", i)); err != nil {
				t.Fatal(err)
			}
			if err := ld.Flush(int64(i), false); err != nil {
				t.Fatal(err)
			}
			if i == crashAt { // mid-bulk-flush: a batch may be committing
				crashed = fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: []int{0, 50, 100}[seed%3], RNG: rand.New(rand.NewPCG(seed, 11))})
			}
		}
		if err := errors.Join(ld.Close(), p.Close()); err != nil {
			t.Fatal(err)
		}
		q, err := OpenPebbleWith("db", PebbleOptions{FS: crashed, CacheSize: 1 << 20})
		if err != nil {
			t.Fatalf("seed %d: reopening after the crash: %v", seed, err)
		}
		at, ok, err := q.Checkpoint()
		if err != nil || at > int64(crashAt) {
			t.Fatalf("seed %d: checkpoint %d (%v, %v) after a crash at flush %d", seed, at, ok, err, crashAt)
		}
		if !ok {
			at = 0
		}
		checkPrefix(t, q, seed, at, flushes)
		t.Logf("seed %d: crashed at flush %d of %d, came back at %d", seed, crashAt, flushes, at)
		q.Close()
	}
}
