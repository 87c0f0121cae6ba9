// Package streamertest runs topologies in-process, without a broker, for
// tests: a Go test driver for pipe authors, and the runner behind
// `streamer test` and its YAML test files.
//
// The driver goes through the same compiled plan and the same engine.Task
// code as a production replica; only the Kafka client is replaced. Records
// piped into a source dataset are encoded with the dataset's codec, so the
// decode path is tested too, and outputs are read back through the sink's
// codec.
//
//	d, err := streamertest.Load("topology.yaml")
//	...
//	err = d.Input("orders", streamertest.Record{Key: "c-1", Value: map[string]any{"amount": 10}})
//	out := d.Output("enriched")
package streamertest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

// Record is a record piped into or read out of a dataset.
type Record struct {
	// Key is the record key; nil means no key.
	Key *string
	// Value is the decoded value. When piping in, it is encoded with the
	// dataset's codec unless Raw is set.
	Value any
	// Raw is the value's bytes as they are on the topic. Set it when piping
	// in to send bytes that do not decode, such as malformed JSON.
	Raw []byte
	// Timestamp defaults to the driver's clock when piping in.
	Timestamp time.Time
	Headers   map[string]string
	// Partition is where the record was read from or written to.
	Partition int32
}

// Key returns a pointer to k, for Record literals.
func Key(k string) *string { return &k }

// DeadLetter is a record sent to the dead-letter dataset, with the reasons
// its headers carry.
type DeadLetter struct {
	Record
	Error, Stage, Pipe, Dataset string
	// SourceTopic, SourcePartition and SourceOffset locate the original.
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
}

// Driver runs one topology in-process. It is not safe for concurrent use.
type Driver struct {
	top     *topology.Topology
	log     *slog.Logger
	stats   *engine.Stats
	now     time.Time
	tasks   map[taskKey]*engine.Task
	offsets map[taskKey]int64
	out     map[string][]*kgo.Record // by topic, in emit order
	stop    func()                   // stops the in-memory registry, if any
	tables  *engine.MemoryTables
	// internal are the sources that read repartition and merge topics, by
	// topic.
	internal map[string]*topology.Dataset
}

type taskKey struct {
	topic     string
	partition int32
}

// DefaultTime is the driver clock's start, so that default timestamps are
// deterministic.
var DefaultTime = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// New returns a driver for a compiled topology.
func New(top *topology.Topology) *Driver {
	internal := map[string]*topology.Dataset{}
	for _, r := range top.Internal() {
		internal[r.Topic] = r
	}
	return &Driver{
		internal: internal,
		top:      top,
		log:      slog.New(slog.DiscardHandler),
		stats:    engine.NewStats(),
		now:      DefaultTime,
		tasks:    map[taskKey]*engine.Task{},
		offsets:  map[taskKey]int64{},
		out:      map[string][]*kgo.Record{},
		tables:   engine.NewMemoryTables(top),
	}
}

// Load compiles a topology file and returns a driver for it. Datasets in
// the schema-registry wire format work against an in-memory registry
// (franz-go's srfake), so tests need no registry server; their schemas must
// then come from files. Encrypted datasets use in-memory test keys
// (topology.WithTestKeys): no KMS; inputs and outputs are plaintext, and
// the records between them are encrypted as on a broker. Close stops it.
// opts are added to the compiler's; topology.WithPipes compiles against an
// isolated set of pipe types.
func Load(file string, opts ...topology.Option) (*Driver, error) {
	top, stop, err := compile(file, opts...)
	if err != nil {
		return nil, err
	}
	d := New(top)
	d.stop = stop
	return d, nil
}

// compile loads a topology with an in-memory schema registry.
func compile(file string, opts ...topology.Option) (*topology.Topology, func(), error) {
	fake := srfake.New()
	reg, err := serde.NewRegistry(fake.URL())
	if err != nil {
		fake.Close()
		return nil, nil, err
	}
	opts = append([]topology.Option{topology.WithRegistry(reg), topology.WithTestKeys()}, opts...)
	top, err := topology.Load(file, opts...)
	if err != nil {
		fake.Close()
		return nil, nil, err
	}
	return top, fake.Close, nil
}

