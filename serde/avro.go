package serde

import (
	"encoding/json"
	"fmt"
	"math"
	"strings"

	"github.com/linkedin/goavro/v2"

	"github.com/streamerio/streamer/schema"
)

// avroCodec encodes Avro binary with goavro. goavro represents a non-null
// union value as map[string]any{"type": value}; pipes and expressions want
// plain values, so the codec unwraps unions after decoding and wraps them
// again before encoding, guided by the schema.
type avroCodec struct {
	codec  *goavro.Codec
	root   *avroType
	schema *schema.Schema
}

// avroType is the part of an Avro schema the union conversion needs.
type avroType struct {
	kind    string // primitive name, "record", "enum", "fixed", "array", "map", "union"
	name    string // full name of named types
	fields  []avroField
	items   *avroType   // array items, map values
	symbols []string    // enum symbols
	union   []*avroType // union branches
	// logical types are left to goavro (it converts them to time.Time etc.)
	logical string
	// noUnion is set once the type is known to hold no union anywhere, so
	// wrap can hand its values to goavro as they are.
	noUnion bool
}

// markUnionFree sets noUnion on every type that holds no union, and reports
// whether t holds one. Recursive named types count as holding one.
func markUnionFree(t *avroType, seen map[*avroType]bool) (hasUnion bool) {
	if seen[t] {
		return !t.noUnion
	}
	seen[t] = true
	switch t.kind {
	case "union":
		for _, b := range t.union {
			markUnionFree(b, seen)
		}
		return true
	case "record":
		for _, f := range t.fields {
			if markUnionFree(f.t, seen) {
				hasUnion = true
			}
		}
	case "array", "map":
		hasUnion = markUnionFree(t.items, seen)
	}
	t.noUnion = !hasUnion
	return hasUnion
}

type avroField struct {
	name   string
	t      *avroType
	def    any // the default, as JSON decodes it
	hasDef bool
}

// A record that claims a huge array or map block makes goavro loop over
// items that are not there (a null item takes no bytes): fuzzing found a
// 15-byte value that took 40 s. These bounds make such values fail fast.
// They are far above what one record of a stream holds.
func init() {
	goavro.MaxBlockCount = 1 << 20
	goavro.MaxBlockSize = 64 << 20
}

func newAvro(schema []byte) (Codec, error) {
	codec, err := goavro.NewCodec(string(schema))
	if err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	var raw any
	if err := json.Unmarshal(schema, &raw); err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	p := &avroParser{named: map[string]*avroType{}}
	root, err := p.parse(raw, "")
	if err != nil {
		return nil, fmt.Errorf("avro schema: %w", err)
	}
	markUnionFree(root, map[*avroType]bool{})
	c := &avroCodec{codec: codec, root: root}
	if root.kind == "record" {
		c.schema = root.pipesSchema()
	}
	return c, nil
}

type avroParser struct{ named map[string]*avroType }

func asSlice(v any) []any {
	s, _ := v.([]any)
	return s
}

