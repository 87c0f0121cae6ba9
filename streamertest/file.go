package streamertest

import (
	"github.com/streamerio/streamer/internal/spec"
)

// The test file format. Like the topology format, these structs are its
// reference: they drive decoding and its positioned errors.

type fileSpec struct {
	Topology string     `yaml:"topology" required:"true" doc:"The topology under test, relative to this file."`
	Requires []string   `yaml:"requires" doc:"Pipe types the topology needs beyond the built-in ones (custom pipes). A binary that lacks one skips the file's cases, saying why, instead of reporting the topology invalid."`
	Cases    []caseSpec `yaml:"cases" required:"true" doc:"The test cases, each run on a fresh topology."`
}

type caseSpec struct {
	Name        string                  `yaml:"name" required:"true" doc:"What the case checks."`
	Time        string                  `yaml:"time" doc:"Clock at the start of the case (RFC 3339); input timestamps default to it. Default 2026-01-01T00:00:00Z."`
	Match       string                  `yaml:"match" default:"exact" enum:"exact,partial" doc:"exact: expected values equal the outputs; partial: the fields given must match, others are ignored."`
	Order       string                  `yaml:"order" default:"key" enum:"key,total,none" doc:"key: outputs of the same key in the given order; total: all in the given order; none: any order."`
	Tables      []spec.KV[[]recordSpec] `yaml:"tables" doc:"Rows of table datasets, by dataset, written before the input: key and value; a row without a value deletes its key."`
	Input       []spec.KV[[]recordSpec] `yaml:"input" required:"true" doc:"Records piped into source datasets, by dataset, in order."`
	Expect      []spec.KV[[]recordSpec] `yaml:"expect" doc:"Expected records per sink dataset. A sink not listed is not checked; an empty list expects none."`
	DeadLetters *[]deadLetterSpec       `yaml:"dead_letters" doc:"Expected dead letters, in order. Omitted: none are expected."`
	Pos         spec.Pos                `yaml:"-" spec:"pos"`
}

type recordSpec struct {
	Key       *string           `yaml:"key" doc:"Record key; omitted means no key."`
	Value     any               `yaml:"value" doc:"Value, encoded with the dataset's format (JSON or Avro)."`
	Raw       *string           `yaml:"raw" doc:"Value as raw bytes, for input that must not be encoded (such as malformed JSON)."`
	Timestamp string            `yaml:"timestamp" doc:"RFC 3339 timestamp, or an offset from the case's time such as +5s. Default: the clock."`
	At        string            `yaml:"at" doc:"Set the wall clock (what pipes see as now) before this record: RFC 3339, or an offset from the case's time such as +30s."`
	Headers   map[string]string `yaml:"headers" doc:"Record headers."`
	Partition *int              `yaml:"partition" doc:"Input partition; default: by key hash, as Kafka's default partitioner does."`
	Pos       spec.Pos          `yaml:"-" spec:"pos"`
}

type deadLetterSpec struct {
	Pipe  string  `yaml:"pipe" doc:"The pipe the record failed in."`
	Stage string  `yaml:"stage" enum:"decode,process,encode" doc:"Where it failed."`
	Error string  `yaml:"error" doc:"A substring of the error message."`
	Key   *string `yaml:"key" doc:"The record key."`
	Raw   *string `yaml:"raw" doc:"The original value bytes."`
}
