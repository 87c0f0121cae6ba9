package builtin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/pipes"
)

// build makes a pipe of a registered type from a YAML config block.
func build(t testing.TB, typ, conf string, outputs []string, schema *pipes.Schema) (pipes.Pipe, error) {
	t.Helper()
	pt, ok := pipes.Lookup(typ)
	if !ok {
		t.Fatalf("type %q not registered", typ)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := pt.Decode(n.Content[0])
	if len(errs) > 0 {
		return nil, errs[0]
	}
	env := &pipes.Env{Pipe: "p", Partition: 0, Inputs: []pipes.Port{{Dataset: "in", Schema: schema}}}
	for _, o := range outputs {
		env.Outputs = append(env.Outputs, pipes.Port{Dataset: o})
	}
	return cfg.New(env)
}

func records(t testing.TB, values ...string) []*pipes.Record {
	var out []*pipes.Record
	for _, v := range values {
		var x any
		if err := json.Unmarshal([]byte(v), &x); err != nil {
			t.Fatal(err)
		}
		out = append(out, &pipes.Record{Key: []byte("k"), Value: x})
	}
	return out
}

// run processes values and returns, per output port, the JSON of what was
// emitted, and the errors of failed records.
func run(t testing.TB, p pipes.Pipe, ports int, values ...string) ([][]string, []string) {
	out := pipes.NewOutput(ports)
	if err := p.Process(context.Background(), &pipes.Batch{Records: records(t, values...)}, out); err != nil {
		t.Fatal(err)
	}
	got := make([][]string, ports)
	for i := range got {
		for _, r := range out.Records(i) {
			b, _ := json.Marshal(r.Value)
			got[i] = append(got[i], string(b))
		}
	}
	var fails []string
	for _, f := range out.Failures() {
		fails = append(fails, f.Err.Error())
	}
	return got, fails
}

var orderSchema = &pipes.Schema{Fields: []pipes.SchemaField{
	{Name: "amount", Kind: pipes.Float64},
	{Name: "country", Kind: pipes.String},
	{Name: "items", Kind: pipes.Array, Elem: pipes.Any},
}}

// pipeCase is a batch of JSON values through a pipe of one type, with what
// it must emit on each output and the failures it must report.
type pipeCase struct {
	name    string
	conf    string
	outputs []string // default: one, "out"
	in      []string
	want    [][]string
	fails   []string // substrings of the failures, in order
}

// runCases runs each case through a fresh pipe of type typ.
func runCases(t *testing.T, typ string, cases []pipeCase) {
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			outs := tt.outputs
			if outs == nil {
				outs = []string{"out"}
			}
			p, err := build(t, typ, tt.conf, outs, nil)
			if err != nil {
				t.Fatal(err)
			}
			got, fails := run(t, p, len(outs), tt.in...)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %v\nwant %v", got, tt.want)
			}
			if len(fails) != len(tt.fails) {
				t.Fatalf("failures %q, want %d", fails, len(tt.fails))
			}
			for i, f := range tt.fails {
				if !strings.Contains(fails[i], f) {
					t.Errorf("failure %d = %q, want it to contain %q", i, fails[i], f)
				}
			}
		})
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		typ, conf string
		outputs   []string
		want      string
	}{
		{"filter", "when: amout > 1", nil, `unknown name amout (did you mean "amount"?)`},
		{"filter", "when: amount", nil, "expected bool"},
		{"filter", "when: country * 2", nil, "mismatched types string and int"},
		{"filter", "{}", nil, `missing required field "when"`},
		{"filter", "when: x\nwhere: y", nil, `unknown field "where" (did you mean "when"?)`},
		{"map", "{}", nil, "map has nothing to do"},
		{"map", "drop: [colour]", nil, `unknown field "colour"`},
		{"route", "routes:\n  - when: 'true'\n    to: nowhere", []string{"a"}, `"nowhere" is not one of this pipe's outputs`},
		{"route", "routes:\n  - when: 'true'\n    to: a", []string{"a", "b"}, `output "b" is never routed to`},
		{"explode", "items: items", nil, `missing required field "as"`},
	}
	for _, tt := range tests {
		t.Run(tt.typ+"/"+tt.want, func(t *testing.T) {
			outs := tt.outputs
			if outs == nil {
				outs = []string{"out"}
			}
			_, err := build(t, tt.typ, tt.conf, outs, orderSchema)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestOutputReset(t *testing.T) {
	o := pipes.NewOutput(2)
	r := &pipes.Record{}
	o.Emit(1, r)
	o.Fail(r, fmt.Errorf("x"))
	o.Reset()
	if len(o.Records(1)) != 0 || len(o.Failures()) != 0 {
		t.Fatal("Reset left records behind")
	}
}

func TestRegisterDuplicate(t *testing.T) {
	err := pipes.Register("filter", pipes.Spec{}, func(c struct{}, _ *pipes.Env) (pipes.Pipe, error) { return nil, nil })
	if err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("got %v", err)
	}
}

func BenchmarkFilterMap(b *testing.B) {
	f, err := build(b, "filter", "when: amount > 10 && country != ''", nil, orderSchema)
	if err != nil {
		b.Fatal(err)
	}
	m, err := build(b, "map", "compute:\n  twice: amount * 2\nset:\n  tag: x\nrename:\n  country: cc", []string{"out"}, orderSchema)
	if err != nil {
		b.Fatal(err)
	}
	const n = 512
	vals := make([]string, n)
	for i := range vals {
		vals[i] = fmt.Sprintf(`{"amount":%d,"country":"DE","items":[1]}`, i)
	}
	fo, mo := pipes.NewOutput(1), pipes.NewOutput(1)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		recs := records(b, vals...)
		b.StartTimer()
		fo.Reset()
		mo.Reset()
		_ = f.Process(context.Background(), &pipes.Batch{Records: recs}, fo)
		_ = m.Process(context.Background(), &pipes.Batch{Records: fo.Records(0)}, mo)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}
