// Package topology parses, validates and compiles topology files.
//
// A topology file declares datasets (the contracts: where data lives, its
// formats and schema) and pipes (units of computation that read and write
// datasets by name). Compile builds the DAG and checks it. The rules are:
//
//   - every key is known to the format (misspellings get a suggestion), and
//     every pipe names exactly one registered pipe type;
//   - every dataset a pipe reads has exactly one producer: a Kafka topic
//     (a source) or one pipe;
//   - a dataset written by a pipe is read by another pipe or stored in a topic;
//   - two datasets never share a topic;
//   - the pipes form no cycle;
//   - every pipe's config decodes, and its expressions compile against the
//     schemas of its inputs where those are known (declared, or derived by
//     the pipes upstream);
//   - a pipe whose on_error is dlq has a dead_letter dataset to write to,
//     and that dataset has a topic and is not read or written by pipes;
//   - schema files exist and parse; avro datasets have one;
//   - a table dataset (table: partitioned or global) has a topic, is
//     neither read with from: nor written by a pipe, and is named by a join
//     pipe's table:; a pipe's table: names a table dataset;
//   - a partitioned table is looked up by the record key only (no on:), and
//     its declared partition count (partitions: or create:) equals that of
//     every source stream that reaches the join; the engine checks the real
//     counts again at start.
//
// Compile then inserts a repartition topic, <group>-<dataset>-repartition,
// wherever a pipe that changes record keys (pipes.KeyChanger) feeds, through
// in-memory datasets, a pipe that keeps state per key or joins a
// partitioned table; the re-keyed dataset must be in memory. A pipe that
// keeps state per key and whose inputs come from several tasks (two
// streams to join, or several inputs one of which was re-keyed) reads them
// instead from one merge topic, <group>-<pipe>-merge, which every input is
// written to, partitioned by key, under a side header. Both split the plan
// into sub-topologies (see SubTopology).
//
// Every violation is reported as file:line:col, all of them at once.
//
// Importing topology registers the built-in pipe types (internal/builtin)
// into pipes.DefaultEnvironment: whatever compiles topologies (the engine,
// streamertest, the streamer command) has every one of them.
package topology

import (
	"io/fs"
	"maps"
	"slices"
	"time"

	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
)

// OnError is what happens to a record that a pipe fails on.
type OnError string

// The on_error policies.
const (
	DeadLetter OnError = "dlq"
	Skip       OnError = "skip"
	Fail       OnError = "fail"
)

// Topology is a compiled topology, ready to run.
type Topology struct {
	Name        string
	Description string
	// File is the path the topology was read from.
	File string
	// Group is the consumer group of the replicas.
	Group string
	// Datasets by name.
	Datasets map[string]*Dataset
	// Pipes in topological order: a pipe comes after every pipe it reads from.
	Pipes []*Pipe
	// DeadLetter is the dataset that failing records go to, or nil.
	DeadLetter *Dataset
	// CommitInterval bounds how long a transaction stays open.
	CommitInterval time.Duration
	// MinCommitInterval is how long a transaction stays open at least
	// when the replica has caught up with its inputs.
	MinCommitInterval time.Duration
	// StartOffset is where a new group starts: "earliest" or "latest".
	StartOffset string
	// MaxPollRecords bounds the records taken per poll.
	MaxPollRecords int
	// Compression is the codec of produced record batches: snappy, lz4,
	// zstd, gzip or none. Empty means snappy.
	Compression string
	// SubTopologies partition the pipes into the parts that run in one
	// task each; repartition topics connect them (see SubTopology).
	SubTopologies []*SubTopology
	// Warnings found while compiling; they do not stop a run.
	Warnings []Diagnostic
}

