// Package pipes is streamer's public API for pipes: what a custom pipe
// type imports, and all it needs to import. It holds the Pipe interface and
// its optional hook interfaces, records, batches and Output, registration
// (Environment, Register), the state stores and tables a pipe opens through
// its Env, schemas and their fields, expressions (Env.Compile), and the
// config-spec helpers that give every config error its file:line:col
// (Expr, Field, Key, Pos, Errorf).
//
// The built-in pipe types live behind it, in internal/builtin, with the ML
// backends they use; a binary has them when it imports package topology
// (cli.Main, streamertest). Package pipes itself links neither them nor
// the Kafka client, the state store, gRPC or the KMS clients (a house rule
// checks it), and it follows semantic versioning: see
// docs/your-own-pipes.md.
//
// A pipe reads named datasets and writes named datasets; it never talks to
// another pipe or to Kafka directly. The engine hands it a Batch of records
// from one partition, in offset order, and collects what it emits on each of
// its outputs. Records that fail go to Output.Fail, and the engine applies the
// pipe's on_error policy (dead-letter, skip or fail) to them.
//
// A pipe type registers itself with a typed config struct and a constructor:
//
//	type Config struct {
//		When pipes.Expr `yaml:"when" required:"true" doc:"Keep records for which this is true."`
//	}
//
//	func init() {
//		pipes.MustRegister("keep", pipes.Spec{Summary: "Keeps matching records."},
//			func(c Config, env *pipes.Env) (pipes.Pipe, error) { ... })
//	}
//
// The struct's tags drive YAML decoding (with line and column for every
// error), validation and the JSON Schema that `streamer schema` prints.
package pipes

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"time"

	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/internal/unavailable"
)

// Header is a Kafka record header. It has the fields, in the order, of
// franz-go's kgo.RecordHeader, which converts to it: pipes.Header(h).
type Header struct {
	Key   string
	Value []byte
}

// Origin is the consumed Kafka record that a record derives from, as it was
// read: raw key, value and headers, before any decoding or decryption.
// Dead-letter records carry them, with the topic, partition and offset.
// Pipes read it and pass it on (a pipe's output record keeps its input's
// Origin), and never change it.
type Origin struct {
	Topic     string
	Partition int32
	Offset    int64
	Timestamp time.Time
	Key       []byte
	Value     []byte
	Headers   []Header
}

// Record is one record flowing through a topology.
type Record struct {
	// Key is the record key, as raw bytes.
	Key []byte
	// Value is the decoded value: map[string]any for JSON objects and Avro
	// records, string for the string format and []byte for bytes.
	Value any
	// Timestamp is the record's timestamp; outputs keep their input's.
	Timestamp time.Time
	// Headers are carried from input to output.
	Headers []Header
	// Unread holds the members of a JSON object that no pipe downstream
	// reads or writes, as raw `"key":value` text, when the engine decoded
	// only the fields the pipes use (see FieldUser). Sinks of the same
	// format write it back unchanged. Pipes leave it alone.
	Unread []byte
	// Origin is the consumed Kafka record this one derives from. It is nil
	// for records made in tests. Dead-letter records carry its raw key and
	// value, topic, partition and offset.
	Origin *Origin
}

// Clone returns a copy of r whose value can be changed without changing r's.
// Nested maps and slices are copied too.
func (r *Record) Clone() *Record {
	c := *r
	c.Value = CloneValue(r.Value)
	c.Headers = append([]Header(nil), r.Headers...)
	return &c
}

// CloneValue deep-copies maps and slices of a decoded value.
func CloneValue(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := maps.Clone(x)
		for k, e := range m {
			switch e.(type) {
			case map[string]any, []any:
				m[k] = CloneValue(e)
			}
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = CloneValue(e)
		}
		return s
	}
	return v
}

// Batch is the unit of work handed to a pipe: records of one input dataset
// that came from one source partition, in offset order. A pipe that
// implements InterleavedReader may instead get the records of several
// inputs in one batch, in the order they arrived; Inputs then says which
// input each came from.
type Batch struct {
	// Input is the index of the input dataset in Env.Inputs, when all the
	// records came from one (Inputs is nil).
	Input int
	// Inputs, when not nil, holds the input index of each record: Inputs[i]
	// is that of Records[i].
	Inputs []int
	// Partition is the source partition the records came from.
	Partition int32
	// Records are owned by the pipe for the duration of Process: it may
	// change them and emit them, or emit new ones.
	Records []*Record
}

