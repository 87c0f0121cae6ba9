package streamertest_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/streamertest"
	"github.com/streamerio/streamer/topology"
)

type tagConfig struct {
	Value string `yaml:"value" required:"true" doc:"Written to the field tag."`
}

type tag struct{ v string }

func (p tag) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		pipes.SetPath(r.Value, "tag", p.v)
		out.Emit(0, r)
	}
	return nil
}

const tagTopology = `name: tagged
datasets:
  in: { topic: in }
  out: { topic: out }
pipes:
  t:
    from: in
    to: out
    env-test-tag:
      value: seen
`

const tagTests = `topology: topology.yaml
requires: [env-test-tag]
cases:
  - name: tagged
    input:
      in:
        - key: a
          value: {x: 1}
    expect:
      out:
        - key: a
          value: {x: 1, tag: seen}
`

// TestPipesEnvironment runs a test file and a driver whose topology needs a
// pipe type registered only into an isolated environment.
func TestPipesEnvironment(t *testing.T) {
	dir := t.TempDir()
	for name, src := range map[string]string{"topology.yaml": tagTopology, "tag.test.yaml": tagTests} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := pipes.DefaultEnvironment().Clone()
	env.MustRegister(pipes.MustNewType("env-test-tag", pipes.Spec{}, func(c tagConfig, _ *pipes.Env) (pipes.Pipe, error) {
		return tag{v: c.Value}, nil
	}))

	res := streamertest.RunFile(filepath.Join(dir, "tag.test.yaml"), streamertest.Options{Pipes: env})
	if res.Err != nil || res.Skipped != "" || len(res.Cases) != 1 || !res.Cases[0].Passed() {
		t.Fatalf("with the environment: %+v", res)
	}
	res = streamertest.RunFile(filepath.Join(dir, "tag.test.yaml"), streamertest.Options{})
	if !strings.Contains(res.Skipped, "env-test-tag") {
		t.Errorf("the default environment ran a type it lacks: %+v", res)
	}

	d, err := streamertest.Load(filepath.Join(dir, "topology.yaml"), topology.WithPipes(env))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Input("in", streamertest.Record{Key: streamertest.Key("b"), Value: map[string]any{"x": 2}}); err != nil {
		t.Fatal(err)
	}
	out, err := d.Output("out")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Value.(map[string]any)["tag"] != "seen" {
		t.Errorf("driver output = %+v", out)
	}
	if _, err := streamertest.Load(filepath.Join(dir, "topology.yaml")); err == nil {
		t.Error("Load without the environment compiled a type it lacks")
	}
}