func (p *avroParser) parse(s any, ns string) (*avroType, error) {
	switch x := s.(type) {
	case string:
		switch x {
		case "null", "boolean", "int", "long", "float", "double", "bytes", "string":
			return &avroType{kind: x}, nil
		}
		full := x
		if !strings.Contains(x, ".") && ns != "" {
			full = ns + "." + x
		}
		if t, ok := p.named[full]; ok {
			return t, nil
		}
		if t, ok := p.named[x]; ok {
			return t, nil
		}
		return nil, fmt.Errorf("unknown type %q", x)
	case []any:
		u := &avroType{kind: "union"}
		for _, b := range x {
			t, err := p.parse(b, ns)
			if err != nil {
				return nil, err
			}
			u.union = append(u.union, t)
		}
		return u, nil
	case map[string]any:
		kind, _ := x["type"].(string)
		if kind == "" {
			// {"type": {...}} or {"type": [...]}: a wrapped type.
			return p.parse(x["type"], ns)
		}
		t := &avroType{kind: kind}
		t.logical, _ = x["logicalType"].(string)
		switch kind {
		case "record", "error", "enum", "fixed":
			for _, sym := range asSlice(x["symbols"]) {
				if s, ok := sym.(string); ok {
					t.symbols = append(t.symbols, s)
				}
			}
			t.kind = map[string]string{"error": "record"}[kind]
			if t.kind == "" {
				t.kind = kind
			}
			name, _ := x["name"].(string)
			if n, ok := x["namespace"].(string); ok && !strings.Contains(name, ".") {
				ns = n
			}
			if !strings.Contains(name, ".") && ns != "" {
				name = ns + "." + name
			}
			if i := strings.LastIndex(name, "."); i >= 0 {
				ns = name[:i]
			}
			t.name = name
			p.named[name] = t
			if kind == "record" || kind == "error" {
				fs, _ := x["fields"].([]any)
				for _, f := range fs {
					fm, _ := f.(map[string]any)
					fname, _ := fm["name"].(string)
					ft, err := p.parse(fm["type"], ns)
					if err != nil {
						return nil, fmt.Errorf("field %q: %w", fname, err)
					}
					def, hasDef := fm["default"]
					t.fields = append(t.fields, avroField{name: fname, t: ft, def: def, hasDef: hasDef})
				}
			}
		case "array":
			it, err := p.parse(x["items"], ns)
			if err != nil {
				return nil, err
			}
			t.items = it
		case "map":
			it, err := p.parse(x["values"], ns)
			if err != nil {
				return nil, err
			}
			t.items = it
		default:
			// a primitive written as {"type": "long", "logicalType": ...}
		}
		return t, nil
	}
	return nil, fmt.Errorf("unexpected schema element %v", s)
}

// branchName is the key goavro uses for a union branch.
func (t *avroType) branchName() string {
	if t.name != "" {
		return t.name
	}
	if t.logical != "" {
		return t.kind + "." + t.logical
	}
	return t.kind
}

func (t *avroType) pipesSchema() *schema.Schema {
	s := &schema.Schema{}
	for _, f := range t.fields {
		sf := f.t.field(f.name)
		s.Fields = append(s.Fields, sf)
	}
	return s
}

func (t *avroType) field(name string) schema.SchemaField {
	f := schema.SchemaField{Name: name}
	if t.kind == "union" {
		var nonNull []*avroType
		for _, b := range t.union {
			if b.kind == "null" {
				f.Nullable = true
			} else {
				nonNull = append(nonNull, b)
			}
		}
		if len(nonNull) != 1 {
			f.Kind, f.Nullable = schema.Any, true
			return f
		}
		inner := nonNull[0].field(name)
		inner.Nullable = inner.Nullable || f.Nullable
		return inner
	}
	if t.logical != "" {
		f.Kind, f.Nullable = schema.Any, true
		return f
	}
	f.Kind = t.pipesKind()
	switch t.kind {
	case "record":
		f.Fields = t.pipesSchema()
	case "array", "map":
		f.Elem = t.items.pipesKind()
	}
	return f
}

func (t *avroType) pipesKind() schema.Kind {
	switch t.kind {
	case "string", "enum":
		return schema.String
	case "boolean":
		return schema.Bool
	case "int":
		return schema.Int32
	case "long":
		return schema.Int64
	case "float":
		return schema.Float32
	case "double":
		return schema.Float64
	case "bytes", "fixed":
		return schema.Bytes
	case "record":
		return schema.Struct
	case "array":
		return schema.Array
	case "map":
		return schema.Map
	}
	return schema.Any
}

func (c *avroCodec) Decode(b []byte) (any, error) {
	native, rest, err := c.codec.NativeFromBinary(b)
	if err != nil {
		return nil, fmt.Errorf("avro: %w", err)
	}
	if len(rest) > 0 {
		return nil, fmt.Errorf("avro: %d trailing bytes after the record", len(rest))
	}
	return unwrap(c.root, native), nil
}

func (c *avroCodec) AppendEncode(dst []byte, v any) ([]byte, error) {
	native, err := wrap(c.root, v)
	if err != nil {
		return dst, fmt.Errorf("avro: %w", err)
	}
	out, err := c.codec.BinaryFromNative(dst, native)
	if err != nil {
		return dst, fmt.Errorf("avro: %w", err)
	}
	return out, nil
}

func (c *avroCodec) Schema() *schema.Schema { return c.schema }

