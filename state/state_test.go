package state_test

import (
	"bytes"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamerio/streamer/state"
)

// stores runs a test against every implementation, so both keep one
// contract.
func stores(t *testing.T, f func(t *testing.T, s state.Store)) {
	t.Run("memory", func(t *testing.T) { f(t, state.NewMemory()) })
	t.Run("pebble", func(t *testing.T) {
		s, err := state.OpenPebble(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		f(t, s)
	})
}

func get(t *testing.T, s state.Store, k string) string {
	t.Helper()
	v, ok, err := s.Get([]byte(k))
	if err != nil {
		t.Fatal(err)
	}
	if !ok {
		return "<none>"
	}
	return string(v)
}

func scan(t *testing.T, f func(fn func(k, v []byte) bool) error) string {
	t.Helper()
	var out []string
	if err := f(func(k, v []byte) bool { out = append(out, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	return strings.Join(out, " ")
}

func TestTransactions(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		if _, ok, _ := s.Checkpoint(); ok {
			t.Fatal("a new store has a checkpoint")
		}
		must(t, s.Put([]byte("a"), []byte("1")))
		if got := get(t, s, "a"); got != "1" {
			t.Errorf("the open transaction's write is not visible: %s", got)
		}
		must(t, s.Commit(41))
		must(t, s.Put([]byte("a"), []byte("2")))
		must(t, s.Put([]byte("b"), []byte("3")))
		must(t, s.Delete([]byte("a")))
		if got := get(t, s, "a"); got != "<none>" {
			t.Errorf("deleted in the transaction, still read: %s", got)
		}
		must(t, s.Abort())
		if get(t, s, "a") != "1" || get(t, s, "b") != "<none>" {
			t.Errorf("abort kept writes: a=%s b=%s", get(t, s, "a"), get(t, s, "b"))
		}
		if off, ok, err := s.Checkpoint(); err != nil || !ok || off != 41 {
			t.Errorf("checkpoint %d %v %v, want 41", off, ok, err)
		}
		must(t, s.Put([]byte("b"), []byte{}))
		must(t, s.Commit(42))
		if v, ok, _ := s.Get([]byte("b")); !ok || len(v) != 0 {
			t.Errorf("an empty value is not a missing one: %q %v", v, ok)
		}
	})
}

func TestRangeAndPrefix(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		for _, k := range []string{"user/2", "user/1", "order/9", "user/10", "z"} {
			must(t, s.Put([]byte(k), []byte("c")))
		}
		must(t, s.Commit(1))
		// Uncommitted writes and deletes show in scans too.
		must(t, s.Put([]byte("user/3"), []byte("p")))
		must(t, s.Delete([]byte("user/2")))
		if got := scan(t, func(fn func(k, v []byte) bool) error { return s.Prefix([]byte("user/"), fn) }); got != "user/1=c user/10=c user/3=p" {
			t.Errorf("prefix: %s", got)
		}
		if got := scan(t, func(fn func(k, v []byte) bool) error { return s.Range([]byte("order/"), []byte("user/10"), fn) }); got != "order/9=c user/1=c" {
			t.Errorf("range: %s", got)
		}
		if got := scan(t, func(fn func(k, v []byte) bool) error { return s.Range(nil, nil, fn) }); got != "order/9=c user/1=c user/10=c user/3=p z=c" {
			t.Errorf("everything: %s", got)
		}
		n := 0
		_ = s.Range(nil, nil, func(k, v []byte) bool { n++; return n < 2 })
		if n != 2 {
			t.Errorf("stopping early: %d calls", n)
		}
	})
}

// TestScansSeeEachWrite: a join scans a key range, writes, and scans again,
// many times per transaction; every scan must see the writes before it,
// after commits and aborts too, and a scan inside another's callback must
// not disturb the outer one.
func TestScansSeeEachWrite(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		all := func() string {
			return scan(t, func(fn func(k, v []byte) bool) error { return s.Prefix([]byte("k"), fn) })
		}
		must(t, s.Put([]byte("k1"), []byte("a")))
		if got := all(); got != "k1=a" {
			t.Errorf("after one write: %s", got)
		}
		must(t, s.Put([]byte("k2"), []byte("b")))
		must(t, s.Delete([]byte("k1")))
		if got := all(); got != "k2=b" {
			t.Errorf("after a write and a delete: %s", got)
		}
		must(t, s.Commit(1))
		if got := all(); got != "k2=b" {
			t.Errorf("after a commit: %s", got)
		}
		must(t, s.Put([]byte("k3"), []byte("c")))
		if got := all(); got != "k2=b k3=c" {
			t.Errorf("in the next transaction: %s", got)
		}
		must(t, s.Abort())
		if got := all(); got != "k2=b" {
			t.Errorf("after an abort: %s", got)
		}
		must(t, s.Put([]byte("k4"), []byte("d")))
		var outer, inner []string
		must(t, s.Prefix([]byte("k"), func(k, v []byte) bool {
			outer = append(outer, string(k))
			inner = append(inner, all())
			return true
		}))
		if got := strings.Join(outer, " "); got != "k2 k4" {
			t.Errorf("outer scan with nested ones: %s", got)
		}
		if got := strings.Join(inner, ","); got != "k2=b k4=d,k2=b k4=d" {
			t.Errorf("nested scans: %s", got)
		}
		if got := scan(t, func(fn func(k, v []byte) bool) error { return s.Range([]byte("k3"), nil, fn) }); got != "k4=d" {
			t.Errorf("a range after the nested scans: %s", got)
		}
	})
}

