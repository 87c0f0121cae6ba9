package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

func compile(t testing.TB, src string) *topology.Topology {
	t.Helper()
	top, err := topology.Compile("t.yaml", []byte(src), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	return top
}

const fanout = `
name: fanout
dead_letter: dlq
datasets:
  in:  {topic: in}
  mid: {}
  a:   {topic: a}
  b:   {topic: b}
  dlq: {topic: dlq, value: bytes}
pipes:
  keep:
    from: in
    to: mid
    filter: {when: "n > 0"}
  first:
    from: mid
    to: a
    map: {compute: {n: n * 10}}
  second:
    from: mid
    to: b
    map: {set: {seen: true}}
`

func kr(offset int64, value string) *kgo.Record {
	return &kgo.Record{Topic: "in", Partition: 2, Offset: offset, Key: []byte("k"), Value: []byte(value),
		Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}}}
}

type sink struct{ recs []*kgo.Record }

func (s *sink) emit(r *kgo.Record) { s.recs = append(s.recs, r) }

func (s *sink) topic(name string) []string {
	var out []string
	for _, r := range s.recs {
		if r.Topic == name {
			out = append(out, string(r.Value))
		}
	}
	return out
}

func header(r *kgo.Record, key string) string {
	for _, h := range r.Headers {
		if h.Key == key {
			return string(h.Value)
		}
	}
	return ""
}

