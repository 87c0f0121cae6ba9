package pipes

import (
	"github.com/expr-lang/expr/types"

	"github.com/streamerio/streamer/schema"
)

// The schema vocabulary lives in package schema, which the serde layer
// imports without importing pipes; these aliases keep the names pipes has
// always exported.
type (
	// Kind is schema.Kind: the runtime type of a field value.
	Kind = schema.Kind
	// Schema is schema.Schema: the fields of a dataset's records.
	Schema = schema.Schema
	// SchemaField is schema.SchemaField: one field of a Schema.
	SchemaField = schema.SchemaField
)

// The kinds (see schema.Kind).
const (
	Any     = schema.Any
	String  = schema.String
	Bool    = schema.Bool
	Int32   = schema.Int32
	Int64   = schema.Int64
	Float32 = schema.Float32
	Float64 = schema.Float64
	Bytes   = schema.Bytes
	Struct  = schema.Struct
	Array   = schema.Array
	Map     = schema.Map
)

// KindOf returns the Kind of a runtime value (see schema.KindOf).
func KindOf(v any) Kind { return schema.KindOf(v) }

// exprType converts a schema to the expression checker's type description:
// a strict map, so that a misspelled field is a compile error.
func exprType(s *Schema) types.Map {
	m := types.Map{}
	for _, f := range s.Fields {
		m[f.Name] = fieldExprType(f)
	}
	return m
}

// A nullable field keeps its type: the checker still catches "name * 2" on a
// string, and "x == nil" or "x ?? 0" are allowed on any type.
func fieldExprType(f SchemaField) types.Type {
	switch f.Kind {
	case Struct:
		if f.Fields != nil {
			return exprType(f.Fields)
		}
		return types.TypeOf(map[string]any{})
	case Array:
		return types.Array(kindType(f.Elem))
	case Map:
		return types.TypeOf(map[string]any{})
	}
	return kindType(f.Kind)
}

func kindType(k Kind) types.Type {
	switch k {
	case String:
		return types.String
	case Bool:
		return types.Bool
	case Int32:
		return types.Int32
	case Int64:
		return types.Int64
	case Float32:
		return types.Float
	case Float64:
		return types.Float64
	case Bytes:
		return types.TypeOf([]byte(nil))
	}
	return types.Any
}