// TestScansSeeLoads: a restore's Loader writes to the database beside the
// open transaction; scans after its flushes must see what it wrote.
func TestScansSeeLoads(t *testing.T) {
	st, err := state.OpenPebble(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	all := func() string {
		return scan(t, func(fn func(k, v []byte) bool) error { return st.Prefix([]byte("k"), fn) })
	}
	if got := all(); got != "" {
		t.Errorf("a new store: %s", got)
	}
	ld, err := st.Loader()
	if err != nil {
		t.Fatal(err)
	}
	defer ld.Close()
	must(t, ld.Put([]byte("k1"), []byte("a")))
	must(t, ld.Flush(1, false))
	must(t, ld.Put([]byte("k2"), []byte("b")))
	must(t, ld.Flush(2, true))
	if got := all(); got != "k1=a k2=b" {
		t.Errorf("after a load: %s", got)
	}
}

// TestPebbleSurvivesRestartWithCommittedStateOnly: what a crash leaves is
// the last commit, with its checkpoint; uncommitted writes are gone.
func TestPebbleSurvivesRestartWithCommittedStateOnly(t *testing.T) {
	dir := state.Dir(t.TempDir(), "streamer-g", "counts", 3)
	if !strings.HasSuffix(dir, filepath.Join("streamer-g", "counts", "3")) {
		t.Fatalf("layout %s", dir)
	}
	s, err := state.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 1000; i++ {
		must(t, s.Put([]byte(fmt.Sprintf("k%04d", i)), []byte(fmt.Sprint(i))))
	}
	must(t, s.Commit(999))
	must(t, s.Put([]byte("k0000"), []byte("uncommitted")))
	must(t, s.Close())

	s, err = state.OpenPebble(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if off, ok, _ := s.Checkpoint(); !ok || off != 999 {
		t.Errorf("checkpoint %d %v", off, ok)
	}
	if got := get(t, s, "k0000"); got != "0" {
		t.Errorf("k0000 = %s, want the committed 0", got)
	}
	n := 0
	must(t, s.Prefix([]byte("k"), func(k, v []byte) bool { n++; return true }))
	if n != 1000 {
		t.Errorf("%d keys after reopen", n)
	}
}

func TestClosed(t *testing.T) {
	stores(t, func(t *testing.T, s state.Store) {
		must(t, s.Close())
		if _, _, err := s.Get([]byte("a")); err != state.ErrClosed {
			t.Errorf("Get after Close: %v", err)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestLargeValuesSeparated: a store opened for processing keeps values of
// SeparateValues bytes or more in blob files, and reads them back; small
// values and bulk loads stay in the tables.
func TestLargeValuesSeparated(t *testing.T) {
	blobs := func(dir string) int {
		m, _ := filepath.Glob(filepath.Join(dir, "*.blob"))
		return len(m)
	}
	for _, c := range []struct {
		name  string
		size  int
		bulk  bool
		blobs bool
	}{
		{"large values", 1024, false, true},
		{"small values", 64, false, false},
		{"large values, bulk load", 1024, true, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			open := state.OpenPebbleWith
			if c.bulk {
				open = state.OpenPebbleBulk
			}
			st, err := open(dir, state.PebbleOptions{})
			if err != nil {
				t.Fatal(err)
			}
			value := bytes.Repeat([]byte{'v'}, c.size)
			put, commit := st.Put, func() error { return st.Commit(1) }
			if c.bulk {
				ld, err := st.Loader()
				if err != nil {
					t.Fatal(err)
				}
				defer ld.Close()
				put, commit = ld.Put, func() error { return ld.Flush(1, true) }
			}
			for i := range 2000 {
				if err := put([]byte(fmt.Sprint("k", i)), value); err != nil {
					t.Fatal(err)
				}
			}
			if err := commit(); err != nil {
				t.Fatal(err)
			}
			if err := st.CompactAll(); err != nil {
				t.Fatal(err)
			}
			if got := blobs(dir) > 0; got != c.blobs {
				t.Errorf("blob files: %v, want %v", got, c.blobs)
			}
			v, ok, err := st.Get([]byte("k1999"))
			if err != nil || !ok || !bytes.Equal(v, value) {
				t.Errorf("read back %d bytes, %v, %v", len(v), ok, err)
			}
			if err := st.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}
