package streamertest_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/streamertest"
)

// stamp is a test pipe that writes the wall clock and the record timestamp
// into each record, so tests can see the time the driver controls.
type stampConfig struct {
	Field pipes.Field `yaml:"field" required:"true" doc:"Field that receives the wall-clock time."`
}

type stamp struct {
	field string
	now   func() time.Time
}

func (s *stamp) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		pipes.SetPath(r.Value, s.field, s.now().UTC().Format(time.RFC3339))
		pipes.SetPath(r.Value, "ts", r.Timestamp.UTC().Format(time.RFC3339))
		out.Emit(0, r)
	}
	return nil
}

func init() {
	pipes.MustRegister("stamp", pipes.Spec{Summary: "Test pipe: stamps the wall clock.", Example: "field: seen"},
		func(c stampConfig, env *pipes.Env) (pipes.Pipe, error) {
			return &stamp{field: c.Field.Name, now: env.Now}, nil
		})
}

func TestClockIsControlled(t *testing.T) {
	dir := t.TempDir()
	top := "name: t\ndatasets:\n  in: {topic: in}\n  out: {topic: out}\npipes:\n  s:\n    from: in\n    to: out\n    on_error: fail\n    stamp: {field: seen}\n"
	cases := `topology: t.yaml
cases:
  - name: the clock moves only when the test says so
    time: 2030-05-01T12:00:00Z
    input:
      in:
        - value: {n: 1}
        - value: {n: 2}
          at: +90s
          timestamp: "+10s"
        - value: {n: 3}
    expect:
      out:
        - value: {n: 1, seen: "2030-05-01T12:00:00Z", ts: "2030-05-01T12:00:00Z"}
        - value: {n: 2, seen: "2030-05-01T12:01:30Z", ts: "2030-05-01T12:00:10Z"}
        - value: {n: 3, seen: "2030-05-01T12:01:30Z", ts: "2030-05-01T12:01:30Z"}
`
	passOneCase(t, dir, map[string]string{"t.yaml": top, "t.test.yaml": cases})

	// The Go driver: AdvanceTime moves what pipes see.
	d, err := streamertest.Load(filepath.Join(dir, "t.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	d.AdvanceTime(time.Hour)
	if err := d.Input("in", streamertest.Record{Value: map[string]any{"n": 1}}); err != nil {
		t.Fatal(err)
	}
	out, _ := d.Output("out")
	if got := out[0].Value.(map[string]any)["seen"]; got != "2026-01-01T01:00:00Z" {
		t.Errorf("seen %v", got)
	}
}
