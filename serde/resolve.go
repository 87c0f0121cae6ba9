package serde

import (
	"fmt"
	"math"
	"slices"
)

// conform turns a value decoded with a writer's schema into the reader
// schema's shape, by Avro's schema resolution rules: fields the reader lacks
// are dropped, fields the writer lacks take the reader's default, numbers
// are promoted (int to long, float or double; long to float or double;
// float to double), strings and bytes convert, and enum symbols must exist
// in the reader. Values are plain (unions unwrapped), as Decode returns them.
func conform(r *avroType, v any) (any, error) {
	switch r.kind {
	case "union":
		if v == nil {
			for _, b := range r.union {
				if b.kind == "null" {
					return nil, nil
				}
			}
			return nil, fmt.Errorf("null where the reader's union %v has no null", branchNames(r.union))
		}
		var errs []error
		for _, b := range orderBranches(r.union, v) {
			out, err := conform(b, v)
			if err == nil {
				return out, nil
			}
			errs = append(errs, err)
		}
		return nil, fmt.Errorf("no branch of the reader's union %v accepts %T: %v", branchNames(r.union), v, errs)
	case "null":
		if v != nil {
			return nil, fmt.Errorf("%T where the reader wants null", v)
		}
		return nil, nil
	case "record":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%T where the reader wants record %s", v, r.name)
		}
		out := make(map[string]any, len(r.fields))
		for _, f := range r.fields {
			x, ok := m[f.name]
			if !ok {
				if !f.hasDef {
					return nil, fmt.Errorf("field %q: the writer's data lacks it and the reader's schema gives no default", f.name)
				}
				d, err := defaultValue(f.t, f.def)
				if err != nil {
					return nil, fmt.Errorf("field %q: default: %w", f.name, err)
				}
				out[f.name] = d
				continue
			}
			c, err := conform(f.t, x)
			if err != nil {
				return nil, fmt.Errorf("field %q: %w", f.name, err)
			}
			out[f.name] = c
		}
		return out, nil
	case "array":
		s, ok := v.([]any)
		if !ok {
			return nil, fmt.Errorf("%T where the reader wants an array", v)
		}
		out := make([]any, len(s))
		for i, x := range s {
			c, err := conform(r.items, x)
			if err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
			out[i] = c
		}
		return out, nil
	case "map":
		m, ok := v.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%T where the reader wants a map", v)
		}
		out := make(map[string]any, len(m))
		for k, x := range m {
			c, err := conform(r.items, x)
			if err != nil {
				return nil, fmt.Errorf("[%q]: %w", k, err)
			}
			out[k] = c
		}
		return out, nil
	case "enum":
		s, ok := v.(string)
		if !ok || !slices.Contains(r.symbols, s) {
			return nil, fmt.Errorf("%v is not a symbol of the reader's enum %s", v, r.name)
		}
		return s, nil
	}
	return promote(r.kind, v)
}

// promote converts a primitive to the reader's type where Avro allows it.
func promote(kind string, v any) (any, error) {
	switch kind {
	case "boolean":
		if b, ok := v.(bool); ok {
			return b, nil
		}
	case "int":
		if i, ok := v.(int32); ok {
			return i, nil
		}
	case "long":
		switch x := v.(type) {
		case int32:
			return int64(x), nil
		case int64:
			return x, nil
		}
	case "float":
		switch x := v.(type) {
		case int32:
			return float32(x), nil
		case int64:
			return float32(x), nil
		case float32:
			return x, nil
		}
	case "double":
		switch x := v.(type) {
		case int32:
			return float64(x), nil
		case int64:
			return float64(x), nil
		case float32:
			return float64(x), nil
		case float64:
			return x, nil
		}
	case "string":
		switch x := v.(type) {
		case string:
			return x, nil
		case []byte:
			return string(x), nil
		}
	case "bytes", "fixed":
		switch x := v.(type) {
		case []byte:
			return x, nil
		case string:
			return []byte(x), nil
		}
	default:
		return v, nil // logical types and the like: as the writer gave them
	}
	return nil, fmt.Errorf("%T where the reader wants %s", v, kind)
}

// orderBranches tries the branch that matches the value's type first.
func orderBranches(bs []*avroType, v any) []*avroType {
	best := pickBranch(bs, v)
	out := []*avroType{}
	if best != nil {
		out = append(out, best)
	}
	for _, b := range bs {
		if b != best && b.kind != "null" {
			out = append(out, b)
		}
	}
	return out
}

// defaultValue turns a field default, as JSON decoded it, into the plain
// value Decode would give. A union's default belongs to its first branch.
func defaultValue(t *avroType, d any) (any, error) {
	if t.kind == "union" {
		return defaultValue(t.union[0], d)
	}
	switch t.kind {
	case "null":
		return nil, nil
	case "int":
		f, ok := d.(float64)
		if !ok || f != math.Trunc(f) {
			return nil, fmt.Errorf("%v is not an int", d)
		}
		return int32(f), nil
	case "long":
		f, ok := d.(float64)
		if !ok || f != math.Trunc(f) {
			return nil, fmt.Errorf("%v is not a long", d)
		}
		return int64(f), nil
	case "float":
		f, ok := d.(float64)
		if !ok {
			return nil, fmt.Errorf("%v is not a float", d)
		}
		return float32(f), nil
	case "bytes", "fixed":
		s, ok := d.(string)
		if !ok {
			return nil, fmt.Errorf("%v is not bytes", d)
		}
		return []byte(s), nil
	case "record":
		m, ok := d.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("%v is not a record", d)
		}
		return conformDefault(t, m)
	case "array":
		s, _ := d.([]any)
		out := make([]any, len(s))
		for i, x := range s {
			v, err := defaultValue(t.items, x)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	case "map":
		m, _ := d.(map[string]any)
		out := make(map[string]any, len(m))
		for k, x := range m {
			v, err := defaultValue(t.items, x)
			if err != nil {
				return nil, err
			}
			out[k] = v
		}
		return out, nil
	}
	return d, nil // boolean, double, string, enum: JSON already has the type
}

func conformDefault(t *avroType, m map[string]any) (any, error) {
	out := make(map[string]any, len(t.fields))
	for _, f := range t.fields {
		x, ok := m[f.name]
		if !ok {
			x, ok = f.def, f.hasDef
		}
		if !ok {
			return nil, fmt.Errorf("field %q has no value or default", f.name)
		}
		v, err := defaultValue(f.t, x)
		if err != nil {
			return nil, err
		}
		out[f.name] = v
	}
	return out, nil
}
