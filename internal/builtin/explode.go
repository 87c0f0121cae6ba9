package builtin

import (
	"context"
	"fmt"

	"github.com/streamerio/streamer/pipes"
)

// ExplodeConfig configures the explode pipe.
type ExplodeConfig struct {
	Items pipes.Expr    `yaml:"items" required:"true" doc:"Expression giving the list to explode, such as a field holding an array."`
	As    pipes.Field   `yaml:"as" required:"true" doc:"Field that receives each element in its output record."`
	Index *pipes.Field  `yaml:"index" doc:"Field that receives the element's position in the list, from 0."`
	Drop  []pipes.Field `yaml:"drop" doc:"Fields removed from each output record, typically the exploded list."`
}

func init() {
	pipes.MustRegister("explode", pipes.Spec{
		Summary: "Turns one record into one record per element of a list; an empty or null list gives none.",
		Example: "items: lines\nas: line\nindex: line_no\ndrop: [lines]",
	}, newExplode)
}

type explode struct {
	items  *pipes.Program
	as     string
	index  string
	drop   []string
	schema *pipes.Schema
}

func newExplode(c ExplodeConfig, env *pipes.Env) (pipes.Pipe, error) {
	p, err := env.Compile(c.Items)
	if err != nil {
		return nil, err
	}
	e := &explode{items: p, as: c.As.Name}
	if c.Index != nil {
		e.index = c.Index.Name
	}
	for _, d := range c.Drop {
		if err := env.CheckField(d); err != nil {
			return nil, err
		}
		e.drop = append(e.drop, d.Name)
	}
	if in := env.InputSchema(); in != nil {
		s := in.Clone()
		// An element is taken to be non-null: lists of nulls are rare, and
		// a null element that an expression downstream cannot take fails
		// that record with an error naming it.
		s.Set(pipes.SchemaField{Name: e.as, Kind: pipes.Any})
		if e.index != "" {
			s.Set(pipes.SchemaField{Name: e.index, Kind: pipes.Int64})
		}
		for _, d := range e.drop {
			s.Delete(d)
		}
		e.schema = s
	}
	return e, nil
}

func (e *explode) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		v, err := e.items.Eval(r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		if v == nil {
			continue
		}
		list, ok := v.([]any)
		if !ok {
			out.Fail(r, fmt.Errorf("explode: %q gave %T, want a list", e.items.Source(), v))
			continue
		}
		if _, ok := r.Value.(map[string]any); !ok {
			out.Fail(r, fmt.Errorf("explode needs a record with fields, got %T", r.Value))
			continue
		}
		for _, d := range e.drop {
			pipes.DeletePath(r.Value, d)
		}
		for i, item := range list {
			c := r
			if i < len(list)-1 {
				c = r.Clone() // the last element reuses the input record
			}
			pipes.SetPath(c.Value, e.as, item)
			if e.index != "" {
				pipes.SetPath(c.Value, e.index, int64(i))
			}
			out.Emit(0, c)
		}
	}
	return nil
}

func (e *explode) OutputSchema(int) *pipes.Schema { return e.schema }

func (e *explode) UsedFields() ([]string, bool) {
	return pipes.UsedFields([]*pipes.Program{e.items}, append([]string{e.as, e.index}, e.drop...)...)
}

var (
	_ pipes.SchemaDeriver = (*explode)(nil)
	_ pipes.FieldUser     = (*explode)(nil)
)
