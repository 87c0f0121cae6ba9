package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/streamerio/streamer/pipes"
)

// MapConfig configures the map pipe. The steps run in the order of the
// fields below; every compute expression, and key, sees the record as it
// came in.
type MapConfig struct {
	Key     *pipes.Expr            `yaml:"key" doc:"New record key: an expression whose value, as a string, replaces the key. A stateful pipe downstream then reads through a repartition topic, so that each new key's records meet in one partition."`
	Compute map[string]pipes.Expr  `yaml:"compute" doc:"Fields set to the result of an expression over the input record (dotted paths make nested fields)."`
	Set     map[string]any         `yaml:"set" doc:"Fields set to constant values."`
	Rename  map[string]pipes.Field `yaml:"rename" doc:"Fields renamed, old name: new name."`
	Drop    []pipes.Field          `yaml:"drop" doc:"Fields removed."`
}

func init() {
	pipes.MustRegister("map", pipes.Spec{
		Summary: "Computes, sets, renames and drops fields of each record.",
		Example: "key: customer_id\ncompute:\n  total: price * quantity\nset:\n  source: web\nrename:\n  cust: customer_id\ndrop: [debug]",
	}, newMap)
}

type computed struct {
	path string
	prog *pipes.Program
}

type mapPipe struct {
	key     *pipes.Program // nil: the key is kept
	compute []computed
	set     []setField
	rename  [][2]string
	drop    []string
	vals    []any // scratch for compute results
	schema  *pipes.Schema
}

type setField struct {
	path string
	val  any
}

func newMap(c MapConfig, env *pipes.Env) (pipes.Pipe, error) {
	m := &mapPipe{}
	var errs []error
	if c.Key != nil {
		p, err := env.Compile(*c.Key)
		if err != nil {
			errs = append(errs, err)
		}
		m.key = p
	}
	for _, k := range slices.Sorted(maps.Keys(c.Compute)) {
		p, err := env.Compile(c.Compute[k])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		m.compute = append(m.compute, computed{path: k, prog: p})
	}
	for _, k := range slices.Sorted(maps.Keys(c.Set)) {
		m.set = append(m.set, setField{path: k, val: c.Set[k]})
	}
	for _, k := range slices.Sorted(maps.Keys(c.Rename)) {
		to := c.Rename[k]
		if err := env.CheckField(pipes.Field{Name: k, Pos: to.Pos}); err != nil {
			errs = append(errs, err)
		}
		m.rename = append(m.rename, [2]string{k, to.Name})
	}
	for _, f := range c.Drop {
		if err := env.CheckField(f); err != nil {
			errs = append(errs, err)
		}
		m.drop = append(m.drop, f.Name)
	}
	if c.Key == nil && len(m.compute)+len(m.set)+len(m.rename)+len(m.drop) == 0 && len(errs) == 0 {
		return nil, errors.New("map has nothing to do: give at least one of key, compute, set, rename or drop")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.vals = make([]any, len(m.compute))
	m.schema = m.deriveSchema(env.InputSchema())
	return m, nil
}

func (m *mapPipe) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
next:
	for _, r := range b.Records {
		if _, ok := r.Value.(map[string]any); !ok {
			out.Fail(r, fmt.Errorf("map needs a record with fields, got %T", r.Value))
			continue
		}
		for i, c := range m.compute {
			v, err := c.prog.Eval(r)
			if err != nil {
				out.Fail(r, err)
				continue next
			}
			m.vals[i] = v
		}
		var key []byte
		if m.key != nil {
			v, err := m.key.Eval(r)
			if err == nil {
				key, err = keyBytes(v)
			}
			if err != nil {
				out.Fail(r, fmt.Errorf("key: %w", err))
				continue
			}
		}
		for i, c := range m.compute {
			if !pipes.SetPath(r.Value, c.path, m.vals[i]) {
				out.Fail(r, fmt.Errorf("cannot set %q: a non-record value is in the way", c.path))
				continue next
			}
		}
		for _, s := range m.set {
			if !pipes.SetPath(r.Value, s.path, pipes.CloneValue(s.val)) {
				out.Fail(r, fmt.Errorf("cannot set %q: a non-record value is in the way", s.path))
				continue next
			}
		}
		for _, rn := range m.rename {
			if v, ok := pipes.DeletePath(r.Value, rn[0]); ok {
				pipes.SetPath(r.Value, rn[1], v)
			}
		}
		for _, d := range m.drop {
			pipes.DeletePath(r.Value, d)
		}
		if m.key != nil {
			r.Key = key
		}
		out.Emit(0, r)
	}
	clear(m.vals)
	return nil
}

