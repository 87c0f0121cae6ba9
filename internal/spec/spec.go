// Package spec turns Go config structs into a YAML decoder that reports every
// problem with its line and column, and into a JSON Schema.
//
// One struct type is the single source of truth for a pipe's configuration:
// the decoder, the lint and the JSON Schema all read the same struct tags, so
// they cannot drift apart. The tags are:
//
//	yaml:"name"          the key in YAML (required: untagged exported fields are an error)
//	doc:"..."            one line of documentation (JSON Schema description)
//	required:"true"      the key must be present
//	default:"..."        the value used when the key is absent (YAML syntax)
//	enum:"a,b,c"         the allowed values of a string field
//	spec:"pos"           on a Pos field tagged yaml:"-": receives the
//	                     position of the struct's mapping
//
// Supported field types: string, bool, signed integers, float64,
// time.Duration (written "100ms"), Expr, Field, any (a raw YAML value),
// yaml.Node (kept raw for the caller),
// slices (a scalar is accepted as a one-element list), map[string]T, nested
// structs and pointers to them.
package spec

import (
	"fmt"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Pos is a position in a YAML file. Line and Col are 1-based; the zero Pos
// means "unknown".
type Pos struct {
	Line, Col int
}

// IsValid reports whether p names a real position.
func (p Pos) IsValid() bool { return p.Line > 0 }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }

// PosOf returns the position of a YAML node.
func PosOf(n *yaml.Node) Pos {
	if n == nil {
		return Pos{}
	}
	return Pos{Line: n.Line, Col: n.Column}
}

// Expr is an expression in a config file. Its position is kept so that a
// compile error inside the expression points at the right column of the file.
type Expr struct {
	Src string
	Pos Pos
	// Offset is added to a column inside Src to get the file column: 1 for a
	// quoted scalar, 0 for a plain one.
	Offset int
}

// Field names a field of a record, with the position it was written at, so
// that a reference to a field the schema lacks can be reported precisely.
type Field struct {
	Name string
	Pos  Pos
}

// KV is one entry of an ordered mapping: a slice of KV decodes from a YAML
// mapping, keeping the keys' order and positions.
type KV[T any] struct {
	Key    string
	KeyPos Pos
	Value  T
}

func (KV[T]) keyed() {}

// KeyField returns the entry's key as a Field at the key's position, for
// checks that report a bad key where it was written.
func (kv KV[T]) KeyField() Field { return Field{Name: kv.Key, Pos: kv.KeyPos} }

// keyed marks KV types for the decoder.
type keyed interface{ keyed() }

var keyedType = reflect.TypeOf((*keyed)(nil)).Elem()

// Error is one problem found at a position.
type Error struct {
	Pos Pos
	Msg string
}

func (e *Error) Error() string {
	if !e.Pos.IsValid() {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Errorf returns an *Error at pos.
func Errorf(pos Pos, format string, args ...any) *Error {
	return &Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}
}

// Flatten splits err (which may be joined or wrapped, errors.Join style) into
// positioned errors. Errors that carry no position get def.
func Flatten(err error, def Pos) []*Error {
	if err == nil {
		return nil
	}
	if e, ok := err.(*Error); ok {
		if !e.Pos.IsValid() {
			return []*Error{{Pos: def, Msg: e.Msg}}
		}
		return []*Error{e}
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*Error
		for _, e := range j.Unwrap() {
			out = append(out, Flatten(e, def)...)
		}
		return out
	}
	return []*Error{{Pos: def, Msg: err.Error()}}
}

var (
	exprType     = reflect.TypeOf(Expr{})
	fieldType    = reflect.TypeOf(Field{})
	durationType = reflect.TypeOf(time.Duration(0))
	anyType      = reflect.TypeOf((*any)(nil)).Elem()
	nodeType     = reflect.TypeOf(yaml.Node{})
)

// Decode decodes node into the struct pointed to by out, applying defaults,
// and returns every problem it found. It keeps going after an error so that a
// user sees all of them at once.
func Decode(node *yaml.Node, out any) []*Error {
	v := reflect.ValueOf(out)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic(fmt.Sprintf("spec.Decode: want pointer to struct, got %T", out))
	}
	d := &decoder{}
	if node == nil {
		node = &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	}
	d.value(node, v.Elem())
	return d.errs
}

type decoder struct {
	errs []*Error
	key  string // the key whose value is being decoded, "" in lists
	doc  string // that key's doc, when it is a struct field's
}

