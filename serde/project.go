package serde

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"unicode/utf8"
	"unsafe"

	gojson "github.com/goccy/go-json"
)

// Projecting is implemented by codecs that can decode only some top-level
// fields of an object, keep the other members as raw text, and write such a
// record back. The engine uses it when it knows every field its pipes touch
// (see pipes.FieldUser): most of a record then passes through as bytes. JSON
// implements it.
type Projecting interface {
	// DecodeProjected decodes the fields named in fields into a map, each as
	// its Use says, and returns the other members as raw `"key":value` text
	// joined by commas. A value that is not an object is decoded whole, with
	// no unread part. It rejects exactly what Decode rejects.
	DecodeProjected(b []byte, fields *Fields) (v any, unread []byte, err error)
	// AppendEncodeWith encodes v with the unread members added back.
	AppendEncodeWith(dst []byte, v any, unread []byte) ([]byte, error)
}

var _ Projecting = (*jsonCodec)(nil)

// Use says how DecodeProjected reads a top-level field.
type Use uint8

const (
	// Unread fields stay raw text; it is the use of fields not named.
	Unread Use = iota
	// Whole fields are decoded as Decode decodes them.
	Whole
	// Shallow fields are read without looking inside: an array becomes a
	// RawArray of its elements left undecoded, which counts right for len()
	// and encodes back verbatim; other values are decoded whole.
	// It is for fields that pipes only count, move or delete
	// (pipes.ShallowReader): arrays of objects are most of the cost of
	// decoding and encoding a typical event.
	Shallow
)

// Fields is a projection: the top-level fields to decode, and how. It is
// made once (per task) and read by every DecodeProjected call, which takes
// the decoded map's keys from it instead of allocating them per record.
type Fields struct {
	byName map[string]field
}

type field struct {
	name string
	use  Use
}

// Uses returns the fields of the projection and how each is decoded.
func (f *Fields) Uses() map[string]Use {
	out := make(map[string]Use, len(f.byName))
	for name, x := range f.byName {
		out[name] = x.use
	}
	return out
}

// NewFields returns the projection of fields; names with the use Unread are
// left out.
func NewFields(fields map[string]Use) *Fields {
	f := &Fields{byName: make(map[string]field, len(fields))}
	for name, u := range fields {
		if u != Unread {
			f.byName[name] = field{name, u}
		}
	}
	return f
}

// smallMap is the most entries a Go map holds without growing past its
// first table; a decoded projection is made with at most this hint.
const smallMap = 8

// RawArray is a validated JSON array whose elements are left undecoded (see
// Shallow). It encodes as the array it was.
type RawArray []json.RawMessage

// MarshalJSON writes the array back, in one piece rather than an encoder
// call per element.
func (a RawArray) MarshalJSON() ([]byte, error) {
	n := 2
	for _, e := range a {
		n += len(e) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, '[')
	for i, e := range a {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, e...)
	}
	return append(b, ']'), nil
}

// DecodeProjected walks the document's top-level members once, checking
// JSON's grammar as it finds where each ends (scan.go): unread members are
// copied to the output unparsed, so they must be well-formed. On an invalid
// document it returns Decode's error, for its precise message. The walk is
// written here rather than taken from a JSON-path library because it runs
// per record: tidwall/gjson's ForEach took 0.86 µs on a 1 KB order, more
// than decoding the fields saves (bench/RESULTS.md), and validating the
// whole document with gojson.Valid before a walk read it twice.
func (c *jsonCodec) DecodeProjected(b []byte, fields *Fields) (any, []byte, error) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		v, err := c.Decode(b)
		return v, nil, err
	}
	m := make(map[string]any, min(len(fields.byName), smallMap))
	var unread []byte
	if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
		return c.projectedEnd(b, i+1, m, unread)
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return c.invalid(b)
		}
		ks := i
		ke, escaped := scanString(b, i)
		if ke < 0 {
			return c.invalid(b)
		}
		if i = skipSpace(b, ke); i >= len(b) || b[i] != ':' {
			return c.invalid(b)
		}
		vs := skipSpace(b, i+1)
		ve := scanValue(b, vs, 1)
		if ve < 0 {
			return c.invalid(b)
		}
		var f field
		if !escaped {
			f = fields.byName[string(b[ks+1:ke-1])] // no allocation for a map lookup
		} else {
			name, err := unquote(b[ks:ke])
			if err != nil {
				return nil, nil, err
			}
			f = fields.byName[name]
		}
		name, use := f.name, f.use
		if use == Shallow && b[vs] == '[' {
			m[name] = shallowArray(b[vs:ve])
		} else if use != Unread {
			v, err := c.member(b[vs:ve])
			if err != nil {
				return nil, nil, fmt.Errorf("json: field %q: %w", name, err)
			}
			m[name] = v
		} else {
			if unread == nil {
				unread = make([]byte, 0, len(b))
			} else {
				unread = append(unread, ',')
			}
			unread = append(unread, b[ks:ve]...)
		}
		var more bool
		if i, more = scanNext(b, ve, '}'); i < 0 {
			return c.invalid(b)
		}
		if !more {
			return c.projectedEnd(b, i, m, unread)
		}
	}
}