// InputOf returns the index in Env.Inputs of the input that Records[i] came
// from.
func (b *Batch) InputOf(i int) int {
	if b.Inputs != nil {
		return b.Inputs[i]
	}
	return b.Input
}

// Pipe processes batches. The engine makes one Pipe per partition task with
// the type's constructor and never calls Process concurrently on one Pipe, so
// a pipe may keep per-task scratch space without locks.
type Pipe interface {
	// Process handles one batch. Per-record problems go to out.Fail; a
	// returned error fails the whole batch and aborts the transaction.
	Process(ctx context.Context, b *Batch, out *Output) error
}

// KeyChanger is implemented by pipes that may emit records under other keys
// than they read them with. The compiler inserts a repartition topic between
// such a pipe and a pipe downstream that keeps state per key or joins a
// partitioned table, since a new key's records may sit in any partition.
// A pipe that changes keys without saying so breaks keyed state silently.
type KeyChanger interface {
	ChangesKey() bool
}

// SchemaDeriver is implemented by pipes that know the schema of what they
// emit, so that expressions further down the DAG are type-checked too.
type SchemaDeriver interface {
	// OutputSchema returns the schema of records emitted on the given
	// output port, or nil if it is unknown.
	OutputSchema(port int) *Schema
}

// FieldUser is implemented by pipes that know which top-level fields of a
// record they read or write. When every pipe downstream of a JSON source
// implements it, the engine decodes only those fields and copies the rest
// through as raw bytes, which saves most of the decoding and encoding.
type FieldUser interface {
	// UsedFields returns the top-level fields the pipe reads, writes or
	// deletes, and false if it may touch any field.
	UsedFields() ([]string, bool)
}

// ShallowReader is implemented by FieldUsers that do not look inside some
// of the fields they use: they only count them with len(), or overwrite or
// delete them whole. When every pipe of a task that uses such a field says
// so, the engine may leave its contents undecoded: a JSON array then comes
// as a serde.RawArray of raw elements, which len() counts and encoders
// write back verbatim. Arrays of objects are most of the cost of decoding a
// typical event, and a count of them is a common thing to compute.
type ShallowReader interface {
	// ShallowFields returns the fields, among those of UsedFields, that
	// the pipe reads no deeper than that.
	ShallowFields() []string
}

// InterleavedReader is implemented by pipes with several inputs that want
// their records in one batch, in the order they arrived, rather than one
// batch per input. It matters where the engine merged the inputs into one
// topic (a keyed pipe whose inputs come from several sources): a stream
// join decides lateness and emits matches by arrival, so splitting a poll by
// input would make its results depend on where polls happen to end. Pipes
// that do not implement it still get their inputs in arrival order, as
// consecutive batches of one input each.
type InterleavedReader interface {
	ReadsInterleaved() bool
}

// GracePeriod is implemented by pipes that work on event time and let
// records be out of order by a grace period. The compiler warns when one
// has none but reads a topic the compiler inserted (a repartition or merge
// topic), where the records of several partitions interleave out of
// event-time order: the ones a little behind would be counted late.
type GracePeriod interface {
	Grace() time.Duration
}

// Closer is implemented by pipes that hold resources. The engine calls Close
// once when the pipe's task ends.
type Closer interface {
	Close() error
}

// Failure is a record that a pipe could not process, and why.
type Failure struct {
	Record *Record
	Err    error
}

// Output collects what a pipe emits during one Process call. The engine
// resets and reuses it between batches.
type Output struct {
	ports [][]*Record
	fails []Failure
}

// NewOutput returns an Output with the given number of ports.
func NewOutput(ports int) *Output {
	return &Output{ports: make([][]*Record, ports)}
}

// Emit sends r to the output at index port (the position of the dataset in
// the pipe's `to` list).
func (o *Output) Emit(port int, r *Record) {
	o.ports[port] = append(o.ports[port], r)
}