func (d *decoder) errorf(n *yaml.Node, format string, args ...any) {
	d.errs = append(d.errs, Errorf(PosOf(n), format, args...))
}

// resolve follows aliases and unwraps document nodes.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && (n.Kind == yaml.AliasNode || n.Kind == yaml.DocumentNode) {
		if n.Kind == yaml.AliasNode {
			n = n.Alias
		} else if len(n.Content) > 0 {
			n = n.Content[0]
		} else {
			return nil
		}
	}
	return n
}

func kindName(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return "null"
		}
		return fmt.Sprintf("%q", n.Value)
	}
	return "a value"
}

func (d *decoder) value(n *yaml.Node, v reflect.Value) {
	n = resolve(n)
	if n == nil {
		return
	}
	t := v.Type()
	switch t {
	case exprType:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.errorf(n, "want an expression (a string), got %s", kindName(n))
			return
		}
		off := 0
		if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			off = 1
		}
		v.Set(reflect.ValueOf(Expr{Src: n.Value, Pos: PosOf(n), Offset: off}))
		return
	case fieldType:
		if n.Kind != yaml.ScalarNode || n.Value == "" {
			d.errorf(n, "want a field name, got %s", kindName(n))
			return
		}
		v.Set(reflect.ValueOf(Field{Name: n.Value, Pos: PosOf(n)}))
		return
	case durationType:
		d.duration(n, v)
		return
	case nodeType:
		// Kept raw, for the caller to decode itself.
		v.Set(reflect.ValueOf(*n))
		return
	case anyType:
		var x any
		if err := n.Decode(&x); err != nil {
			d.errorf(n, "%v", err)
			return
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
		return
	}
	switch t.Kind() {
	case reflect.Pointer:
		if n.Tag == "!!null" {
			return
		}
		nv := reflect.New(t.Elem())
		d.value(n, nv.Elem())
		v.Set(nv)
	case reflect.Struct:
		d.structure(n, v)
	case reflect.Slice:
		if t.Elem().Implements(keyedType) {
			d.ordered(n, v)
			return
		}
		if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
			// A single value where a list is expected: a list of one.
			s := reflect.MakeSlice(t, 1, 1)
			d.value(n, s.Index(0))
			v.Set(s)
			return
		}
		if n.Kind != yaml.SequenceNode {
			d.wantShape(n, "a list", t)
			return
		}
		s := reflect.MakeSlice(t, len(n.Content), len(n.Content))
		key, doc := d.key, d.doc
		d.key, d.doc = "", ""
		for i, c := range n.Content {
			d.value(c, s.Index(i))
		}
		d.key, d.doc = key, doc
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.wantShape(n, "a mapping", t)
			return
		}
		m := reflect.MakeMapWithSize(t, len(n.Content)/2)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, val := n.Content[i], n.Content[i+1]
			if m.MapIndex(reflect.ValueOf(k.Value)).IsValid() {
				d.errorf(k, "duplicate key %q", k.Value)
				continue
			}
			ev := reflect.New(t.Elem()).Elem()
			key, doc := d.key, d.doc
			d.key, d.doc = k.Value, ""
			d.value(val, ev)
			d.key, d.doc = key, doc
			m.SetMapIndex(reflect.ValueOf(k.Value).Convert(t.Key()), ev)
		}
		v.Set(m)
	case reflect.String:
		if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
			d.errorf(n, "want a string, got %s", kindName(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Bool:
		b, err := strconv.ParseBool(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.errorf(n, "want true or false, got %s", kindName(n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int32, reflect.Int64:
		i, err := strconv.ParseInt(n.Value, 0, t.Bits())
		if n.Kind != yaml.ScalarNode || err != nil {
			d.errorf(n, "want a whole number, got %s", kindName(n))
			return
		}
		v.SetInt(i)
	case reflect.Float64:
		f, err := strconv.ParseFloat(n.Value, 64)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.errorf(n, "want a number, got %s", kindName(n))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("spec: unsupported field type %s", t))
	}
}

// ordered decodes a mapping into a []KV[T], in the file's order.
func (d *decoder) ordered(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		if n.Tag != "!!null" {
			d.wantShape(n, "a mapping", v.Type())
		}
		return
	}
	t := v.Type()
	s := reflect.MakeSlice(t, 0, len(n.Content)/2)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			d.errorf(k, "duplicate key %q", k.Value)
			continue
		}
		seen[k.Value] = true
		e := reflect.New(t.Elem()).Elem()
		e.FieldByName("Key").SetString(k.Value)
		e.FieldByName("KeyPos").Set(reflect.ValueOf(PosOf(k)))
		key, doc := d.key, d.doc
		d.key, d.doc = k.Value, ""
		d.value(val, e.FieldByName("Value"))
		d.key, d.doc = key, doc
		s = reflect.Append(s, e)
	}
	v.Set(s)
}

