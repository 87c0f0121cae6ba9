package pipes_test

import (
	"context"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/pipes"
)

// UpperConfig is the config of an example pipe type.
type UpperConfig struct {
	Field pipes.Field `yaml:"field" required:"true" doc:"The string field to upper-case."`
}

type upper struct{ field string }

func (u *upper) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		s, ok := pipes.GetPath(r.Value, u.field)
		if str, isStr := s.(string); ok && isStr {
			pipes.SetPath(r.Value, u.field, strings.ToUpper(str))
			out.Emit(0, r)
			continue
		}
		out.Fail(r, fmt.Errorf("field %q is not a string", u.field))
	}
	return nil
}

// A custom pipe type is a config struct and a constructor. Registering it
// makes it usable in topology files, checked by `streamer validate`, and
// described in the JSON Schema.
func ExampleRegister() {
	err := pipes.Register("upper", pipes.Spec{Summary: "Upper-cases a field.", Example: "field: name"},
		func(c UpperConfig, env *pipes.Env) (pipes.Pipe, error) {
			if err := env.CheckField(c.Field); err != nil {
				return nil, err
			}
			return &upper{field: c.Field.Name}, nil
		})
	if err != nil {
		fmt.Println(err)
		return
	}

	// What the topology compiler and the engine do with it:
	typ, _ := pipes.Lookup("upper")
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("field: name"), &n)
	cfg, _ := typ.Decode(n.Content[0])
	p, _ := cfg.New(&pipes.Env{Pipe: "shout", Inputs: []pipes.Port{{Dataset: "in"}}, Outputs: []pipes.Port{{Dataset: "out"}}})

	out := pipes.NewOutput(1)
	batch := &pipes.Batch{Records: []*pipes.Record{
		{Value: map[string]any{"name": "ada"}},
		{Value: map[string]any{"name": 42}},
	}}
	_ = p.Process(context.Background(), batch, out)
	fmt.Println(out.Records(0)[0].Value)
	fmt.Println(out.Failures()[0].Err)
	// Output:
	// map[name:ADA]
	// field "name" is not a string
}