// Topology returns the compiled topology.
func (d *Driver) Topology() *topology.Topology { return d.top }

// Stats returns the counters the engine keeps: records in and out, dead
// letters, skips.
func (d *Driver) Stats() *engine.Stats { return d.stats }

// Now returns the driver's clock.
func (d *Driver) Now() time.Time { return d.now }

// SetTime sets the driver's clock.
func (d *Driver) SetTime(t time.Time) { d.now = t }

// AdvanceTime moves the driver's clock forward.
func (d *Driver) AdvanceTime(by time.Duration) { d.now = d.now.Add(by) }

// Input pipes records into a source dataset. Each record goes to the
// partition its key hashes to (as Kafka's default partitioner does), or to
// partition 0 without a key; records of one partition form one batch. An
// error means a pipe with on_error: fail failed, or the input was invalid.
func (d *Driver) Input(dataset string, recs ...Record) error {
	return d.input(dataset, -1, recs)
}

// InputPartition pipes records into one partition of a source dataset, as
// one batch.
func (d *Driver) InputPartition(dataset string, partition int32, recs ...Record) error {
	return d.input(dataset, partition, recs)
}

func (d *Driver) input(dataset string, partition int32, recs []Record) error {
	ds, ok := d.top.Datasets[dataset]
	if !ok {
		return fmt.Errorf("no dataset %q in topology %q", dataset, d.top.Name)
	}
	if !ds.IsSource() {
		return fmt.Errorf("dataset %q is not a source: only datasets read from a topic take input", dataset)
	}
	n := int32(partitions(ds))
	part := kgo.StickyKeyPartitioner(nil).ForTopic(ds.Topic)
	byPart := map[int32][]*kgo.Record{}
	var order []int32
	for i, r := range recs {
		kr := &kgo.Record{Topic: ds.Topic, Timestamp: r.Timestamp, Headers: headers(r.Headers)}
		if r.Key != nil {
			kr.Key = []byte(*r.Key)
		}
		if kr.Timestamp.IsZero() {
			kr.Timestamp = d.now
		}
		switch {
		case r.Raw != nil:
			kr.Value = r.Raw
		case r.Value != nil:
			var b []byte
			var err error
			if hc, ok := ds.Codec.(serde.HeaderCodec); ok { // encrypted: as a producer would
				b, kr.Headers, err = hc.AppendEncodeRecord(nil, r.Value, kr.Headers)
			} else {
				b, err = ds.Codec.AppendEncode(nil, r.Value)
			}
			if err != nil {
				return fmt.Errorf("record %d for dataset %q does not encode as %s: %w", i, dataset, ds.ValueFormat, err)
			}
			kr.Value = b
		}
		p := partition
		if p < 0 {
			p = 0
			if kr.Key != nil {
				p = int32(part.Partition(kr, int(n)))
			}
		}
		if p >= n {
			return fmt.Errorf("record %d: partition %d, but dataset %q has %d", i, p, dataset, n)
		}
		kr.Partition = p
		if _, ok := byPart[p]; !ok {
			order = append(order, p)
		}
		byPart[p] = append(byPart[p], kr)
	}
	return d.process(ds, order, byPart)
}

