package serde

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"sync"

	gojson "github.com/goccy/go-json"

	"github.com/streamerio/streamer/schema"
)

// jsonCodec uses goccy/go-json, a drop-in for encoding/json that decodes and
// encodes map[string]any several times faster (see bench/RESULTS.md).
type jsonCodec struct{ schema *schema.Schema }

func newJSON(schema []byte) (Codec, error) {
	c := &jsonCodec{}
	if len(schema) > 0 {
		s, err := jsonSchemaFields(schema)
		if err != nil {
			return nil, err
		}
		c.schema = s
	}
	return c, nil
}

func (c *jsonCodec) Decode(b []byte) (any, error) {
	var v any
	if err := gojson.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("json: %w", err)
	}
	return wholeNumbers(v), nil
}

// maxExact is the largest integer a float64 holds exactly.
const maxExact = 1 << 53

// wholeNumbers turns whole float64 numbers into int64, in place, so that
// integer fields behave as integers in expressions ("n % 10") and keep their
// type through Avro sinks. Fractional numbers stay float64.
func wholeNumbers(v any) any {
	switch x := v.(type) {
	case float64:
		if x == math.Trunc(x) && x >= -maxExact && x <= maxExact {
			return int64(x)
		}
	case map[string]any:
		for k, e := range x {
			switch e.(type) {
			case float64:
				x[k] = wholeNumbers(e)
			case map[string]any, []any:
				wholeNumbers(e) // converts in place
			}
		}
	case []any:
		for i, e := range x {
			if _, ok := e.(float64); ok {
				x[i] = wholeNumbers(e)
			} else {
				wholeNumbers(e)
			}
		}
	}
	return v
}

func (c *jsonCodec) AppendEncode(dst []byte, v any) ([]byte, error) {
	if dst == nil {
		b, err := gojson.Marshal(v)
		if err != nil {
			return dst, fmt.Errorf("json: %w", err)
		}
		return b, nil // no buffer given: the encoder's copy is the result
	}
	e := encoders.Get().(*encoder)
	defer encoders.Put(e)
	b, err := e.encode(v)
	if err != nil {
		return dst, fmt.Errorf("json: %w", err)
	}
	return append(dst, b...), nil
}

// encoder is a goccy encoder writing to a buffer it keeps. Appending from
// it into the caller's buffer saves the copy that Marshal allocates per
// value (the engine appends a batch's values into one slab).
type encoder struct {
	buf bytes.Buffer
	enc *gojson.Encoder
}

var encoders = sync.Pool{New: func() any {
	e := &encoder{}
	e.enc = gojson.NewEncoder(&e.buf)
	e.enc.SetEscapeHTML(false)
	return e
}}

// encode returns v's encoding, valid until the next call.
func (e *encoder) encode(v any) ([]byte, error) {
	e.buf.Reset()
	if err := e.enc.Encode(v); err != nil {
		return nil, err
	}
	b := e.buf.Bytes()
	return b[:len(b)-1], nil // without Encode's newline
}

func (c *jsonCodec) Schema() *schema.Schema { return c.schema }

// jsonSchemaFields reads the top-level properties of a JSON Schema document.
// An integer is Int64; a number is Float64 (a whole one decodes as int64,
// which expressions mix freely with float64).
func jsonSchemaFields(doc []byte) (*schema.Schema, error) {
	var root map[string]any
	d := json.NewDecoder(bytes.NewReader(doc))
	if err := d.Decode(&root); err != nil {
		return nil, fmt.Errorf("json schema: %w", err)
	}
	s := jsonObject(root)
	if s == nil {
		return nil, fmt.Errorf("json schema: the top level must be an object with properties")
	}
	return s, nil
}

func jsonObject(node map[string]any) *schema.Schema {
	props, ok := node["properties"].(map[string]any)
	if !ok {
		return nil
	}
	required := map[string]bool{}
	if rs, ok := node["required"].([]any); ok {
		for _, r := range rs {
			if s, ok := r.(string); ok {
				required[s] = true
			}
		}
	}
	names := make([]string, 0, len(props))
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	s := &schema.Schema{}
	for _, name := range names {
		p, _ := props[name].(map[string]any)
		f := schema.SchemaField{Name: name, Nullable: !required[name]}
		typ := p["type"]
		if list, ok := typ.([]any); ok { // ["string", "null"]
			typ = nil
			for _, t := range list {
				if t == "null" {
					f.Nullable = true
				} else if typ == nil {
					typ = t
				} else {
					typ = "" // several types: any
				}
			}
		}
		switch typ {
		case "string":
			f.Kind = schema.String
		case "integer":
			f.Kind = schema.Int64
		case "number":
			f.Kind = schema.Float64
		case "boolean":
			f.Kind = schema.Bool
		case "object":
			f.Kind = schema.Struct
			f.Fields = jsonObject(p)
		case "array":
			f.Kind = schema.Array
			f.Elem = schema.Any
		default:
			f.Kind = schema.Any
			f.Nullable = true
		}
		s.Fields = append(s.Fields, f)
	}
	return s
}