// Fields describes the YAML keys of a struct type, in declaration order.
type fieldInfo struct {
	Key      string
	Index    int
	Doc      string
	Required bool
	Default  string
	Enum     []string
}

func fieldsOf(t reflect.Type) []fieldInfo {
	var out []fieldInfo
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if key == "-" {
			continue
		}
		if key == "" {
			panic(fmt.Sprintf("spec: field %s.%s has no yaml tag", t, f.Name))
		}
		fi := fieldInfo{Key: key, Index: i, Doc: f.Tag.Get("doc"), Required: f.Tag.Get("required") == "true", Default: f.Tag.Get("default")}
		if e := f.Tag.Get("enum"); e != "" {
			fi.Enum = strings.Split(e, ",")
		}
		out = append(out, fi)
	}
	return out
}

// Keys returns the YAML keys a struct type accepts, for "did you mean" hints.
func Keys(t reflect.Type) []string {
	var ks []string
	for _, f := range fieldsOf(t) {
		ks = append(ks, f.Key)
	}
	return ks
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value) {
	if n.Kind != yaml.MappingNode {
		if n.Tag == "!!null" {
			n = &yaml.Node{Kind: yaml.MappingNode, Line: n.Line, Column: n.Column}
		} else {
			d.wantShape(n, "a mapping", v.Type())
			return
		}
	}
	key, doc := d.key, d.doc
	defer func() { d.key, d.doc = key, doc }()
	for i := 0; i < v.NumField(); i++ {
		if v.Type().Field(i).Tag.Get("spec") == "pos" {
			v.Field(i).Set(reflect.ValueOf(PosOf(n)))
		}
	}
	fields := fieldsOf(v.Type())
	byKey := make(map[string]fieldInfo, len(fields))
	for _, f := range fields {
		byKey[f.Key] = f
	}
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		f, ok := byKey[k.Value]
		if !ok {
			d.errorf(k, "unknown field %q%s", k.Value, DidYouMean(k.Value, Keys(v.Type())))
			continue
		}
		if seen[k.Value] {
			d.errorf(k, "duplicate field %q", k.Value)
			continue
		}
		seen[k.Value] = true
		d.key, d.doc = k.Value, f.Doc
		d.value(val, v.Field(f.Index))
		if len(f.Enum) > 0 {
			d.enum(val, v.Field(f.Index), f.Enum)
		}
	}
	for _, f := range fields {
		if seen[f.Key] {
			continue
		}
		if f.Required {
			d.errorf(n, "missing required field %q", f.Key)
			continue
		}
		if f.Default != "" {
			var dn yaml.Node
			if err := yaml.Unmarshal([]byte(f.Default), &dn); err != nil {
				panic(fmt.Sprintf("spec: bad default %q for %s: %v", f.Default, f.Key, err))
			}
			sub := &decoder{}
			sub.value(&dn, v.Field(f.Index))
			if len(sub.errs) > 0 {
				panic(fmt.Sprintf("spec: bad default %q for %s: %v", f.Default, f.Key, sub.errs[0]))
			}
		}
	}
}

func (d *decoder) enum(n *yaml.Node, v reflect.Value, allowed []string) {
	if v.Kind() != reflect.String || v.String() == "" {
		return
	}
	for _, a := range allowed {
		if v.String() == a {
			return
		}
	}
	d.errorf(resolve(n), "%q is not one of %s%s", v.String(), strings.Join(allowed, ", "), DidYouMean(v.String(), allowed))
}

// DidYouMean returns ` (did you mean "x"?)` when one of candidates is close
// to s, and "" otherwise.
func DidYouMean(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD || (d == bestD && c < best) {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > len(s)/2 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours each cost 1, so "mpa" is
// one edit from "map".
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// SortErrors orders errors by position, keeping the order of equal ones.
func SortErrors(errs []*Error) {
	sort.SliceStable(errs, func(i, j int) bool {
		a, b := errs[i].Pos, errs[j].Pos
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Col < b.Col
	})
}