// process runs batches of a source dataset's partitions, in order, each as
// one committed transaction. Records written to a repartition or merge topic are then
// consumed from it, as a replica would in a later poll: placed by the
// default partitioner on the new key, with offsets of their own.
func (d *Driver) process(ds *topology.Dataset, order []int32, byPart map[int32][]*kgo.Record) error {
	var repart []*kgo.Record
	for _, p := range order {
		k := taskKey{ds.Topic, p}
		for _, kr := range byPart[p] {
			kr.Offset = d.offsets[k]
			d.offsets[k]++
		}
		task, err := d.task(ds, p)
		if err != nil {
			return err
		}
		var written []*kgo.Record
		err = task.Process(context.Background(), byPart[p], func(r *kgo.Record) {
			d.out[r.Topic] = append(d.out[r.Topic], r)
			if d.internal[r.Topic] != nil {
				written = append(written, r)
			}
		})
		if err != nil {
			// As when a transaction aborts: state writes are dropped.
			return errors.Join(err, task.AbortState())
		}
		// Each batch is one committed transaction.
		if err := task.CommitState(func(string, int32) (int64, bool) { return 0, false }); err != nil {
			return err
		}
		repart = append(repart, written...)
	}
	// Per internal topic, in the order written.
	byTopic := map[string][]*kgo.Record{}
	var topics []string
	for _, r := range repart {
		if _, ok := byTopic[r.Topic]; !ok {
			topics = append(topics, r.Topic)
		}
		byTopic[r.Topic] = append(byTopic[r.Topic], r)
	}
	for _, topic := range topics {
		rd := d.internal[topic]
		n := d.internalCount(rd)
		part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
		next := map[int32][]*kgo.Record{}
		var order []int32
		for _, r := range byTopic[topic] {
			c := *r
			c.Partition = 0
			if c.Key != nil {
				c.Partition = int32(part.Partition(&c, n))
			}
			if _, ok := next[c.Partition]; !ok {
				order = append(order, c.Partition)
			}
			next[c.Partition] = append(next[c.Partition], &c)
		}
		if err := d.process(rd, order, next); err != nil {
			return err
		}
	}
	return nil
}

// internalCount is the partition count of a repartition or merge topic:
// its declared one, or else that of the sources that write it, as the
// engine creates it.
func (d *Driver) internalCount(rd *topology.Dataset) int {
	if rd.Partitions > 0 {
		return rd.Partitions
	}
	n := 1
	for _, src := range d.top.Feeders(rd) {
		n = max(n, partitions(src))
	}
	return n
}

// Table writes a row of a table dataset (one declared with table:), as a
// record on its topic would: value is encoded with the dataset's codec, and
// a nil value deletes the key (a tombstone). Join pipes see the row from the
// next input on, as a replica sees table updates made before it polls.
func (d *Driver) Table(dataset, key string, value any) error {
	ds, ok := d.top.Datasets[dataset]
	if !ok || ds.Table == "" {
		return fmt.Errorf("dataset %q is not a table of topology %q", dataset, d.top.Name)
	}
	var raw []byte
	if value != nil {
		b, err := ds.Codec.AppendEncode(nil, value)
		if err != nil {
			return fmt.Errorf("table %q, key %q: the value does not encode as %s: %w", dataset, key, ds.ValueFormat, err)
		}
		raw = b
	}
	return d.tables.Put(dataset, []byte(key), raw)
}

// partitions returns the partition count the driver assumes for a source.
func partitions(ds *topology.Dataset) int {
	switch {
	case ds.Partitions > 0:
		return ds.Partitions
	case ds.Create != nil:
		return ds.Create.Partitions
	}
	return 1
}

func (d *Driver) task(ds *topology.Dataset, p int32) (*engine.Task, error) {
	k := taskKey{ds.Topic, p}
	if t, ok := d.tasks[k]; ok {
		return t, nil
	}
	t, err := engine.NewTask(d.top, ds.Name, p, engine.TaskOptions{Logger: d.log, Stats: d.stats, Now: d.Now, Tables: d.tables})
	if err != nil {
		return nil, err
	}
	d.tasks[k] = t
	return t, nil
}

func headers(m map[string]string) []kgo.RecordHeader {
	if len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]kgo.RecordHeader, len(keys))
	for i, k := range keys {
		out[i] = kgo.RecordHeader{Key: k, Value: []byte(m[k])}
	}
	return out
}

