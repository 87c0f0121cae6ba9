package streamertest_test

import (
	"context"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/streamertest"
	"github.com/streamerio/streamer/topology"
)

// opaqueConfig configures a pipe type that, like many custom pipes, does not
// say what it emits.
type opaqueConfig struct{}

type opaque struct{}

func (opaque) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		out.Emit(0, r)
	}
	return nil
}

func init() {
	pipes.MustRegister("test_opaque", pipes.Spec{Summary: "Passes records on; declares no output schema."},
		func(opaqueConfig, *pipes.Env) (pipes.Pipe, error) { return opaque{}, nil })
}

var lostFS = fstest.MapFS{"order.json": {Data: []byte(`{"type": "object", "required": ["country"], "properties": {"country": {"type": "string"}}}`)}}

// TestLostSchemaWarning: a pipe that declares no output schema stops
// type-checking downstream, so a typo there validates; validate warns,
// naming the pipe, its readers and the two ways to declare the schema. With
// the schema declared on the dataset, the typo is an error.
func TestLostSchemaWarning(t *testing.T) {
	src := `name: t
datasets:
  orders: {topic: orders, schema: order.json}
  geo: {}
  out: {topic: out}
pipes:
  geoip:
    from: orders
    to: geo
    test_opaque: {}
  by-country:
    from: geo
    to: out
    filter:
      when: (countyr ?? "unknown") != "unknown"
`
	top, err := topology.Compile("t.yaml", []byte(src), lostFS)
	if err != nil {
		t.Fatal(err)
	}
	var warns []string
	for _, w := range top.Warnings {
		warns = append(warns, w.String())
	}
	want := `t.yaml:7:3: warning: pipe "geoip" (test_opaque) declares no schema for dataset "geo", so type-checking stops there: the expressions of pipe "by-country", which read it, are not checked, and a misspelled field in them validates and reads as null. To check them, implement pipes.SchemaDeriver (OutputSchema(port int) *pipes.Schema) in the pipe type, or declare schema: on dataset "geo"`
	if len(warns) != 1 || warns[0] != want {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(warns, "\n"), want)
	}

	declared := strings.Replace(src, "geo: {}", "geo: {schema: order.json}", 1)
	_, err = topology.Compile("t.yaml", []byte(declared), lostFS)
	if err == nil || !strings.Contains(err.Error(), `t.yaml:15:14: pipe "by-country": in expression "(countyr ?? \"unknown\") != \"unknown\"": unknown name countyr (did you mean "country"?)`) {
		t.Errorf("with the schema declared: %v", err)
	}
}

// TestUndeclaredDataset: a reference to an undeclared dataset says how to
// declare it; a misspelled one is listed before what follows from it (the
// dataset it meant looks unused), which says so.
func TestUndeclaredDataset(t *testing.T) {
	for _, tt := range []struct{ name, src, want string }{
		{"undeclared", `name: t
datasets:
  orders: {topic: orders}
  out: {topic: out}
pipes:
  a: {from: orders, to: middle, filter: {when: 'true'}}
  b: {from: middle, to: out, filter: {when: 'true'}}
`, `t.yaml:6:25: pipe "a" writes: unknown dataset "middle": declare it under datasets: (middle: {} passes records in memory between pipes; give it a topic: to store them in Kafka)
t.yaml:7:13: pipe "b" reads: unknown dataset "middle": declare it under datasets: (middle: {} passes records in memory between pipes; give it a topic: to store them in Kafka)`},
		{"misspelled", `name: t
datasets:
  orders: {topic: orders}
  enriched: {}
  out: {topic: out}
pipes:
  a: {from: orders, to: enriched, filter: {when: 'true'}}
  b: {from: enrichd, to: out, filter: {when: 'true'}}
`, `t.yaml:8:13: pipe "b" reads: unknown dataset "enrichd" (did you mean "enriched"?)
t.yaml:4:3: dataset "enriched" is written by pipe "a" but neither read by a pipe nor stored in a topic, perhaps because "enrichd" at line 8 means it`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := topology.Compile("t.yaml", []byte(tt.src), lostFS)
			if err == nil || err.Error() != tt.want {
				t.Errorf("got:\n%v\nwant:\n%s", err, tt.want)
			}
		})
	}
}

// geoConfig configures a pipe type that adds a nullable field, as a custom
// geoip pipe would: country is null when the address is not found.
type geoConfig struct{}

type geo struct{ schema *pipes.Schema }

func (geo) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		m := r.Value.(map[string]any)
		if m["ip"] == "10.0.0.1" {
			m["geo_country"] = "DE"
		} else {
			m["geo_country"] = nil
		}
		out.Emit(0, r)
	}
	return nil
}

func (g geo) OutputSchema(int) *pipes.Schema { return g.schema }

func init() {
	pipes.MustRegister("test_geo", pipes.Spec{Summary: "Adds geo_country, null when the address is unknown."},
		func(_ geoConfig, env *pipes.Env) (pipes.Pipe, error) {
			s := env.InputSchema().Clone()
			if s != nil {
				s.Set(pipes.SchemaField{Name: "geo_country", Kind: pipes.String, Nullable: true})
			}
			return geo{schema: s}, nil
		})
}

// TestCustomPipeNullableField: a field a custom pipe declares Nullable
// follows the null rule downstream: == takes its nulls at run time (no dead
// letters), and an ordering on it is an error of validate.
func TestCustomPipeNullableField(t *testing.T) {
	fsys := fstest.MapFS{"hit.json": {Data: []byte(`{"type": "object", "required": ["ip"], "properties": {"ip": {"type": "string"}}}`)}}
	src := `name: t
dead_letter: dlq
datasets:
  hits: {topic: hits, schema: hit.json}
  located: {}
  de: {topic: de}
  dlq: {topic: dlq, value: bytes}
pipes:
  geoip:
    from: hits
    to: located
    test_geo: {}
  germany:
    from: located
    to: de
    filter:
      when: WHEN
`
	top, err := topology.Compile("t.yaml", []byte(strings.Replace(src, "WHEN", `geo_country == "DE"`, 1)), fsys)
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	if err := d.Input("hits", streamertest.Record{Value: map[string]any{"ip": "10.0.0.1"}}, streamertest.Record{Value: map[string]any{"ip": "192.0.2.1"}}); err != nil {
		t.Fatal(err)
	}
	for _, dl := range d.DeadLetters() {
		t.Errorf("dead letter: %s", dl.Error)
	}
	if out, _ := d.Output("de"); len(out) != 1 {
		t.Errorf("de: %v", out)
	}
	_, err = topology.Compile("t.yaml", []byte(strings.Replace(src, "WHEN", `geo_country >= "D"`, 1)), fsys)
	if err == nil || !strings.Contains(err.Error(), `t.yaml:17:13: pipe "germany": in expression "geo_country >= \"D\"": geo_country may be null`) {
		t.Errorf("ordering on the nullable field: %v", err)
	}
}
