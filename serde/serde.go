// Package serde turns Kafka record bytes into values pipes work on, and back.
//
// A Codec is chosen per dataset by its declared format: json (objects decode
// to map[string]any, whole numbers to int64 and others to float64), avro (a schema file, goavro binary
// encoding, unions unwrapped to plain values), string or bytes. A codec also
// reports the schema of its values when it knows one, so the topology
// compiler can type-check expressions before anything runs.
//
// Codecs are safe for concurrent use.
package serde

import (
	"fmt"
	"os"

	"github.com/streamerio/streamer/schema"
)

// Formats lists the value formats a dataset may declare.
var Formats = []string{"json", "avro", "string", "bytes"}

// KeyFormats lists the key formats a dataset may declare. Keys stay raw bytes
// in records; the format says how to show and compare them.
var KeyFormats = []string{"string", "bytes"}

// Codec encodes and decodes record values of one dataset.
type Codec interface {
	// Decode returns the value of b. It must not keep b.
	Decode(b []byte) (any, error)
	// AppendEncode appends the encoding of v to dst.
	AppendEncode(dst []byte, v any) ([]byte, error)
	// Schema returns the schema of the values, or nil when unknown.
	Schema() *schema.Schema
}

// New returns the codec of a format. schemaFile may be empty, except for
// avro, which needs one.
func New(format, schemaFile string) (Codec, error) {
	var raw []byte
	if schemaFile != "" {
		var err error
		if raw, err = os.ReadFile(schemaFile); err != nil {
			return nil, fmt.Errorf("reading schema: %w", err)
		}
	}
	return NewFromSchema(format, raw)
}

// NewFromSchema is New with the schema's text instead of its file.
func NewFromSchema(format string, schema []byte) (Codec, error) {
	switch format {
	case "json", "":
		return newJSON(schema)
	case "avro":
		if len(schema) == 0 {
			return nil, fmt.Errorf("the avro format needs a schema file")
		}
		return newAvro(schema)
	case "string":
		return stringCodec{}, nil
	case "bytes":
		return bytesCodec{}, nil
	}
	return nil, fmt.Errorf("unknown format %q", format)
}

type stringCodec struct{}

func (stringCodec) Decode(b []byte) (any, error) { return string(b), nil }
func (stringCodec) AppendEncode(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return append(dst, x...), nil
	case []byte:
		return append(dst, x...), nil
	case nil:
		return dst, nil
	}
	return dst, fmt.Errorf("string format: cannot encode %T", v)
}
func (stringCodec) Schema() *schema.Schema { return nil }

type bytesCodec struct{}

func (bytesCodec) Decode(b []byte) (any, error) { return append([]byte(nil), b...), nil }
func (bytesCodec) AppendEncode(dst []byte, v any) ([]byte, error) {
	return stringCodec{}.AppendEncode(dst, v)
}
func (bytesCodec) Schema() *schema.Schema { return nil }
