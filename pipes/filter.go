package pipes

import "context"

// FilterConfig configures the filter pipe.
type FilterConfig struct {
	When Expr `yaml:"when" required:"true" doc:"Boolean expression over the record's fields; records for which it is true are kept."`
}

func init() {
	MustRegister("filter", Spec{
		Summary:     "Keeps the records for which an expression is true and drops the rest.",
		Example:     "when: amount > 0 && country != \"\"",
		KeepsSchema: true,
	}, newFilter)
}

type filter struct {
	when   *Program
	schema *Schema
}

func newFilter(c FilterConfig, env *Env) (Pipe, error) {
	p, err := env.Compile(c.When, AsBool())
	if err != nil {
		return nil, err
	}
	return &filter{when: p, schema: p.Narrow(env.InputSchema())}, nil
}

func (f *filter) Process(_ context.Context, b *Batch, out *Output) error {
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

func (f *filter) OutputSchema(int) *Schema { return f.schema }

func (f *filter) UsedFields() ([]string, bool) { return usedFields([]*Program{f.when}) }

func (f *filter) ShallowFields() []string { return shallowFields([]*Program{f.when}, nil) }

var (
	_ SchemaDeriver = (*filter)(nil)
	_ FieldUser     = (*filter)(nil)
	_ ShallowReader = (*filter)(nil)
)
