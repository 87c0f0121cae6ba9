package builtin

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/pipes"
)

// JoinConfig configures the join pipe.
type JoinConfig struct {
	Table  pipes.Field            `yaml:"table" required:"true" doc:"The table dataset to look records up in: a dataset declared with table: partitioned or table: global."`
	On     *pipes.Expr            `yaml:"on" doc:"Expression giving the lookup key (a string, bytes or a number), for global tables only. Default: the record key. A partitioned table is looked up by the record key, the only key it is co-partitioned with."`
	Type   string                 `yaml:"type" default:"inner" enum:"inner,left" doc:"inner drops records without a match; left passes them on with the joined fields null."`
	Fields map[string]pipes.Field `yaml:"fields" doc:"Output fields set from the table value: output field: table value field."`
	Into   *pipes.Field           `yaml:"into" doc:"A field receiving the whole table value. Give fields: or into:, not both."`
	Pos    pipes.Pos              `yaml:"-" spec:"pos"`
}

func init() {
	pipes.MustRegister("join", pipes.Spec{
		Summary: "Enriches each record with the current value of its key in a table dataset (a compacted topic): inner or left, selected fields or the whole value.",
		Example: "table: customers\ntype: left\nfields:\n  customer_name: name\n  segment: segment",
	}, newJoin)
}

type joinField struct {
	out, from string
}

type join struct {
	table  pipes.Table
	name   string
	on     *pipes.Program
	left   bool
	adds   joinAdds
	schema *pipes.Schema
}

// joinAdds is what a join adds to a record from the value it matched
// (another record's, or a table's): some of its fields, under output
// names (fields:), or the whole value in one field (into:). The join and
// stream_join pipes share it.
type joinAdds struct {
	fields []joinField
	into   string
}

// newJoinAdds checks a join's fields: and into: against the schema of the
// values joined (nil: unknown). other names those values in errors, such as
// `table "customers"`; noun is the word for them in hints ("table").
func newJoinAdds(fields map[string]pipes.Field, into *pipes.Field, pos pipes.Pos, schema *pipes.Schema, other, noun string) (joinAdds, []error) {
	var a joinAdds
	var errs []error
	switch {
	case into != nil && len(fields) > 0:
		errs = append(errs, pipes.Errorf(into.Pos, "give fields: or into:, not both"))
	case into == nil && len(fields) == 0:
		errs = append(errs, pipes.Errorf(pos, "say what the join adds: fields: (output field: %[1]s field) or into: (a field for the whole %[1]s value)", noun))
	case into != nil:
		if into.Name == "" {
			errs = append(errs, pipes.Errorf(into.Pos, "into: needs a field name"))
		}
		a.into = into.Name
	}
	for _, out := range slices.Sorted(maps.Keys(fields)) {
		f := fields[out]
		if schema != nil {
			if _, ok := schema.Field(f.Name); !ok {
				errs = append(errs, pipes.Errorf(f.Pos, "%s has no field %q%s", other, f.Name, spec.DidYouMean(f.Name, schema.Names())))
				continue
			}
		}
		a.fields = append(a.fields, joinField{out: out, from: f.Name})
	}
	return a, errs
}

// schema is the schema in plus the joined fields, given the schema of the
// values joined (nil: unknown). They are nullable: a left join leaves them
// null without a match, and a value may lack a field.
func (a *joinAdds) schema(in, joined *pipes.Schema) *pipes.Schema {
	if in == nil {
		return nil
	}
	out := in.Clone()
	if a.into != "" {
		f := pipes.SchemaField{Name: a.into, Kind: pipes.Any, Nullable: true}
		if joined != nil {
			f.Kind, f.Fields = pipes.Struct, joined.Clone()
		}
		out.Set(f)
		return out
	}
	for _, jf := range a.fields {
		f := pipes.SchemaField{Name: jf.out, Kind: pipes.Any, Nullable: true}
		if tf, ok := joined.Field(jf.from); ok {
			tf.Name, tf.Nullable = jf.out, true
			f = tf
		}
		out.Set(f)
	}
	return out
}

