package state

import (
	"bytes"
	"maps"
	"slices"
)

// Memory is an in-memory Store, for tests.
type Memory struct {
	committed map[string][]byte
	pending   map[string][]byte // nil value: deleted in the open transaction
	offset    int64
	hasOffset bool
	closed    bool
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{committed: map[string][]byte{}, pending: map[string][]byte{}}
}

func (m *Memory) Get(key []byte) ([]byte, bool, error) {
	if m.closed {
		return nil, false, ErrClosed
	}
	if v, ok := m.pending[string(key)]; ok {
		return v, v != nil, nil
	}
	v, ok := m.committed[string(key)]
	return v, ok, nil
}

func (m *Memory) Put(key, value []byte) error {
	if m.closed {
		return ErrClosed
	}
	m.pending[string(key)] = bytes.Clone(value)
	if m.pending[string(key)] == nil {
		m.pending[string(key)] = []byte{}
	}
	return nil
}

func (m *Memory) Delete(key []byte) error {
	if m.closed {
		return ErrClosed
	}
	m.pending[string(key)] = nil
	return nil
}

func (m *Memory) Range(start, end []byte, fn func(k, v []byte) bool) error {
	if m.closed {
		return ErrClosed
	}
	keys := map[string]bool{}
	for k := range m.committed {
		keys[k] = true
	}
	for k := range m.pending {
		keys[k] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if k < string(start) || (end != nil && k >= string(end)) {
			continue
		}
		v, ok, _ := m.Get([]byte(k))
		if ok && !fn([]byte(k), v) {
			return nil
		}
	}
	return nil
}

func (m *Memory) Prefix(p []byte, fn func(k, v []byte) bool) error {
	return m.Range(p, prefixEnd(p), fn)
}

func (m *Memory) Commit(offset int64) error {
	if m.closed {
		return ErrClosed
	}
	for k, v := range m.pending {
		if v == nil {
			delete(m.committed, k)
		} else {
			m.committed[k] = v
		}
	}
	clear(m.pending)
	m.offset, m.hasOffset = offset, true
	return nil
}

func (m *Memory) Abort() error {
	if m.closed {
		return ErrClosed
	}
	clear(m.pending)
	return nil
}

func (m *Memory) Checkpoint() (int64, bool, error) {
	if m.closed {
		return 0, false, ErrClosed
	}
	return m.offset, m.hasOffset, nil
}

func (m *Memory) Close() error {
	m.closed = true
	return nil
}