// deriveSchema applies the map's steps to the top-level fields of the input
// schema. Nested paths make the top field an untyped record.
func (m *mapPipe) deriveSchema(in *pipes.Schema) *pipes.Schema {
	if in == nil {
		return nil
	}
	s := in.Clone()
	top := func(p string) (string, bool) {
		h, _, nested := strings.Cut(p, ".")
		return h, nested
	}
	for _, c := range m.compute {
		if h, nested := top(c.path); nested {
			s.Set(pipes.SchemaField{Name: h, Kind: pipes.Struct})
		} else {
			s.Set(pipes.SchemaField{Name: h, Kind: c.prog.Kind(), Nullable: c.prog.Nullable()})
		}
	}
	for _, f := range m.set {
		if h, nested := top(f.path); nested {
			s.Set(pipes.SchemaField{Name: h, Kind: pipes.Struct})
		} else {
			s.Set(pipes.SchemaField{Name: h, Kind: pipes.KindOf(f.val), Nullable: f.val == nil})
		}
	}
	for _, rn := range m.rename {
		from, fn := top(rn[0])
		to, tn := top(rn[1])
		if fn || tn {
			continue
		}
		if f, ok := s.Field(from); ok {
			s.Delete(from)
			f.Name = to
			s.Set(f)
		}
	}
	for _, d := range m.drop {
		if h, nested := top(d); !nested {
			s.Delete(h)
		}
	}
	return s
}

func (m *mapPipe) OutputSchema(int) *pipes.Schema { return m.schema }

// ChangesKey tells the compiler that records leave with new keys, so that
// keyed state downstream is repartitioned.
func (m *mapPipe) ChangesKey() bool { return m.key != nil }

// keyBytes renders a key expression's value as the key's bytes: strings
// and bytes as they are, numbers and booleans as they print in JSON. A
// null or structured value is an error: it would scatter one logical key.
func keyBytes(v any) ([]byte, error) {
	switch x := v.(type) {
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	case bool:
		return strconv.AppendBool(nil, x), nil
	case float64:
		return strconv.AppendFloat(nil, x, 'f', -1, 64), nil
	case float32:
		return strconv.AppendFloat(nil, float64(x), 'f', -1, 32), nil
	case int:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case json.Number:
		return []byte(x), nil
	case nil:
		return nil, errors.New("the expression is null: a record needs a key to be repartitioned by")
	}
	return nil, fmt.Errorf("the expression gives %T; a key must be a string, number or boolean", v)
}

// fieldParts lists what the map reads and writes: its expressions, the
// paths it replaces or deletes whole, and the paths it moves (renames).
func (m *mapPipe) fieldParts() (progs []*pipes.Program, replaced, moved []string) {
	if m.key != nil {
		progs = append(progs, m.key)
	}
	for _, c := range m.compute {
		progs = append(progs, c.prog)
		replaced = append(replaced, c.path)
	}
	for _, s := range m.set {
		replaced = append(replaced, s.path)
	}
	for _, rn := range m.rename {
		moved = append(moved, rn[0], rn[1])
	}
	return progs, append(replaced, m.drop...), moved
}

func (m *mapPipe) UsedFields() ([]string, bool) {
	progs, replaced, moved := m.fieldParts()
	return pipes.UsedFields(progs, append(replaced, moved...)...)
}

func (m *mapPipe) ShallowFields() []string {
	progs, replaced, moved := m.fieldParts()
	return pipes.ShallowFields(progs, replaced, moved...)
}

var (
	_ pipes.SchemaDeriver = (*mapPipe)(nil)
	_ pipes.FieldUser     = (*mapPipe)(nil)
	_ pipes.ShallowReader = (*mapPipe)(nil)
	_ pipes.KeyChanger    = (*mapPipe)(nil)
)
