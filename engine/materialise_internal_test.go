package engine

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

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
	if err := first.mat.start(); err != nil {
		t.Fatal(err)
	}
	defer first.mat.close()
	second, err := New(top, o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = second.Run(ctx)
	if !errors.Is(err, errLocked) || !strings.Contains(err.Error(), "--state-dir") || !strings.Contains(err.Error(), filepath.Join(dir, top.Group)) {
		t.Fatalf("second replica on the same state directory: %v; want a refusal naming --state-dir and %s", err, filepath.Join(dir, top.Group))
	}
	// Once the first lets go, the directory can be taken.
	first.mat.close()
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