// projectedEnd returns the projection of an object that ends before b[i],
// if only space follows it.
func (c *jsonCodec) projectedEnd(b []byte, i int, m map[string]any, unread []byte) (any, []byte, error) {
	if skipSpace(b, i) != len(b) {
		return c.invalid(b)
	}
	return m, unread, nil
}

// invalid returns Decode's error for a document the scanner rejected.
func (c *jsonCodec) invalid(b []byte) (any, []byte, error) {
	_, err := c.Decode(b)
	if err == nil {
		err = fmt.Errorf("json: invalid document")
	}
	return nil, nil, err
}

// unquote decodes a JSON string with escapes. It is a function of its own
// so that the caller's variable does not escape: taking its address made
// DecodeProjected allocate for every member.
func unquote(q []byte) (string, error) {
	var s string
	if err := gojson.Unmarshal(q, &s); err != nil {
		return "", fmt.Errorf("json: %w", err)
	}
	return s, nil
}

// shallowArray splits a validated array into its elements, undecoded. The
// elements share one copy of the array's text: a value may outlive the
// record it came from (in a pipe's state, say), and should not pin the whole
// fetch buffer.
func shallowArray(raw []byte) RawArray {
	raw = bytes.Clone(raw)
	out := make(RawArray, 0, 4)
	for i := skipSpace(raw, 1); raw[i] != ']'; {
		e := scanValue(raw, i, 1) // validated already: it cannot fail
		out = append(out, json.RawMessage(raw[i:e:e]))
		i = skipSpace(raw, e)
		if raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return out
}

// member decodes one validated value the way Decode would.
func (c *jsonCodec) member(raw []byte) (any, error) {
	switch raw[0] {
	case 'n':
		return nil, nil
	case 't':
		return true, nil
	case 'f':
		return false, nil
	case '"':
		s := raw[1 : len(raw)-1]
		if bytes.IndexByte(s, '\\') < 0 && utf8.Valid(s) {
			return string(s), nil
		}
	case '{', '[':
	default: // a number
		f, err := strconv.ParseFloat(unsafe.String(unsafe.SliceData(raw), len(raw)), 64)
		if err == nil {
			return wholeNumbers(f), nil
		}
	}
	var v any
	if err := gojson.Unmarshal(raw, &v); err != nil {
		return nil, err
	}
	return wholeNumbers(v), nil
}

func (c *jsonCodec) AppendEncodeWith(dst []byte, v any, unread []byte) ([]byte, error) {
	if len(unread) == 0 {
		return c.AppendEncode(dst, v)
	}
	m, ok := v.(map[string]any)
	if !ok {
		return dst, fmt.Errorf("json: a record with unread fields must stay an object, got %T", v)
	}
	if dst == nil {
		dst = make([]byte, 0, len(unread)+64*len(m)+2)
	}
	dst = append(dst, '{')
	dst = append(dst, unread...)
	if len(m) > 0 {
		e := encoders.Get().(*encoder)
		defer encoders.Put(e)
		b, err := e.encode(m)
		if err != nil {
			return dst, fmt.Errorf("json: %w", err)
		}
		dst = append(dst, ',')
		dst = append(dst, b[1:len(b)-1]...) // the members, without braces
	}
	return append(dst, '}'), nil
}
