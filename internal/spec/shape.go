package spec

import (
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// shape renders what a value of type t looks like in YAML flow style, for
// messages that show the expected shape: {name: field}, [text, ...].
func shape(t reflect.Type) string {
	switch t {
	case exprType:
		return "expression"
	case fieldType:
		return "field"
	case durationType:
		return "5s"
	case anyType, nodeType:
		return "value"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return shape(t.Elem())
	case reflect.Struct:
		var keys []string
		for _, f := range fieldsOf(t) {
			if f.Required {
				keys = append(keys, f.Key+": "+shape(t.Field(f.Index).Type))
			}
		}
		if len(keys) == 0 {
			for _, f := range fieldsOf(t) {
				keys = append(keys, f.Key+": "+shape(t.Field(f.Index).Type))
				if len(keys) == 2 {
					break
				}
			}
		}
		return "{" + strings.Join(keys, ", ") + "}"
	case reflect.Slice:
		if t.Elem().Implements(keyedType) {
			return "{name: " + shape(t.Elem().Field(t.Elem().NumField()-1).Type) + "}"
		}
		return "[" + shape(t.Elem()) + ", ...]"
	case reflect.Map:
		return "{name: " + shape(t.Elem()) + "}"
	case reflect.String:
		return "text"
	case reflect.Bool:
		return "true"
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "1"
	case reflect.Float64:
		return "1.5"
	}
	return "value"
}

// wantShape reports a value of the wrong kind where a mapping or a list of
// type t is wanted, and shows how to write it. A list of names where a
// mapping to names or fields is wanted (fields: [a, b]) is shown as the
// mapping it most likely means: {a: a, b: b}.
func (d *decoder) wantShape(n *yaml.Node, want string, t reflect.Type) {
	example := shape(t)
	if t.Kind() == reflect.Map && n.Kind == yaml.SequenceNode && len(n.Content) > 0 {
		if el := shape(t.Elem()); el == "field" || el == "text" {
			pairs := make([]string, 0, len(n.Content))
			for _, c := range n.Content {
				if c.Kind != yaml.ScalarNode {
					pairs = nil
					break
				}
				pairs = append(pairs, c.Value+": "+c.Value)
			}
			if pairs != nil {
				example = "{" + strings.Join(pairs, ", ") + "}"
			}
		}
	}
	about := ""
	if d.doc != "" {
		about = " (" + strings.TrimSuffix(d.doc, ".") + ")"
	}
	d.errorf(n, "%swant %s, got %s; write it as %s%s", d.prefix(), want, kindName(n), example, about)
}

// prefix is "key: " for messages about the value of the key being
// decoded, or "" at the top level and in lists.
func (d *decoder) prefix() string {
	if d.key == "" {
		return ""
	}
	return d.key + ": "
}

// duration decodes a duration, saying what is wrong with a bad one.
func (d *decoder) duration(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.ScalarNode {
		d.errorf(n, "%swant a duration such as 100ms, 5s or 1m, got %s", d.prefix(), kindName(n))
		return
	}
	dur, err := time.ParseDuration(n.Value)
	switch {
	case err != nil:
		d.errorf(n, "%s%q is not a duration: write a number and a unit, with no space, such as 100ms, 5s, 1m or 1h", d.prefix(), n.Value)
	case dur < 0:
		d.errorf(n, "%sa duration cannot be negative, got %s", d.prefix(), n.Value)
	default:
		v.SetInt(int64(dur))
	}
}