// Dataset is a compiled dataset declaration.
type Dataset struct {
	Name        string
	Description string
	Topic       string
	KeyFormat   string
	ValueFormat string
	SchemaFile  string
	// Subject is the schema-registry subject, when values are in the
	// registry's wire format.
	Subject string
	// Codec encodes and decodes the values.
	Codec serde.Codec
	// Schema is the declared schema, or the one derived by its producer,
	// or nil when unknown.
	Schema *pipes.Schema
	// Partitions is the expected partition count, 0 if not declared.
	Partitions int
	// Table is TablePartitioned or TableGlobal when the topic is read as a
	// table for joins, and empty for a stream.
	Table string
	// Create, when set, says the job owns the topic and creates it.
	Create *Create
	// Producer is the pipe that writes the dataset; nil for a source.
	Producer *Pipe
	// Readers are the pipes that read it.
	Readers []*Pipe
	// Repartition is set on a re-keyed dataset that the compiler turned into
	// the sink of a repartition topic: the source dataset reading it back.
	Repartition *Dataset
	// RepartitionOf is set on that source: the re-keyed dataset it reads.
	RepartitionOf *Dataset
	// Merges are the merge topics the records of this dataset are also
	// written to, partitioned by key, each under a side number: one for
	// every keyed pipe reading it whose inputs come from several tasks.
	Merges []MergeTarget
	// Sides is set on a merge source, the dataset reading a merge topic:
	// the datasets its records are decoded into, by their side header.
	Sides []*Dataset
	// MergeOf is set on a side: the merge source it is read from.
	MergeOf *Dataset
	// Encryption is the declared encryption, or nil; Codec then encrypts
	// and decrypts (a *crypt.Codec).
	Encryption *Encryption
	// Plaintext lists fields of encrypted inputs the dataset may write in
	// clear.
	Plaintext []string
	Pos       spec.Pos
}

// Create holds the settings of a topic the job creates.
type Create struct {
	Partitions int
	// Replication is the replication factor; -1 (the default) takes the
	// broker's default.replication.factor.
	Replication int
	Config      map[string]string
}

// The kinds of table dataset.
const (
	TablePartitioned = "partitioned"
	TableGlobal      = "global"
)

// DeclaredPartitions returns the partition count the topology declares for
// d (partitions: or create:), or 0.
func (d *Dataset) DeclaredPartitions() int {
	if d.Partitions > 0 {
		return d.Partitions
	}
	if d.Create != nil {
		return d.Create.Partitions
	}
	return 0
}

// MergeTarget is a merge topic that a dataset's records are written to:
// Source reads it, and the records carry side number Side.
type MergeTarget struct {
	Source *Dataset
	Side   int
}

// IsSource reports whether records of d are consumed from Kafka: read by
// pipes, or forwarded to merge topics.
func (d *Dataset) IsSource() bool {
	return d.Producer == nil && d.Topic != "" && (len(d.Readers) > 0 || len(d.Merges) > 0)
}

// IsInternal reports whether the compiler made d: a source of a
// repartition or merge topic, or a side of a merge.
func (d *Dataset) IsInternal() bool {
	return d.RepartitionOf != nil || d.Sides != nil || d.MergeOf != nil
}

// IsSink reports whether records of d are produced to Kafka by a pipe.
func (d *Dataset) IsSink() bool { return d.Producer != nil && d.Topic != "" }

// Pipe is a compiled pipe.
type Pipe struct {
	Name        string
	Type        string
	Description string
	Inputs      []*Dataset
	Outputs     []*Dataset
	OnError     OnError
	// Config is the decoded type config; Config.New builds the pipe.
	Config pipes.Config
	// Stores are the state stores the pipe asked for, by name.
	Stores []string
	// Tables are the table datasets the pipe looks records up in, by name.
	Tables []string
	// ChangesKey says the pipe may emit records under new keys
	// (pipes.KeyChanger).
	ChangesKey bool
	Pos        spec.Pos
	bad        bool     // its config or datasets did not resolve (see ownError)
	cfgPos     spec.Pos // where its type's config starts
	noGrace    bool     // works on event time (pipes.GracePeriod) with no grace
	fsys       fs.FS    // the topology file's directory
}

// Env returns the constructor environment of the pipe for a partition (-1
// when only validating).
func (p *Pipe) Env(partition int32) *pipes.Env {
	env := &pipes.Env{Pipe: p.Name, Partition: partition, FS: p.fsys}
	for _, d := range p.Inputs {
		env.Inputs = append(env.Inputs, d.port())
	}
	for _, d := range p.Outputs {
		env.Outputs = append(env.Outputs, d.port())
	}
	return env
}

