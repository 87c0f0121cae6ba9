package topology_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/topology"
)

type upperConfig struct {
	Field string `yaml:"field" required:"true" doc:"The field to keep."`
}

type keep struct{}

func (keep) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		out.Emit(0, r)
	}
	return nil
}

const envTopology = `name: envtest
datasets:
  in: { topic: in }
  out: { topic: out }
pipes:
  p:
    from: in
    to: out
    only-here:
      field: x
`

// TestWithPipes compiles against an isolated environment: a type registered
// only there is found, the default environment does not have it, and the
// built-ins are not in an empty environment.
func TestWithPipes(t *testing.T) {
	env := pipes.NewEnvironment()
	env.MustRegister(pipes.MustNewType("only-here", pipes.Spec{}, func(upperConfig, *pipes.Env) (pipes.Pipe, error) { return keep{}, nil }))

	top, err := topology.Compile("t.yaml", []byte(envTopology), fstest.MapFS{}, topology.WithPipes(env))
	if err != nil {
		t.Fatal(err)
	}
	if got := top.Pipes[0].Type; got != "only-here" {
		t.Errorf("pipe type = %q", got)
	}

	_, err = topology.Compile("t.yaml", []byte(envTopology), fstest.MapFS{})
	if err == nil || !strings.Contains(err.Error(), `unknown field or pipe type "only-here"`) {
		t.Errorf("the default environment compiled a type registered elsewhere: %v", err)
	}

	filter := strings.Replace(envTopology, "only-here:\n      field: x", "filter:\n      when: \"true\"", 1)
	if _, err := topology.Compile("t.yaml", []byte(filter), fstest.MapFS{}); err != nil {
		t.Fatalf("the default environment lacks filter: %v", err)
	}
	_, err = topology.Compile("t.yaml", []byte(filter), fstest.MapFS{}, topology.WithPipes(env))
	if err == nil || !strings.Contains(err.Error(), `unknown field or pipe type "filter"`) || !strings.Contains(err.Error(), "only-here") {
		t.Errorf("an environment without filter compiled it, or did not name what it has: %v", err)
	}
}

type masksConfig struct {
	Masks []pipes.KV[string] `yaml:"masks" required:"true" doc:"Replacement per field."`
}

const masksTopology = `name: kvtest
datasets:
  in: { topic: in, schema: in.json }
  out: { topic: out }
pipes:
  p:
    from: in
    to: out
    masks:
      masks:
        email: "***"
        phnoe: "000"
        name: "?"
`

// TestKVKeyPositions: a custom pipe whose config has a mapping ([]pipes.KV)
// reports a bad key, here a field the input schema lacks, at the key's own
// file:line:col, and reads the entries in the file's order.
func TestKVKeyPositions(t *testing.T) {
	var got []string
	env := pipes.NewEnvironment()
	env.MustRegister(pipes.MustNewType("masks", pipes.Spec{}, func(c masksConfig, env *pipes.Env) (pipes.Pipe, error) {
		got = got[:0]
		var errs []error
		for _, m := range c.Masks {
			got = append(got, m.Key+"="+m.Value)
			if err := env.CheckField(m.KeyField()); err != nil {
				errs = append(errs, err)
			}
		}
		return keep{}, errors.Join(errs...)
	}))
	fsys := fstest.MapFS{"in.json": {Data: []byte(`{"type":"object","properties":{"email":{"type":"string"},"phone":{"type":"string"},"name":{"type":"string"}}}`)}}
	_, err := topology.Compile("t.yaml", []byte(masksTopology), fsys, topology.WithPipes(env))
	if err == nil || !strings.Contains(err.Error(), `t.yaml:12:9: pipe "p": unknown field "phnoe" (did you mean "phone"?)`) {
		t.Errorf("want the bad key at t.yaml:12:9, got: %v", err)
	}
	if want := []string{"email=***", "phnoe=000", "name=?"}; !slices.Equal(got, want) {
		t.Errorf("entries %v, want %v in the file's order", got, want)
	}
}