// apply sets the joined fields of m from v, the value matched, or to null
// when found is false. It reports false, changing nothing, when fields:
// needs v to be an object and it is not.
func (a *joinAdds) apply(m map[string]any, v any, found bool) bool {
	if a.into != "" {
		if !found {
			v = nil
		}
		m[a.into] = v
		return true
	}
	var vm map[string]any
	if found {
		var ok bool
		if vm, ok = v.(map[string]any); !ok {
			return false
		}
	}
	for _, f := range a.fields {
		m[f.out] = vm[f.from] // nil when absent or unmatched
	}
	return true
}

// written returns the output fields that apply sets.
func (a *joinAdds) written() []string {
	paths := make([]string, 0, len(a.fields)+1)
	for _, f := range a.fields {
		paths = append(paths, f.out)
	}
	if a.into != "" {
		paths = append(paths, a.into)
	}
	return paths
}

func newJoin(c JoinConfig, env *pipes.Env) (pipes.Pipe, error) {
	j := &join{name: c.Table.Name, left: c.Type == "left"}
	var errs []error
	t, err := env.Table(c.Table.Name)
	if err != nil {
		return nil, pipes.Errorf(c.Table.Pos, "table: %v", err)
	}
	j.table = t
	ts := t.Schema()
	var addErrs []error
	j.adds, addErrs = newJoinAdds(c.Fields, c.Into, c.Pos, ts, fmt.Sprintf("table %q", c.Table.Name), "table")
	errs = append(errs, addErrs...)
	if c.On != nil {
		if t.Partitioned() {
			errs = append(errs, pipes.Errorf(c.On.Pos, "on: table %q is partitioned, so it is looked up by the record key, the only key co-partitioned with it: remove on:, or declare the table global (table: global) to look it up by any key", c.Table.Name))
		} else if j.on, err = env.Compile(*c.On); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		_ = j.Close() // release the table opened above
		return nil, errors.Join(errs...)
	}
	j.schema = j.adds.schema(env.InputSchema(), ts)
	return j, nil
}

func (j *join) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		m, ok := r.Value.(map[string]any)
		if !ok {
			out.Fail(r, fmt.Errorf("join needs records whose values are objects, got %T", r.Value))
			continue
		}
		key, err := j.key(r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		var tv any
		found := false
		if key != nil {
			if tv, found, err = j.table.Get(key); err != nil {
				// The local table failed, not the record: fail the batch.
				return fmt.Errorf("join: reading table %q: %w", j.name, err)
			}
		}
		if !found && !j.left {
			continue // inner join: no match, no output
		}
		if !j.adds.apply(m, tv, found) {
			out.Fail(r, fmt.Errorf("join: the value of key %q in table %q is %T, not an object: use into: to take it whole", key, j.name, tv))
			continue
		}
		out.Emit(0, r)
	}
	return nil
}

// key returns the lookup key of r: the record key, or the value of on:.
// A nil key matches nothing.
func (j *join) key(r *pipes.Record) ([]byte, error) {
	if j.on == nil {
		return r.Key, nil
	}
	v, err := j.on.Eval(r)
	if err != nil {
		return nil, err
	}
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []byte(x), nil
	case []byte:
		return x, nil
	case int:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int32:
		return strconv.AppendInt(nil, int64(x), 10), nil
	case int64:
		return strconv.AppendInt(nil, x, 10), nil
	case float64:
		return strconv.AppendFloat(nil, x, 'f', -1, 64), nil
	case float32:
		return strconv.AppendFloat(nil, float64(x), 'f', -1, 32), nil
	}
	return nil, fmt.Errorf("join: on: %q gave %T, want a string, bytes or a number", j.on.Source(), v)
}

func (j *join) OutputSchema(int) *pipes.Schema { return j.schema }

func (j *join) UsedFields() ([]string, bool) {
	var progs []*pipes.Program
	if j.on != nil {
		progs = append(progs, j.on)
	}
	return pipes.UsedFields(progs, j.adds.written()...)
}

var (
	_ pipes.SchemaDeriver = (*join)(nil)
	_ pipes.FieldUser     = (*join)(nil)
	_ pipes.Closer        = (*join)(nil)
)

// Close releases the table, when the environment handed out one that holds
// resources (the engine's tables count their users).
func (j *join) Close() error {
	if c, ok := j.table.(interface{ Close() error }); ok {
		return c.Close()
	}
	return nil
}