// Fail reports that r could not be processed. The pipe's on_error policy
// decides what happens to it.
func (o *Output) Fail(r *Record, err error) {
	o.fails = append(o.fails, Failure{Record: r, Err: err})
}

// Records returns what was emitted on a port.
func (o *Output) Records(port int) []*Record { return o.ports[port] }

// Failures returns the records reported with Fail.
func (o *Output) Failures() []Failure { return o.fails }

// Ports returns the number of output ports.
func (o *Output) Ports() int { return len(o.ports) }

// Reset empties the output, keeping its memory.
func (o *Output) Reset() {
	for i := range o.ports {
		clear(o.ports[i])
		o.ports[i] = o.ports[i][:0]
	}
	clear(o.fails)
	o.fails = o.fails[:0]
}

// Port is one dataset a pipe reads or writes.
type Port struct {
	Dataset string
	// Schema is the dataset's schema, or nil when it is unknown.
	Schema *Schema
	// Codec encodes and decodes the dataset's values in its declared
	// format, or is nil in hand-built Envs. A pipe that keeps records in
	// its state store (a stream join) stores them with it, so that what it
	// emits later has the types a fresh decode would give.
	Codec ValueCodec
	// Consumed says the records of this input come to the pipe as the
	// engine decoded them from Kafka with Codec, unchanged by any pipe:
	// each record's Origin.Value is then its value's encoding, which a
	// pipe that stores records can keep instead of encoding them again.
	Consumed bool
}

// ValueCodec encodes and decodes record values of one dataset (serde.Codec
// implements it). It is safe for concurrent use.
type ValueCodec interface {
	// Decode returns the value of b. It does not keep b.
	Decode(b []byte) (any, error)
	// AppendEncode appends the encoding of v to dst.
	AppendEncode(dst []byte, v any) ([]byte, error)
}

// Env is what a constructor knows about the pipe it builds.
type Env struct {
	// Pipe is the pipe's name in the topology.
	Pipe    string
	Inputs  []Port
	Outputs []Port
	// Partition is the partition of the task the pipe is built for, or -1
	// when the topology is only being validated.
	Partition int32
	Logger    *slog.Logger
	// FS holds the files beside the topology file (models, lookup tables);
	// paths in a pipe's config are relative to it. Nil in hand-built Envs.
	FS fs.FS
	// Stores opens the task's keyed state stores (see Env.Store). Nil in
	// hand-built Envs, where Env.Store gives in-memory stores.
	Stores func(name string) (Store, error)
	// Tables opens the table datasets a pipe looks records up in (see
	// Env.Table). Nil in hand-built Envs, where Env.Table fails.
	Tables func(name string) (Table, error)
	// Now is the wall clock. Pipes that need the time of day (TTLs,
	// processing-time windows) call it instead of time.Now, so that tests
	// control it. Nil when only validating.
	Now func() time.Time
	// Hooks are the engine's observers (engine.Options.Hooks). A pipe
	// with events of its own, such as predict's model calls, reports them
	// to the hooks that implement its hook interface.
	Hooks []any
}

// Store is a task's keyed state, as a pipe sees it. Writes belong to the
// current Kafka transaction: they become durable when it commits (through a
// changelog topic and the local store) and vanish when it aborts. Reads see
// the writes made so far. Keys are raw bytes; a pipe keeps per-key state
// under the record key, so the key's partition owns it.
type Store interface {
	Get(key []byte) (value []byte, ok bool, err error)
	Put(key, value []byte) error
	Delete(key []byte) error
	Range(start, end []byte, fn func(key, value []byte) bool) error
	Prefix(prefix []byte, fn func(key, value []byte) bool) error
}

// Store returns the task's state store of that name, made for this pipe's
// partition. Call it in the constructor. Store names are per topology:
// two pipes naming the same store share it.
func (e *Env) Store(name string) (Store, error) {
	if e.Stores == nil {
		return newMemStore(), nil
	}
	return e.Stores(name)
}

// StoreOrOwn returns the store a pipe's config names, or, when it names
// none, the pipe's own store, named after the pipe: the default of every
// built-in stateful pipe's store: field.
func (e *Env) StoreOrOwn(name string) (Store, error) {
	if name == "" {
		name = e.Pipe
	}
	return e.Store(name)
}