func (d *Dataset) port() pipes.Port {
	// A HeaderCodec's consumed value needs its record's headers: a pipe
	// storing records must encode them with Codec instead.
	_, withHeaders := d.Codec.(serde.HeaderCodec)
	port := pipes.Port{Dataset: d.Name, Schema: d.Schema, Consumed: (d.IsSource() || d.MergeOf != nil) && !withHeaders}
	if d.Codec != nil {
		port.Codec = d.Codec
	}
	return port
}

// Sources returns the datasets consumed from Kafka, sorted by name.
func (t *Topology) Sources() []*Dataset { return t.filter((*Dataset).IsSource) }

// Sinks returns the datasets produced to Kafka by pipes, sorted by name.
func (t *Topology) Sinks() []*Dataset { return t.filter((*Dataset).IsSink) }

// Owned returns the datasets whose topics the job creates, sorted by name.
func (t *Topology) Owned() []*Dataset {
	return t.filter(func(d *Dataset) bool { return d.Create != nil })
}

func (t *Topology) filter(keep func(*Dataset) bool) []*Dataset {
	var out []*Dataset
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		if d := t.Datasets[name]; keep(d) {
			out = append(out, d)
		}
	}
	return out
}

// TopicsRead returns the source topics.
func (t *Topology) TopicsRead() []string { return topics(t.Sources()) }

// ExternalTopicsRead returns the source topics without the repartition and
// merge topics the compiler inserted, sorted.
func (t *Topology) ExternalTopicsRead() []string {
	var out []string
	for _, d := range t.Sources() {
		if !d.IsInternal() && !slices.Contains(out, d.Topic) {
			out = append(out, d.Topic)
		}
	}
	slices.Sort(out)
	return out
}

// TopicsWritten returns the topics the job produces to: sinks, dead
// letters and state changelogs.
func (t *Topology) TopicsWritten() []string {
	ds := t.Sinks()
	if t.DeadLetter != nil {
		ds = append(ds, t.DeadLetter)
	}
	out := topics(ds)
	for _, m := range t.Merges() {
		out = append(out, m.Topic)
	}
	for _, s := range t.Stores() {
		out = append(out, t.ChangelogTopic(s))
	}
	return out
}

func topics(ds []*Dataset) []string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Topic)
	}
	return out
}

// Tables returns the table datasets that pipes look records up in, sorted
// by name. Their topics are not consumed by the group: each replica reads
// them into local tables (engine/tables.go).
func (t *Topology) Tables() []*Dataset {
	return t.filter(func(d *Dataset) bool { return d.Table != "" && len(t.Joiners(d)) > 0 })
}

// Joiners returns the pipes that look records up in table d.
func (t *Topology) Joiners(d *Dataset) []*Pipe {
	var out []*Pipe
	for _, p := range t.Pipes {
		if slices.Contains(p.Tables, d.Name) {
			out = append(out, p)
		}
	}
	return out
}

// UpstreamSources returns the source datasets whose records reach pipe p,
// sorted by name.
func (t *Topology) UpstreamSources(p *Pipe) []*Dataset {
	seen := map[*Pipe]bool{}
	found := map[*Dataset]bool{}
	var walk func(p *Pipe)
	walk = func(p *Pipe) {
		if seen[p] {
			return
		}
		seen[p] = true
		for _, in := range p.Inputs {
			if in.IsSource() {
				found[in] = true
			}
			if in.MergeOf != nil {
				found[in.MergeOf] = true
			}
			if in.Producer != nil {
				walk(in.Producer)
			}
		}
	}
	walk(p)
	return t.filter(func(d *Dataset) bool { return found[d] })
}

// Stores returns the names of the state stores the pipes use, sorted.
func (t *Topology) Stores() []string {
	var out []string
	for _, p := range t.Pipes {
		for _, s := range p.Stores {
			if !slices.Contains(out, s) {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

// ChangelogTopic returns the compacted topic that backs a state store:
// <group>-<store>-changelog. Its partition i holds the state of source
// partition i.
func (t *Topology) ChangelogTopic(store string) string {
	return t.Group + "-" + store + "-changelog"
}

// TransactionalID returns the transactional id of one replica. Each replica
// needs its own; a restarted replica should reuse its id, so that its
// predecessor's open transaction is fenced and aborted at once.
func (t *Topology) TransactionalID(replica string) string {
	return t.Group + "-" + replica
}
