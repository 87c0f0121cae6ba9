package pipes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
)

// AggregateConfig configures the aggregate pipe.
type AggregateConfig struct {
	Fields map[string]AggregateField `yaml:"fields" required:"true" doc:"Output fields, each an aggregate over the records of a key."`
	Store  string                    `yaml:"store" doc:"State store that keeps the aggregates. Default: the pipe's name."`
}

// AggregateField is one aggregate.
type AggregateField struct {
	Op string `yaml:"op" required:"true" enum:"count,sum,min,max,avg,last" doc:"count, sum, min, max, avg or last."`
	Of *Expr  `yaml:"of" doc:"Expression aggregated (not for count)."`
}

func init() {
	MustRegister("aggregate", Spec{
		Summary: "Keeps running aggregates per record key in a state store, and emits the updated aggregates of a key for each record.",
		Example: "fields:\n  orders: {op: count}\n  revenue: {op: sum, of: amount}\n  biggest: {op: max, of: amount}\n  last_country: {op: last, of: country}",
	}, newAggregate)
}

type aggField struct {
	name string
	op   string
	of   *Program
}

type aggregate struct {
	fields []aggField
	store  Store
	schema *Schema
}

func newAggregate(c AggregateConfig, env *Env) (Pipe, error) {
	a := &aggregate{}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(c.Fields)) {
		f := c.Fields[name]
		af := aggField{name: name, op: f.Op}
		switch {
		case f.Op == "count" && f.Of != nil:
			errs = append(errs, Errorf(f.Of.Pos, "field %q: count takes no of:", name))
		case f.Op != "count" && f.Op != "" && f.Of == nil:
			errs = append(errs, fmt.Errorf("field %q: %s needs of:, the expression to aggregate", name, f.Op))
		case f.Of != nil:
			p, err := env.Compile(*f.Of)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			af.of = p
		}
		a.fields = append(a.fields, af)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	name := c.Store
	if name == "" {
		name = env.Pipe
	}
	st, err := env.Store(name)
	if err != nil {
		return nil, err
	}
	a.store = st
	if env.InputSchema() != nil {
		s := &Schema{Fields: []SchemaField{{Name: "key", Kind: String}}}
		for _, f := range a.fields {
			k := Float64
			switch f.op {
			case "count":
				k = Int64
			case "last":
				k = f.of.Kind()
			}
			s.Fields = append(s.Fields, SchemaField{Name: f.name, Kind: k, Nullable: f.op == "min" || f.op == "max" || f.op == "last"})
		}
		a.schema = s
	}
	return a, nil
}

// acc is one key's accumulators, by output field, as stored (JSON).
type acc map[string]*accField

type accField struct {
	N    int64    `json:"n,omitempty"`
	Sum  float64  `json:"s,omitempty"`
	Best *float64 `json:"b,omitempty"` // min or max so far
	Last any      `json:"l,omitempty"`
}

func (a *aggregate) Process(_ context.Context, b *Batch, out *Output) error {
	for _, r := range b.Records {
		if r.Key == nil {
			out.Fail(r, errors.New("aggregate needs keyed records: the key says whose aggregates to update"))
			continue
		}
		vals := make([]any, len(a.fields))
		failed := false
		for i, f := range a.fields {
			if f.of == nil {
				continue
			}
			v, err := f.of.Eval(r)
			if err != nil {
				out.Fail(r, err)
				failed = true
				break
			}
			vals[i] = v
		}
		if failed {
			continue
		}
		cur, err := a.load(r.Key)
		if err != nil {
			return err // the store failed: the batch fails
		}
		if err := a.update(cur, vals); err != nil {
			out.Fail(r, err)
			continue
		}
		b, err := json.Marshal(cur)
		if err != nil {
			return err
		}
		if err := a.store.Put(r.Key, b); err != nil {
			return err
		}
		o := &Record{Key: r.Key, Timestamp: r.Timestamp, Headers: r.Headers, Origin: r.Origin, Value: a.result(r.Key, cur)}
		out.Emit(0, o)
	}
	return nil
}

func (a *aggregate) load(key []byte) (acc, error) {
	cur := acc{}
	v, ok, err := a.store.Get(key)
	if err != nil || !ok {
		return cur, err
	}
	if err := json.Unmarshal(v, &cur); err != nil {
		return nil, fmt.Errorf("aggregate: corrupt state for key %q: %w", key, err)
	}
	return cur, nil
}

func (a *aggregate) update(cur acc, vals []any) error {
	for i, f := range a.fields {
		st := cur[f.name]
		if st == nil {
			st = &accField{}
			cur[f.name] = st
		}
		if f.op == "last" {
			st.Last = vals[i]
			continue
		}
		if f.op == "count" {
			st.N++
			continue
		}
		if vals[i] == nil {
			continue // a null does not count toward sums and extremes
		}
		x, ok := Float(vals[i])
		if !ok {
			return fmt.Errorf("field %q: %s of %q gave %T, not a number", f.name, f.op, f.of.Source(), vals[i])
		}
		st.N++
		st.Sum += x
		if st.Best == nil || (f.op == "min" && x < *st.Best) || (f.op == "max" && x > *st.Best) {
			st.Best = &x
		}
	}
	return nil
}

func (a *aggregate) result(key []byte, cur acc) map[string]any {
	m := map[string]any{"key": string(key)}
	for _, f := range a.fields {
		st := cur[f.name]
		switch f.op {
		case "count":
			m[f.name] = st.N
		case "sum":
			m[f.name] = st.Sum
		case "avg":
			if st.N == 0 {
				m[f.name] = nil
			} else {
				m[f.name] = st.Sum / float64(st.N)
			}
		case "min", "max":
			if st.Best == nil {
				m[f.name] = nil
			} else {
				m[f.name] = *st.Best
			}
		case "last":
			m[f.name] = st.Last
		}
	}
	return m
}

// Float returns a decoded numeric value as a float64, and false for
// anything that is not a number.
func Float(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}

func (a *aggregate) OutputSchema(int) *Schema { return a.schema }

func (a *aggregate) UsedFields() ([]string, bool) {
	var progs []*Program
	for _, f := range a.fields {
		if f.of != nil {
			progs = append(progs, f.of)
		}
	}
	return usedFields(progs)
}

var (
	_ SchemaDeriver = (*aggregate)(nil)
	_ FieldUser     = (*aggregate)(nil)
)
