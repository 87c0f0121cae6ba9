package crypt

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
)

// memStore is a pipes.Store that records what reaches it: what Pebble and
// the changelog would hold.
type memStore struct {
	m      map[string][]byte
	puts   [][2][]byte
	noPuts bool // benchmarks: keep the values only
}

func (s *memStore) Get(k []byte) ([]byte, bool, error) {
	v, ok := s.m[string(k)]
	return v, ok, nil
}

func (s *memStore) Put(k, v []byte) error {
	s.m[string(k)] = bytes.Clone(v)
	if !s.noPuts {
		s.puts = append(s.puts, [2][]byte{bytes.Clone(k), bytes.Clone(v)})
	}
	return nil
}

func (s *memStore) Delete(k []byte) error { delete(s.m, string(k)); return nil }

func (s *memStore) Range(start, end []byte, fn func(k, v []byte) bool) error {
	var keys []string
	for k := range s.m {
		if (start == nil || k >= string(start)) && (end == nil || k < string(end)) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !fn([]byte(k), s.m[k]) {
			break
		}
	}
	return nil
}

func (s *memStore) Prefix(p []byte, fn func(k, v []byte) bool) error {
	return s.Range(p, nil, func(k, v []byte) bool {
		if !bytes.HasPrefix(k, p) {
			return false
		}
		return fn(k, v)
	})
}

// TestStore: the values of an encrypted store are encrypted in what
// reaches the store below (Pebble and the changelog), read back in
// plaintext, by another Store over the same data (a restore elsewhere)
// too; the data key travels in the store; pipes never see it; a value
// moved to another key, or written in clear, does not decrypt; an
// outage is one.
func TestStore(t *testing.T) {
	k := testKey(t)
	under := &memStore{m: map[string][]byte{}}
	s := NewStore(under, NewEnvelope(k, Rotation{}, nil))
	if v, ok, err := s.Get([]byte("a")); err != nil || ok || v != nil {
		t.Fatalf("empty store: %q %v %v", v, ok, err)
	}
	if err := s.Range(nil, nil, func(k, v []byte) bool { t.Fatalf("empty store ranged %q", k); return true }); err != nil {
		t.Fatal(err)
	}
	for k, v := range map[string]string{"g/ann@example.com": "Annabel Lee", "g/bob": "Bobby Ray", "h/x": ""} {
		if err := s.Put([]byte(k), []byte(v)); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range under.puts {
		if bytes.Contains(p[1], []byte("Annabel")) || bytes.Contains(p[1], []byte("Bobby")) {
			t.Fatalf("stored in clear: %q = %q", p[0], p[1])
		}
	}
	if !bytes.Equal(under.puts[0][0], storeKeyKey) || len(under.puts) != 4 {
		t.Fatalf("puts %d, first %q: want the data key first, then the 3 values", len(under.puts), under.puts[0][0])
	}
	// Read back by another Store, as after a restore in another process.
	r := NewStore(under, NewEnvelope(k, Rotation{}, nil))
	if v, ok, err := r.Get([]byte("g/bob")); err != nil || !ok || string(v) != "Bobby Ray" {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	var seen []string
	if err := r.Range(nil, nil, func(k, v []byte) bool { seen = append(seen, string(k)+"="+string(v)); return true }); err != nil {
		t.Fatal(err)
	}
	if strings.Join(seen, ",") != "g/ann@example.com=Annabel Lee,g/bob=Bobby Ray,h/x=" {
		t.Fatalf("range: %v", seen)
	}
	seen = nil
	if err := r.Prefix([]byte("g/"), func(k, v []byte) bool { seen = append(seen, string(v)); return false }); err != nil || len(seen) != 1 || seen[0] != "Annabel Lee" {
		t.Fatalf("prefix: %v %v", seen, err)
	}
	if err := r.Put(storeKeyKey, []byte("x")); err == nil {
		t.Fatal("the data key's key was writable")
	}

	// A transaction that stored the data key and aborted: the next put
	// stores a key again.
	fresh := &memStore{m: map[string][]byte{}}
	a := NewStore(fresh, NewEnvelope(k, Rotation{}, nil))
	if err := a.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	clear(fresh.m) // the abort
	if err := a.Put([]byte("k"), []byte("v")); err != nil {
		t.Fatal(err)
	}
	if _, ok := fresh.m[string(storeKeyKey)]; !ok {
		t.Fatal("after an abort, values were written without their data key")
	}

	// Values that do not decrypt: moved to another key, in clear, or under
	// another key-encryption key.
	under.m["g/eve"] = under.m["g/bob"]
	if _, _, err := r.Get([]byte("g/eve")); err == nil {
		t.Fatal("a value moved to another key decrypted")
	}
	under.m["g/eve"] = []byte("Eve Clear")
	if _, _, err := r.Get([]byte("g/eve")); err == nil || strings.Contains(err.Error(), "Eve") {
		t.Fatalf("a value in clear: %v", err)
	}
	if err := r.Range(nil, nil, func(k, v []byte) bool { return true }); err == nil {
		t.Fatal("a range over a value in clear did not fail")
	}
	delete(under.m, "g/eve")
	other := NewStore(under, NewEnvelope(testKey(t), Rotation{}, nil))
	if _, _, err := other.Get([]byte("g/bob")); err == nil || serde.IsUnavailable(err) {
		t.Fatalf("another key-encryption key: %v", err)
	}

	// A key-encryption key that does not answer is an outage.
	kek := KEK{AEAD: outageKEK{}, Outage: func(err error) bool { return errors.Is(err, errDown) }}
	env := NewEnvelope(k, Rotation{}, nil)
	env.kek = &kek
	if _, _, err := NewStore(under, env).Get([]byte("g/bob")); !errors.Is(err, pipes.ErrUnavailable) {
		t.Fatalf("reading with the kms down: %v", err)
	}
	if err := NewStore(&memStore{m: map[string][]byte{}}, env).Put([]byte("k"), []byte("v")); !errors.Is(err, pipes.ErrUnavailable) {
		t.Fatalf("writing with the kms down: %v", err)
	}
}
