package engine

import (
	"bytes"
	"errors"
	"fmt"
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/topology"
)

// tableHandle is what a join pipe holds: one store for a partitioned
// table, every partition's for a global one.
type tableHandle struct {
	s     *tableSyncer
	ds    *topology.Dataset
	parts []*tablePart
	once  sync.Once
}

var _ pipes.Table = (*tableHandle)(nil)

func (h *tableHandle) Get(key []byte) (any, bool, error) {
	for _, tp := range h.parts {
		raw, ok, err := tp.get(key)
		if err != nil {
			return nil, false, fmt.Errorf("table %q partition %d: %w", h.ds.Name, tp.key.partition, err)
		}
		if !ok {
			continue
		}
		v, err := h.ds.Codec.Decode(raw)
		if err != nil {
			return nil, false, fmt.Errorf("table %q: the value of key %q does not decode: %w", h.ds.Name, key, err)
		}
		return v, true, nil
	}
	return nil, false, nil
}

// get returns a copy of the stored value: the store's slice is only valid
// until its next call, which another task may make.
func (tp *tablePart) get(key []byte) ([]byte, bool, error) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	v, ok, err := tp.st.Get(key)
	if err != nil || !ok {
		return nil, false, err
	}
	return bytes.Clone(v), true, nil
}

func (h *tableHandle) Schema() *pipes.Schema { return h.ds.Schema }

func (h *tableHandle) Partitioned() bool { return h.ds.Table == topology.TablePartitioned }

// Close releases the handle's stores; only the first call counts.
func (h *tableHandle) Close() error {
	var errs []error
	h.once.Do(func() {
		for _, tp := range h.parts {
			errs = append(errs, h.s.release(tp))
		}
	})
	return errors.Join(errs...)
}

// MemoryTables is a TableOpener whose tables live in memory and are filled
// by Put: the test driver's, and a task's default. Records go to the
// partition their key hashes to, as Kafka's default partitioner puts them,
// among the table's declared partitions (one if it declares none).
type MemoryTables struct {
	top  *topology.Topology
	mu   sync.Mutex
	rows map[tableKey]map[string][]byte
}

var _ TableOpener = (*MemoryTables)(nil)

// NewMemoryTables returns empty tables for t's table datasets.
func NewMemoryTables(t *topology.Topology) *MemoryTables {
	return &MemoryTables{top: t, rows: map[tableKey]map[string][]byte{}}
}

// Put writes the encoded value of key to a table; a nil value deletes the
// key, as a tombstone does.
func (m *MemoryTables) Put(table string, key, value []byte) error {
	d, ok := m.top.Datasets[table]
	if !ok || d.Table == "" {
		return fmt.Errorf("dataset %q is not a table of topology %q", table, m.top.Name)
	}
	if key == nil {
		return fmt.Errorf("table %q: a row needs a key", table)
	}
	n := m.partitions(d)
	p := int32(kgo.StickyKeyPartitioner(nil).ForTopic(d.Topic).Partition(&kgo.Record{Key: key}, n))
	m.mu.Lock()
	defer m.mu.Unlock()
	k := tableKey{table, p}
	if m.rows[k] == nil {
		m.rows[k] = map[string][]byte{}
	}
	if value == nil {
		delete(m.rows[k], string(key))
		return nil
	}
	m.rows[k][string(key)] = bytes.Clone(value)
	return nil
}

// partitions is the count Put spreads a table's rows over: its declared
// one, or for a partitioned table that declares none, that of the streams
// joining it (what the test driver assumes for them), so that a key's row
// sits in the partition of the key's records.
func (m *MemoryTables) partitions(d *topology.Dataset) int {
	if n := d.DeclaredPartitions(); n > 0 || d.Table != topology.TablePartitioned {
		return max(1, n)
	}
	n := 1
	for _, p := range m.top.Joiners(d) {
		for _, src := range m.top.UpstreamSources(p) {
			n = max(n, src.DeclaredPartitions())
		}
	}
	return n
}

// OpenTable returns a view of the table: the partition's rows when it is
// partitioned, all rows when global.
func (m *MemoryTables) OpenTable(table string, partition int32) (pipes.Table, error) {
	d, ok := m.top.Datasets[table]
	if !ok || d.Table == "" {
		return nil, fmt.Errorf("engine: dataset %q is not a table", table)
	}
	return &memTable{m: m, ds: d, partition: partition}, nil
}

type memTable struct {
	m         *MemoryTables
	ds        *topology.Dataset
	partition int32
}

var _ pipes.Table = (*memTable)(nil)

func (t *memTable) Get(key []byte) (any, bool, error) {
	t.m.mu.Lock()
	var raw []byte
	found := false
	for k, rows := range t.m.rows {
		if k.table != t.ds.Name || (t.Partitioned() && k.partition != t.partition) {
			continue
		}
		if v, ok := rows[string(key)]; ok {
			raw, found = v, true
			break
		}
	}
	t.m.mu.Unlock()
	if !found {
		return nil, false, nil
	}
	v, err := t.ds.Codec.Decode(raw)
	if err != nil {
		return nil, false, fmt.Errorf("table %q: the value of key %q does not decode: %w", t.ds.Name, key, err)
	}
	return v, true, nil
}

func (t *memTable) Schema() *pipes.Schema { return t.ds.Schema }

func (t *memTable) Partitioned() bool { return t.ds.Table == topology.TablePartitioned }