// Output returns what pipes wrote to a sink dataset so far, decoded with its
// codec, in the order it was produced.
func (d *Driver) Output(dataset string) ([]Record, error) {
	ds, ok := d.top.Datasets[dataset]
	if !ok || !ds.IsSink() {
		return nil, fmt.Errorf("dataset %q is not written to a topic by a pipe", dataset)
	}
	var out []Record
	part := kgo.StickyKeyPartitioner(nil).ForTopic(ds.Topic)
	for _, kr := range d.out[ds.Topic] {
		hs := kr.Headers
		var v any
		var err error
		if hc, ok := ds.Codec.(serde.HeaderCodec); ok { // encrypted: decrypt as a reader would
			v, hs, err = hc.DecodeRecord(kr.Value, kr.Headers)
		} else {
			v, err = ds.Codec.Decode(kr.Value)
		}
		if err != nil {
			return nil, fmt.Errorf("output to %q does not decode: %w", dataset, err)
		}
		r := fromKgo(&kgo.Record{Key: kr.Key, Headers: hs, Timestamp: kr.Timestamp, Partition: kr.Partition}, v)
		if kr.Key != nil { // where Kafka's default partitioner puts it
			r.Partition = int32(part.Partition(kr, partitions(ds)))
		}
		out = append(out, r)
	}
	return out, nil
}

// RawOutput returns the records pipes produced to a sink dataset's topic
// so far, as they would be on the broker: encoded, and encrypted when the
// dataset declares it. Tests use it to check what is stored.
func (d *Driver) RawOutput(dataset string) []*kgo.Record {
	ds, ok := d.top.Datasets[dataset]
	if !ok {
		return nil
	}
	return d.out[ds.Topic]
}

// DeadLetters returns what went to the dead-letter dataset so far.
func (d *Driver) DeadLetters() []DeadLetter {
	if d.top.DeadLetter == nil {
		return nil
	}
	var out []DeadLetter
	for _, kr := range d.out[d.top.DeadLetter.Topic] {
		r := fromKgo(kr, nil)
		r.Raw = kr.Value
		dl := DeadLetter{Record: r}
		dl.Error = r.Headers[engine.HeaderError]
		dl.Stage = r.Headers[engine.HeaderStage]
		dl.Pipe = r.Headers[engine.HeaderPipe]
		dl.Dataset = r.Headers[engine.HeaderDataset]
		dl.SourceTopic = r.Headers[engine.HeaderTopic]
		if p, err := strconv.ParseInt(r.Headers[engine.HeaderPartition], 10, 32); err == nil {
			dl.SourcePartition = int32(p)
		}
		dl.SourceOffset, _ = strconv.ParseInt(r.Headers[engine.HeaderOffset], 10, 64)
		out = append(out, dl)
	}
	return out
}

func fromKgo(kr *kgo.Record, v any) Record {
	r := Record{Value: v, Timestamp: kr.Timestamp, Partition: kr.Partition}
	if kr.Key != nil {
		k := string(kr.Key)
		r.Key = &k
	}
	if len(kr.Headers) > 0 {
		r.Headers = map[string]string{}
		for _, h := range kr.Headers {
			r.Headers[h.Key] = string(h.Value)
		}
	}
	return r
}

// State calls fn for every key and value of a state store in one source
// partition, in key order, so tests can inspect what stateful pipes keep.
func (d *Driver) State(store string, partition int32, fn func(key, value []byte) bool) error {
	for k, t := range d.tasks {
		if k.partition == partition {
			if s, ok := t.Store(store); ok {
				return s.Range(nil, nil, fn)
			}
		}
	}
	return fmt.Errorf("no state store %q for partition %d (no records reached it yet)", store, partition)
}

// Reset forgets the outputs collected so far; the pipes keep their state.
func (d *Driver) Reset() { clear(d.out) }

// Close closes the pipes, and the in-memory registry Load started.
func (d *Driver) Close() error {
	if d.stop != nil {
		d.stop()
		d.stop = nil
	}
	var errs []error
	for _, t := range d.tasks {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}