// unwrap turns goavro's native form into plain values, in place for maps.
func unwrap(t *avroType, v any) any {
	switch t.kind {
	case "union":
		m, ok := v.(map[string]any)
		if !ok || len(m) != 1 {
			return v
		}
		for name, inner := range m {
			for _, b := range t.union {
				if b.branchName() == name {
					return unwrap(b, inner)
				}
			}
			return inner
		}
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			return v
		}
		for _, f := range t.fields {
			if x, ok := m[f.name]; ok && needsConversion(f.t) {
				m[f.name] = unwrap(f.t, x)
			}
		}
	case "array":
		if s, ok := v.([]any); ok && needsConversion(t.items) {
			for i := range s {
				s[i] = unwrap(t.items, s[i])
			}
		}
	case "map":
		if m, ok := v.(map[string]any); ok && needsConversion(t.items) {
			for k, x := range m {
				m[k] = unwrap(t.items, x)
			}
		}
	}
	return v
}

// needsConversion reports whether values of t may contain unions.
func needsConversion(t *avroType) bool {
	switch t.kind {
	case "union", "record", "array", "map":
		return true
	}
	return false
}

// wrap turns plain values into goavro's native form. Records are copied, so
// the caller's value is not changed.
func wrap(t *avroType, v any) (any, error) {
	if t.noUnion && t.kind != "int" && t.kind != "long" {
		return v, nil // goavro takes it as it is
	}
	switch t.kind {
	case "union":
		if v == nil {
			return nil, nil
		}
		b := pickBranch(t.union, v)
		if b == nil {
			return nil, fmt.Errorf("no branch of union %v accepts a %T", branchNames(t.union), v)
		}
		inner, err := wrap(b, v)
		if err != nil {
			return nil, err
		}
		return map[string]any{b.branchName(): inner}, nil
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("record %s: want fields, got %T", t.name, v)
		}
		out := make(map[string]any, len(t.fields))
		for _, f := range t.fields {
			x, ok := m[f.name]
			if !ok {
				continue // goavro applies the field default or reports it missing
			}
			w, err := wrap(f.t, x)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.name, err)
			}
			out[f.name] = w
		}
		return out, nil
	case "array":
		s, ok := v.([]any)
		if !ok || !needsConversion(t.items) {
			return v, nil
		}
		out := make([]any, len(s))
		for i, x := range s {
			w, err := wrap(t.items, x)
			if err != nil {
				return nil, err
			}
			out[i] = w
		}
		return out, nil
	case "map":
		m, ok := v.(map[string]any)
		if !ok || !needsConversion(t.items) {
			return v, nil
		}
		out := make(map[string]any, len(m))
		for k, x := range m {
			w, err := wrap(t.items, x)
			if err != nil {
				return nil, err
			}
			out[k] = w
		}
		return out, nil
	case "int", "long":
		// JSON-derived numbers are float64; goavro accepts them only when
		// they are whole, and says so otherwise.
		if f, ok := v.(float64); ok && f == math.Trunc(f) {
			return int64(f), nil
		}
	}
	return v, nil
}

func branchNames(bs []*avroType) []string {
	var out []string
	for _, b := range bs {
		out = append(out, b.branchName())
	}
	return out
}

// pickBranch chooses the union branch for a plain Go value, preferring an
// exact type match over a numeric conversion.
func pickBranch(bs []*avroType, v any) *avroType {
	want := map[string]int{}
	switch x := v.(type) {
	case string:
		want = map[string]int{"string": 2, "enum": 1}
	case bool:
		want = map[string]int{"boolean": 2}
	case int32:
		want = map[string]int{"int": 3, "long": 2, "double": 1, "float": 1}
	case int, int64:
		want = map[string]int{"long": 3, "int": 2, "double": 1, "float": 1}
	case float32:
		want = map[string]int{"float": 3, "double": 2}
	case float64:
		want = map[string]int{"double": 3, "float": 2}
		if x == math.Trunc(x) {
			want["long"], want["int"] = 1, 1
		}
	case []byte:
		want = map[string]int{"bytes": 2, "fixed": 1}
	case map[string]any:
		want = map[string]int{"record": 2, "map": 1}
	case []any:
		want = map[string]int{"array": 2}
	default:
		// time.Time and other logical values: the first non-null branch.
		for _, b := range bs {
			if b.kind != "null" {
				return b
			}
		}
	}
	var best *avroType
	score := 0
	for _, b := range bs {
		if s := want[b.kind]; s > score {
			best, score = b, s
		}
	}
	return best
}
