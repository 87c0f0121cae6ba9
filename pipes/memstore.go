package pipes

import (
	"bytes"
	"maps"
	"slices"
)

// memStore is the Store of hand-built Envs (tests, validation): a map.
type memStore map[string][]byte

func newMemStore() memStore { return memStore{} }

// NewMemoryStore returns an in-memory Store with no transactions, for
// validation and tests.
func NewMemoryStore() Store { return newMemStore() }

func (m memStore) Get(k []byte) ([]byte, bool, error) { v, ok := m[string(k)]; return v, ok, nil }
func (m memStore) Put(k, v []byte) error              { m[string(k)] = bytes.Clone(v); return nil }
func (m memStore) Delete(k []byte) error              { delete(m, string(k)); return nil }

func (m memStore) Range(start, end []byte, fn func(k, v []byte) bool) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k >= string(start) && (end == nil || k < string(end)) && !fn([]byte(k), m[k]) {
			break
		}
	}
	return nil
}

func (m memStore) Prefix(p []byte, fn func(k, v []byte) bool) error {
	return m.Range(p, nil, func(k, v []byte) bool {
		if !bytes.HasPrefix(k, p) {
			return false
		}
		return fn(k, v)
	})
}
