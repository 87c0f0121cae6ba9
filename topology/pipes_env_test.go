package topology_test

import (
	"context"
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
