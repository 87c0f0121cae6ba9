package builtin

import (
	"context"

	"github.com/streamerio/streamer/pipes"
)

// FilterConfig configures the filter pipe.
type FilterConfig struct {
	When pipes.Expr `yaml:"when" required:"true" doc:"Boolean expression over the record's fields; records for which it is true are kept."`
}

func init() {
	pipes.MustRegister("filter", pipes.Spec{
		Summary:     "Keeps the records for which an expression is true and drops the rest.",
		Example:     "when: amount > 0 && country != \"\"",
		KeepsSchema: true,
	}, newFilter)
}

type filter struct {
	when   *pipes.Program
	schema *pipes.Schema
}

func newFilter(c FilterConfig, env *pipes.Env) (pipes.Pipe, error) {
	p, err := env.Compile(c.When, pipes.AsBool())
	if err != nil {
		return nil, err
	}
	return &filter{when: p, schema: p.Narrow(env.InputSchema())}, nil
}

func (f *filter) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		keep, err := f.when.Bool(r)
		switch {
		case err != nil:
			out.Fail(r, err)
		case keep:
			out.Emit(0, r)
		}
	}
	return nil
}

func (f *filter) OutputSchema(int) *pipes.Schema { return f.schema }

func (f *filter) UsedFields() ([]string, bool) { return pipes.UsedFields([]*pipes.Program{f.when}) }

func (f *filter) ShallowFields() []string { return pipes.ShallowFields([]*pipes.Program{f.when}, nil) }

var (
	_ pipes.SchemaDeriver = (*filter)(nil)
	_ pipes.FieldUser     = (*filter)(nil)
	_ pipes.ShallowReader = (*filter)(nil)
)