func TestTaskFanOutAndDeadLetters(t *testing.T) {
	top := compile(t, fanout)
	task, err := engine.NewTask(top, "in", 2, engine.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer task.Close()
	var s sink
	in := []*kgo.Record{kr(10, `{"n":1}`), kr(11, `{"n":0}`), kr(12, `{"n":`), kr(13, `{"n":"x"}`), kr(14, `{"n":2}`)}
	if err := task.Process(context.Background(), in, s.emit); err != nil {
		t.Fatal(err)
	}
	// Each reader of mid sees the records as keep emitted them: first's
	// change to n must not leak into second's output.
	if got, want := strings.Join(s.topic("a"), " "), `{"n":10} {"n":20}`; got != want {
		t.Errorf("a: %s, want %s", got, want)
	}
	if got, want := strings.Join(s.topic("b"), " "), `{"n":1,"seen":true} {"n":2,"seen":true}`; got != want {
		t.Errorf("b: %s, want %s", got, want)
	}
	var dlq []*kgo.Record
	for _, r := range s.recs {
		if r.Topic == "dlq" {
			dlq = append(dlq, r)
		}
	}
	if len(dlq) != 2 {
		t.Fatalf("dead letters: %d, want 2", len(dlq))
	}
	wants := []map[string]string{
		{"streamer.stage": "decode", "streamer.pipe": "keep", "streamer.source.offset": "12"},
		{"streamer.stage": "process", "streamer.pipe": "keep", "streamer.source.offset": "13"},
	}
	for i, w := range wants {
		r := dlq[i]
		for k, v := range w {
			if got := header(r, k); got != v {
				t.Errorf("dead letter %d header %s = %q, want %q", i, k, got, v)
			}
		}
		if header(r, "streamer.source.topic") != "in" || header(r, "streamer.source.partition") != "2" || header(r, "trace") != "t1" {
			t.Errorf("dead letter %d headers %v", i, r.Headers)
		}
		if header(r, "streamer.error") == "" || string(r.Value) != string(in[2+i].Value) || string(r.Key) != "k" {
			t.Errorf("dead letter %d: value %q, error %q", i, r.Value, header(r, "streamer.error"))
		}
	}
	// Outputs keep the input's headers.
	for _, r := range s.recs {
		if r.Topic == "a" && header(r, "trace") != "t1" {
			t.Errorf("output lost headers: %v", r.Headers)
		}
	}
}

func TestTaskOnError(t *testing.T) {
	const src = `
name: policy
datasets:
  in:  {topic: in}
  out: {topic: out}
pipes:
  keep:
    from: in
    to: out
    on_error: %s
    filter: {when: "n > 0"}
`
	for _, tt := range []struct {
		policy  string
		wantErr bool
		out     int
	}{{"skip", false, 1}, {"fail", true, 0}} {
		t.Run(tt.policy, func(t *testing.T) {
			top := compile(t, strings.Replace(src, "%s", tt.policy, 1))
			stats := engine.NewStats()
			task, err := engine.NewTask(top, "in", 0, engine.TaskOptions{Stats: stats})
			if err != nil {
				t.Fatal(err)
			}
			var s sink
			err = task.Process(context.Background(), []*kgo.Record{kr(1, `{"n":"bad"}`), kr(2, `{"n":1}`)}, s.emit)
			if tt.wantErr {
				if !errors.Is(err, engine.ErrFailed) || !strings.Contains(err.Error(), "in[2]@1") {
					t.Fatalf("err = %v, want ErrFailed naming in[2]@1", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(s.recs) != tt.out || stats.Skipped.Load() != 1 {
				t.Errorf("emitted %d, skipped %d", len(s.recs), stats.Skipped.Load())
			}
		})
	}
}

func TestNewTaskRejectsNonSource(t *testing.T) {
	top := compile(t, fanout)
	if _, err := engine.NewTask(top, "mid", 0, engine.TaskOptions{}); err == nil {
		t.Fatal("NewTask on an in-memory dataset succeeded")
	}
}

func TestOptionsValidated(t *testing.T) {
	top := compile(t, fanout)
	tests := []struct {
		o    engine.Options
		want string
	}{
		{engine.Options{}, "no brokers"},
		{engine.Options{Brokers: []string{"x:1"}, CommitInterval: -1}, "commit interval"},
		{engine.Options{Brokers: []string{"x:1"}, CommitInterval: 20e9}, "must exceed the commit interval"},
		{engine.Options{Brokers: []string{"x:1"}, TransactionTimeout: 10e9}, "must exceed the session timeout"},
		{engine.Options{Brokers: []string{"x:1"}, SessionTimeout: 30e9, TransactionTimeout: 25e9}, "must exceed the session timeout"},
	}
	for _, tt := range tests {
		if _, err := engine.New(top, tt.o); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("New(%+v) = %v, want %q", tt.o, err, tt.want)
		}
	}
	// The default transaction timeout follows a longer session timeout.
	if _, err := engine.New(top, engine.Options{Brokers: []string{"x:1"}, SessionTimeout: 45e9}); err != nil {
		t.Errorf("a 45 s session with the default transaction timeout: %v", err)
	}
}

// TestTaskAvro reads Avro, computes a field and writes Avro with a schema
// that has it, unions included.
func TestTaskAvro(t *testing.T) {
	in := `{"type":"record","name":"In","fields":[{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null}]}`
	out := `{"type":"record","name":"Out","fields":[{"name":"id","type":"long"},{"name":"note","type":["null","string"],"default":null},{"name":"big","type":"boolean"}]}`
	src := `
name: avro
datasets:
  in:  {topic: in, value: avro, schema: in.avsc}
  out: {topic: out, value: avro, schema: out.avsc}
pipes:
  tag:
    from: in
    to: out
    on_error: fail
    map: {compute: {big: id > 10}}
`
	top, err := topology.Compile("t.yaml", []byte(src), fstest.MapFS{"in.avsc": {Data: []byte(in)}, "out.avsc": {Data: []byte(out)}})
	if err != nil {
		t.Fatal(err)
	}
	inCodec, outCodec := top.Datasets["in"].Codec, top.Datasets["out"].Codec
	var recs []*kgo.Record
	for _, v := range []map[string]any{{"id": int64(5), "note": nil}, {"id": int64(50), "note": "hi"}} {
		b, err := inCodec.AppendEncode(nil, v)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Topic: "in", Value: b})
	}
	task, err := engine.NewTask(top, "in", 0, engine.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	err = task.Process(context.Background(), recs, func(r *kgo.Record) {
		v, err := outCodec.Decode(r.Value)
		if err != nil {
			t.Fatalf("output is not Out-schema Avro: %v", err)
		}
		m := v.(map[string]any)
		got = append(got, fmt.Sprintf("%v %v %v", m["id"], m["note"], m["big"]))
	})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, "|") != "5 <nil> false|50 hi true" {
		t.Errorf("got %q", got)
	}
}

// TestProjectionKeepsOutputs runs the same records with whole-value decoding
// and with projected decoding (only the fields the pipes use decoded, the
// rest copied through raw) and checks the outputs mean the same.
func TestProjectionKeepsOutputs(t *testing.T) {
	top := compile(t, fanout)
	in := []*kgo.Record{
		kr(1, `{"n":1,"big":{"deep":[1,2,{"x":"y"}]},"s":"t\"q"}`),
		kr(2, `{"n":0}`),
		kr(3, `{"n":`),
		kr(4, ` { "n" : 2 , "n2": [ ] } `),
		kr(5, `{"n":3,"seen":"before"}`),
	}
	run := func(p engine.Projection) map[string][]any {
		task, err := engine.NewTask(top, "in", 0, engine.TaskOptions{Projection: p})
		if err != nil {
			t.Fatal(err)
		}
		if fields, ok := task.Projection(); (p == engine.ProjectAlways) != ok {
			t.Fatalf("policy %d: projection %v %v", p, fields, ok)
		}
		out := map[string][]any{}
		err = task.Process(context.Background(), in, func(r *kgo.Record) {
			var v any
			if r.Topic != "dlq" {
				if err := json.Unmarshal(r.Value, &v); err != nil {
					t.Fatalf("%s: output %q is not JSON: %v", r.Topic, r.Value, err)
				}
			} else {
				v = string(r.Value)
			}
			out[r.Topic] = append(out[r.Topic], v)
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	whole, projected := run(engine.ProjectNever), run(engine.ProjectAlways)
	if !reflect.DeepEqual(whole, projected) {
		t.Fatalf("outputs differ:\nwhole     %v\nprojected %v", whole, projected)
	}
	if len(whole["a"]) != 3 || len(whole["dlq"]) != 1 {
		t.Fatalf("unexpected outputs %v", whole)
	}
}

// TestShallowProjection: a field that every pipe only counts with len(), or
// overwrites or drops whole, is decoded shallowly (an array's elements stay
// raw); one that any pipe reads into, moves or edits inside is decoded
// whole. Either way the outputs are those of whole-value decoding.
func TestShallowProjection(t *testing.T) {
	const head = "name: s\ndead_letter: dlq\ndatasets:\n  in: {topic: in}\n  mid: {}\n  out: {topic: out}\n  dlq: {topic: dlq, value: bytes}\npipes:\n"
	cases := []struct {
		name, pipes string
		want        map[string]serde.Use
	}{
		{"counted twice", `
  f: {from: in, to: mid, filter: {when: "len(items) > 0 && n > 0"}}
  m: {from: mid, to: out, map: {compute: {count: len(items) * 2}}}`,
			map[string]serde.Use{"items": serde.Shallow, "n": serde.Whole, "count": serde.Shallow}},
		{"read into by a later pipe", `
  f: {from: in, to: mid, filter: {when: "len(items) > 0"}}
  m: {from: mid, to: out, map: {compute: {first: "items[0]"}}}`,
			map[string]serde.Use{"items": serde.Whole, "first": serde.Shallow}},
		{"counted and read in one expression", `
  f: {from: in, to: mid, filter: {when: "len(items) > 1 || items == nil"}}
  m: {from: mid, to: out, map: {set: {x: 1}}}`,
			map[string]serde.Use{"items": serde.Whole, "x": serde.Shallow}},
		{"moved", `
  f: {from: in, to: mid, filter: {when: "len(items) > 0"}}
  m: {from: mid, to: out, map: {rename: {items: lines}}}`,
			map[string]serde.Use{"items": serde.Whole, "lines": serde.Whole}},
		{"dropped whole and inside", `
  f: {from: in, to: mid, filter: {when: "len(items) >= 0"}}
  m: {from: mid, to: out, map: {drop: [items, "meta.x"]}}`,
			map[string]serde.Use{"items": serde.Shallow, "meta": serde.Whole}},
	}
	in := []*kgo.Record{
		kr(1, `{"n":1,"items":[{"sku":"a","q":[1,2]}, "s\"]", 3, [], null],"meta":{"x":1,"y":2},"z":"keep"}`),
		kr(2, `{"n":2,"items":[]}`),
		kr(3, `{"n":3,"items":"a string"}`),
		kr(4, `{"n":4,"items":{"k":[1]}}`),
		kr(5, `{"n":5}`),
		kr(6, `{"n":6,"items":[1,`),
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			top := compile(t, head+c.pipes)
			run := func(p engine.Projection) []string {
				task, err := engine.NewTask(top, "in", 0, engine.TaskOptions{Projection: p})
				if err != nil {
					t.Fatal(err)
				}
				if p == engine.ProjectAlways {
					if got, _ := task.Projection(); !reflect.DeepEqual(got, c.want) {
						t.Errorf("projection %v, want %v", got, c.want)
					}
				}
				var out []string
				err = task.Process(context.Background(), in, func(r *kgo.Record) {
					if r.Topic == "dlq" {
						out = append(out, "dlq "+string(r.Value))
						return
					}
					var v any
					if err := json.Unmarshal(r.Value, &v); err != nil {
						t.Fatalf("output %q is not JSON: %v", r.Value, err)
					}
					out = append(out, fmt.Sprint(v))
				})
				if err != nil {
					t.Fatal(err)
				}
				return out
			}
			whole, projected := run(engine.ProjectNever), run(engine.ProjectAlways)
			if !reflect.DeepEqual(whole, projected) {
				t.Fatalf("outputs differ:\nwhole     %q\nprojected %q", whole, projected)
			}
			if len(whole) < 2 {
				t.Fatalf("too few outputs to compare: %q", whole)
			}
		})
	}
}

// TestProjectAutoTrial: while ProjectAuto times the two ways of decoding,
// it cuts large batches into short trial batches; the outputs are those of
// whole decoding, complete and, per output topic, in order.
func TestProjectAutoTrial(t *testing.T) {
	top := compile(t, fanout)
	var batches [][]*kgo.Record
	kept := 0 // records the filter keeps; each goes to a and to b
	for b := range 4 {
		var in []*kgo.Record
		for i := range 1700 {
			n := b*1700 + i
			if n%7 > 0 {
				kept++
			}
			in = append(in, kr(int64(n), fmt.Sprintf(`{"n":%d,"pad":"%d","list":[%d,{"x":1}]}`, n%7, n, n)))
		}
		batches = append(batches, in)
	}
	run := func(p engine.Projection) map[string][]string {
		task, err := engine.NewTask(top, "in", 0, engine.TaskOptions{Projection: p})
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, in := range batches {
			err := task.Process(context.Background(), in, func(r *kgo.Record) {
				var v any
				if err := json.Unmarshal(r.Value, &v); err != nil {
					t.Fatalf("output %q is not JSON: %v", r.Value, err)
				}
				out[r.Topic] = append(out[r.Topic], fmt.Sprint(v))
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	whole, auto := run(engine.ProjectNever), run(engine.ProjectAuto)
	for _, topic := range []string{"a", "b"} {
		if len(whole[topic]) != kept {
			t.Fatalf("%s: %d outputs of whole decoding, want %d", topic, len(whole[topic]), kept)
		}
		if !slices.Equal(whole[topic], auto[topic]) {
			t.Fatalf("%s: ProjectAuto's outputs differ from whole decoding's", topic)
		}
	}
}

// TestRegistryDownFailsTheBatch: a record that cannot be decoded because
// the schema registry is unreachable is not the record's fault, so it must
// not go to the dead letters: the batch fails and the transaction aborts.
func TestRegistryDownFailsTheBatch(t *testing.T) {
	reg, err := serde.NewRegistry("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	reg.Attempts, reg.Backoff = 2, time.Millisecond
	schema := `{"type":"record","name":"R","fields":[{"name":"n","type":"long"}]}`
	src := "name: r\ndead_letter: dlq\ndatasets:\n  in: {topic: in, value: avro, schema: r.avsc, registry: {}}\n  out: {topic: out}\n  dlq: {topic: dlq, value: bytes}\npipes:\n  p: {from: in, to: out, filter: {when: 'n > 0'}}\n"
	top, err := topology.Compile("t.yaml", []byte(src), fstest.MapFS{"r.avsc": {Data: []byte(schema)}}, topology.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	task, err := engine.NewTask(top, "in", 0, engine.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var emitted int
	err = task.Process(context.Background(), []*kgo.Record{kr(1, "\x00\x00\x00\x00\x01\x02")}, func(*kgo.Record) { emitted++ })
	if !errors.Is(err, engine.ErrFailed) || !strings.Contains(err.Error(), "schema registry") || emitted != 0 {
		t.Fatalf("err %v, emitted %d: want the batch failed and nothing dead-lettered", err, emitted)
	}
}
