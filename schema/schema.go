// Package schema owns the description of a dataset's record fields (Schema,
// SchemaField) and the runtime kinds of their values (Kind). It is the small
// vocabulary that the serde layer produces and pipes type-check against;
// it imports nothing of streamer's, so both can depend on it.
package schema

// Kind is the runtime type of a field value, as the serde layer produces it:
// JSON whole numbers decode as Int64 and other numbers as Float64; Avro int,
// long, float and double as Int32, Int64, Float32 and Float64.
type Kind int

// The kinds.
const (
	Any Kind = iota
	String
	Bool
	Int32
	Int64
	Float32
	Float64
	Bytes
	Struct
	Array
	Map
)

var kindNames = [...]string{"any", "string", "bool", "int32", "int64", "float32", "float64", "bytes", "struct", "array", "map"}

func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return "unknown"
}

// Schema describes the fields of a dataset's records, when the dataset
// declares a schema. A nil *Schema means "unknown": expressions over it are
// not type-checked and any field name is accepted.
type Schema struct {
	Fields []SchemaField
}

// SchemaField is one field of a Schema.
type SchemaField struct {
	Name     string
	Kind     Kind
	Nullable bool
	Fields   *Schema // the nested fields, when Kind is Struct
	Elem     Kind    // the element kind, when Kind is Array or Map
}

// Field returns the named field and whether it exists.
func (s *Schema) Field(name string) (SchemaField, bool) {
	if s == nil {
		return SchemaField{}, false
	}
	for _, f := range s.Fields {
		if f.Name == name {
			return f, true
		}
	}
	return SchemaField{}, false
}

// Names returns the field names in declaration order.
func (s *Schema) Names() []string {
	if s == nil {
		return nil
	}
	out := make([]string, len(s.Fields))
	for i, f := range s.Fields {
		out[i] = f.Name
	}
	return out
}

// Clone returns a deep copy, so a pipe can derive its output schema from its
// input without changing the input.
func (s *Schema) Clone() *Schema {
	if s == nil {
		return nil
	}
	out := &Schema{Fields: make([]SchemaField, len(s.Fields))}
	for i, f := range s.Fields {
		f.Fields = f.Fields.Clone()
		out.Fields[i] = f
	}
	return out
}

// Set adds or replaces a field.
func (s *Schema) Set(f SchemaField) {
	for i := range s.Fields {
		if s.Fields[i].Name == f.Name {
			s.Fields[i] = f
			return
		}
	}
	s.Fields = append(s.Fields, f)
}

// Delete removes a field if present.
func (s *Schema) Delete(name string) {
	for i := range s.Fields {
		if s.Fields[i].Name == name {
			s.Fields = append(s.Fields[:i], s.Fields[i+1:]...)
			return
		}
	}
}

// KindOf returns the Kind of a runtime value.
func KindOf(v any) Kind {
	switch v.(type) {
	case string:
		return String
	case bool:
		return Bool
	case int32:
		return Int32
	case int, int64:
		return Int64
	case float32:
		return Float32
	case float64:
		return Float64
	case []byte:
		return Bytes
	case map[string]any:
		return Struct
	case []any:
		return Array
	}
	return Any
}