// Table is a table dataset as a pipe sees it: the latest value of each key
// of a compacted topic, a null value having deleted the key. The engine
// brings it up to the topic's end before each poll it processes, so a
// record sees every table update written before it was polled.
//
// Get is safe for concurrent use: the partitions of a replica may share a
// global table.
type Table interface {
	// Get returns the decoded value of key, and false if the table has
	// none.
	Get(key []byte) (value any, ok bool, err error)
	// Schema is the schema of the table's values, or nil when unknown.
	Schema() *Schema
	// Partitioned reports whether the table is materialised per partition
	// (looked up only by the record key, which it is co-partitioned with)
	// rather than whole in every replica (global).
	Partitioned() bool
}

// Table returns the table dataset of that name, for this pipe's partition.
// Call it in the constructor. It fails if the dataset is not declared with
// table: (the compiler reports that at the pipe's table: field).
func (e *Env) Table(name string) (Table, error) {
	if e.Tables == nil {
		return nil, fmt.Errorf("no tables in this environment: dataset %q cannot be looked up", name)
	}
	return e.Tables(name)
}

// InputSchema returns the schema shared by all inputs, or nil when any input
// has no known schema or the inputs differ in their field names.
func (e *Env) InputSchema() *Schema {
	var s *Schema
	for i, in := range e.Inputs {
		if in.Schema == nil {
			return nil
		}
		if i == 0 {
			s = in.Schema
			continue
		}
		if !equalNames(s.Names(), in.Schema.Names()) {
			return nil
		}
	}
	return s
}

func equalNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Output returns the port index of the output dataset named by f, or an error
// at f's position if the pipe does not write that dataset.
func (e *Env) Output(f Field) (int, error) {
	var names []string
	for i, o := range e.Outputs {
		if o.Dataset == f.Name {
			return i, nil
		}
		names = append(names, o.Dataset)
	}
	return -1, spec.Errorf(f.Pos, "%q is not one of this pipe's outputs %v%s", f.Name, names, spec.DidYouMean(f.Name, names))
}

// CheckField returns an error at f's position if the input schema is known
// and has no such top-level field.
func (e *Env) CheckField(f Field) error {
	s := e.InputSchema()
	if s == nil || f.Name == "" {
		return nil
	}
	top := f.Name
	for i := 0; i < len(top); i++ {
		if top[i] == '.' {
			top = top[:i]
			break
		}
	}
	if _, ok := s.Field(top); !ok {
		return spec.Errorf(f.Pos, "unknown field %q%s", top, spec.DidYouMean(top, s.Names()))
	}
	return nil
}

// Pos is a position in a topology file.
type Pos = spec.Pos

// Expr is an expression written in a topology file. Compile it with Env.Compile.
type Expr = spec.Expr

// Field is a field name written in a topology file, with its position.
type Field = spec.Field

// KV is one entry of a mapping in a pipe's config: Key, the position it was
// written at, KeyPos, and Value. A config field of type []KV[T] decodes from a YAML mapping of T
// values, in the file's order, and rejects duplicate keys; unlike a
// map[string]T, it keeps where each key was written, so a constructor can
// report a bad key at its own file:line:col:
//
//	Masks []pipes.KV[string] `yaml:"masks" doc:"Replacement per field."`
//	...
//	for _, m := range c.Masks {
//		if err := env.CheckField(m.KeyField()); err != nil { // at the key's line:col
//			return nil, err
//		}
//	}
//
// The JSON Schema describes it as an object, like a map.
type KV[T any] = spec.KV[T]

// ErrUnavailable marks a failure that is not the records' fault: a model
// server or schema registry that cannot be reached, even after retries. A
// pipe returns an error wrapping it from Process; the engine then aborts
// the transaction, waits with backoff and processes the same records
// again, so nothing is lost or dead-lettered because a dependency is down.
var ErrUnavailable = unavailable.Err

// Errorf returns an error at a position in the topology file. Constructors
// return it (or several, with errors.Join) so users get file:line:col.
func Errorf(pos Pos, format string, args ...any) error {
	return spec.Errorf(pos, format, args...)
}
