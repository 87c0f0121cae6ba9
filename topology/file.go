package topology

import (
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/internal/spec"
)

// fileSpec is the top level of a topology file. The struct tags are the
// format's reference: they drive decoding, lint and the JSON Schema.
type fileSpec struct {
	Name        string      `yaml:"name" required:"true" doc:"Name of the topology. The consumer group defaults to streamer-<name>."`
	Description string      `yaml:"description" doc:"What the topology does, for people."`
	Group       string      `yaml:"group" doc:"Kafka consumer group the replicas join. Default: streamer-<name>."`
	DeadLetter  *spec.Field `yaml:"dead_letter" doc:"Dataset that receives records that fail, with headers saying why and where from."`
	Defaults    defaults    `yaml:"defaults" doc:"Settings every pipe inherits."`
	Processing  processing  `yaml:"processing" doc:"How replicas consume and commit."`
	Datasets    yaml.Node   `yaml:"datasets" required:"true" doc:"The declared datasets: the contracts between pipes."`
	Pipes       yaml.Node   `yaml:"pipes" required:"true" doc:"The pipes, by name, in any order; the DAG comes from their from: and to: lists."`
}

type defaults struct {
	OnError string `yaml:"on_error" enum:"dlq,skip,fail" doc:"What a pipe does with a record that fails. Default: dlq when dead_letter is set, otherwise fail."`
}

type processing struct {
	CommitInterval    time.Duration `yaml:"commit_interval" default:"100ms" doc:"Longest time a transaction stays open; outputs and offsets commit together at this pace."`
	MinCommitInterval time.Duration `yaml:"min_commit_interval" default:"20ms" doc:"Shortest time a transaction stays open once a replica has read all there is: it then commits without waiting for commit_interval, so that at low load outputs are readable sooner. Under a backlog transactions last commit_interval. Set it to commit_interval to commit only at that pace."`
	StartOffset       string        `yaml:"start_offset" default:"earliest" enum:"earliest,latest" doc:"Where a new consumer group starts reading its source topics."`
	MaxPollRecords    int           `yaml:"max_poll_records" default:"10000" doc:"Most records taken from the client per poll. A replica polls fewer when its pipes are slow: the first poll takes at most 100, then each what its pipes process in a quarter of the transaction timeout."`
	Compression       string        `yaml:"compression" default:"snappy" enum:"snappy,lz4,zstd,gzip,none" doc:"Compression of the record batches the replicas produce: outputs, dead letters, changelogs and internal topics. snappy and lz4 cost little CPU; zstd makes the smallest batches, for more CPU; none sends them as they are."`
}

// datasetSpec declares one dataset.
type datasetSpec struct {
	Description string          `yaml:"description" doc:"What the data is, for people."`
	Topic       string          `yaml:"topic" doc:"Kafka topic holding the data. Without one the dataset lives only in memory, between two pipes."`
	Key         string          `yaml:"key" default:"string" enum:"string,bytes" doc:"Format of record keys."`
	Value       string          `yaml:"value" default:"json" enum:"json,avro,string,bytes" doc:"Format of record values."`
	Schema      *spec.Field     `yaml:"schema" doc:"Schema file, relative to the topology file: Avro (.avsc) for avro, JSON Schema for json. With it, expressions are type-checked."`
	Partitions  int             `yaml:"partitions" doc:"Expected partition count of an existing topic; checked at start."`
	Create      *createSpec     `yaml:"create" doc:"Create the topic at start if it does not exist: the job owns it."`
	Table       string          `yaml:"table" enum:"partitioned,global" doc:"Read the topic as a table (latest value per key; a null value deletes the key) for join pipes to look records up in, instead of as a stream. partitioned: kept per partition, co-partitioned with the stream that joins it (same partition count, looked up by the record key). global: every replica keeps all of it (small reference data), looked up by any key."`
	Registry    *registrySpec   `yaml:"registry" doc:"Values are in the schema-registry wire format (magic byte, schema id, Avro). The registry's address comes from --registry or STREAMER_REGISTRY_URL."`
	Encryption  *encryptionSpec `yaml:"encryption" doc:"Encrypt fields or the whole value with data keys wrapped by a KMS key: decrypted as read, encrypted as written (docs/ENCRYPTION.md)."`
	Plaintext   []spec.Field    `yaml:"plaintext" doc:"Fields of encrypted inputs this dataset may write in clear; validate reports any other encrypted field that reaches it unencrypted."`
}

type registrySpec struct {
	Subject  string `yaml:"subject" doc:"Subject of the values. Default: from the strategy."`
	Strategy string `yaml:"strategy" default:"topic" enum:"topic,record,topic-record" doc:"Subject naming: topic (<topic>-value), record (<namespace>.<name>) or topic-record."`
	Version  int    `yaml:"version" default:"-1" doc:"Version of the subject's schema to read with, when no schema file is given; -1 is the latest."`
	Register bool   `yaml:"register" doc:"Register the schema under the subject when the job first writes with it."`
}

type createSpec struct {
	Partitions  int               `yaml:"partitions" required:"true" doc:"Partition count."`
	Replication int               `yaml:"replication" default:"-1" doc:"Replication factor; -1 takes the broker's default.replication.factor."`
	Config      map[string]string `yaml:"config" doc:"Topic configs, such as retention.ms or cleanup.policy."`
}

// pipeSpec is the part of a pipe block common to every pipe type. The block
// also holds exactly one key naming the pipe's type, whose value is that
// type's config.
type pipeSpec struct {
	Description string       `yaml:"description" doc:"What the pipe does, for people."`
	From        []spec.Field `yaml:"from" required:"true" doc:"Dataset or datasets the pipe reads."`
	To          []spec.Field `yaml:"to" doc:"Dataset or datasets the pipe writes, in port order."`
	OnError     string       `yaml:"on_error" enum:"dlq,skip,fail" doc:"What happens to a record that fails in this pipe: sent to dead_letter, skipped (counted), or fail the job."`
}
