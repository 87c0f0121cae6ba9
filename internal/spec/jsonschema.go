package spec

import (
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Schema is a JSON Schema document (draft 2020-12), as a plain map so that it
// marshals deterministically (encoding/json sorts map keys).
type Schema = map[string]any

// JSONSchema returns the JSON Schema of a config struct type, built from the
// same tags that Decode reads.
func JSONSchema(t reflect.Type) Schema {
	switch t {
	case exprType:
		return Schema{"type": "string", "description": "An expression (expr-lang syntax) over the record's fields."}
	case fieldType:
		return Schema{"type": "string", "minLength": 1}
	case durationType:
		return Schema{"type": "string", "pattern": `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$`}
	case anyType, nodeType:
		return Schema{}
	}
	switch t.Kind() {
	case reflect.Pointer:
		return JSONSchema(t.Elem())
	case reflect.Struct:
		props := Schema{}
		var required []string
		for _, f := range fieldsOf(t) {
			s := JSONSchema(t.Field(f.Index).Type)
			if f.Doc != "" {
				s["description"] = f.Doc
			}
			if len(f.Enum) > 0 {
				s["enum"] = f.Enum
			}
			if f.Default != "" {
				var dv any
				if yaml.Unmarshal([]byte(f.Default), &dv) == nil {
					s["default"] = dv
				}
			}
			props[f.Key] = s
			if f.Required {
				required = append(required, f.Key)
			}
		}
		s := Schema{"type": "object", "properties": props, "additionalProperties": false}
		if len(required) > 0 {
			s["required"] = required
		}
		return s
	case reflect.Slice:
		if t.Elem().Implements(keyedType) {
			f, _ := t.Elem().FieldByName("Value")
			return Schema{"type": "object", "additionalProperties": JSONSchema(f.Type)}
		}
		item := JSONSchema(t.Elem())
		return Schema{"anyOf": []any{Schema{"type": "array", "items": item}, item}}
	case reflect.Map:
		return Schema{"type": "object", "additionalProperties": JSONSchema(t.Elem())}
	case reflect.String:
		return Schema{"type": "string"}
	case reflect.Bool:
		return Schema{"type": "boolean"}
	case reflect.Int, reflect.Int32, reflect.Int64:
		return Schema{"type": "integer"}
	case reflect.Float64:
		return Schema{"type": "number"}
	}
	panic("spec: unsupported type " + t.String())
}

// Describe returns a short plain-text reference of a config struct's keys, for
// generated docs and --help output.
func Describe(t reflect.Type, indent string) string {
	var b strings.Builder
	for _, f := range fieldsOf(t) {
		b.WriteString(indent + f.Key)
		var notes []string
		if f.Required {
			notes = append(notes, "required")
		}
		if f.Default != "" {
			notes = append(notes, "default "+f.Default)
		}
		if len(f.Enum) > 0 {
			notes = append(notes, "one of "+strings.Join(f.Enum, "|"))
		}
		if len(notes) > 0 {
			b.WriteString(" (" + strings.Join(notes, ", ") + ")")
		}
		if f.Doc != "" {
			b.WriteString(": " + f.Doc)
		}
		b.WriteString("\n")
	}
	return b.String()
}
