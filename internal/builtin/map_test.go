package builtin_test

import (
	"context"
	"reflect"
	"strings"
	"testing"

	"github.com/streamerio/streamer/pipes"
)

// TestMap: map's steps (compute, set, rename, drop) on flat and nested
// fields, and a record it cannot map left as it was and failed.
func TestMap(t *testing.T) {
	runCases(t, "map", []pipeCase{
		{
			name: "map computes from the input, sets, renames, drops",
			conf: "compute:\n  total: amount * 2\n  amount: amount + 1\nset:\n  src: web\nrename:\n  country: cc\ndrop: [debug]",
			in:   []string{`{"amount":5,"country":"DE","debug":"x"}`},
			want: [][]string{{`{"amount":6,"cc":"DE","src":"web","total":10}`}},
		},
		{
			name: "map nested paths",
			conf: "compute:\n  meta.len: len(items)\nrename:\n  a.b: c\n",
			in:   []string{`{"items":[1,2],"a":{"b":1}}`},
			want: [][]string{{`{"a":{},"c":1,"items":[1,2],"meta":{"len":2}}`}},
		},
		{
			name: "map leaves a failed record untouched", conf: "compute:\n  x: amount * 2",
			in:    []string{`{"amount":"bad"}`, `"not an object"`},
			want:  [][]string{nil},
			fails: []string{`expression "amount * 2"`, "map needs a record with fields"},
		},
	})
}

// TestMapDerivesSchema: map's output schema follows its steps, with the
// kinds of the computed fields.
func TestMapDerivesSchema(t *testing.T) {
	p, err := build(t, "map", "compute:\n  big: amount > 100\n  twice: amount * 2\nset:\n  tag: x\nrename:\n  country: cc\ndrop: [items]", []string{"out"}, orderSchema)
	if err != nil {
		t.Fatal(err)
	}
	s := p.(pipes.SchemaDeriver).OutputSchema(0)
	got := map[string]pipes.Kind{}
	for _, f := range s.Fields {
		got[f.Name] = f.Kind
	}
	want := map[string]pipes.Kind{"amount": pipes.Float64, "cc": pipes.String, "big": pipes.Bool, "twice": pipes.Float64, "tag": pipes.String}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("derived %v, want %v", got, want)
	}
}

// TestMapKey checks the map's key: the new key is the expression's value
// as text, computed from the record as it came in (before the map's other
// steps), and a key that cannot be one fails the record.
func TestMapKey(t *testing.T) {
	cases := []struct {
		name, conf, value string
		// key is the wanted key; "" with fail set means the record fails.
		key, fail string
	}{
		{"string field", "key: country", `{"country":"DE"}`, "DE", ""},
		{"integer", "key: id", `{"id":42}`, "42", ""},
		{"float", "key: x", `{"x":1.5}`, "1.5", ""},
		{"boolean", "key: ok", `{"ok":true}`, "true", ""},
		{"expression", "key: country + '-' + city", `{"country":"DE","city":"Bonn"}`, "DE-Bonn", ""},
		{"before the other steps", "key: country\nset: {country: XX}", `{"country":"DE"}`, "DE", ""},
		{"null", "key: missing", `{"country":"DE"}`, "", "null"},
		{"a record is not a key", "key: addr", `{"addr":{"c":"DE"}}`, "", "a key must be"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := build(t, "map", c.conf, []string{"out"}, nil)
			if err != nil {
				t.Fatal(err)
			}
			if kc, ok := p.(pipes.KeyChanger); !ok || !kc.ChangesKey() {
				t.Error("a map with key: must declare that it changes keys")
			}
			out := pipes.NewOutput(1)
			if err := p.Process(context.Background(), &pipes.Batch{Records: records(t, c.value)}, out); err != nil {
				t.Fatal(err)
			}
			if c.fail != "" {
				fs := out.Failures()
				if len(fs) != 1 || !strings.Contains(fs[0].Err.Error(), c.fail) || len(out.Records(0)) != 0 {
					t.Fatalf("failures %v, emitted %d: want one failure saying %q", fs, len(out.Records(0)), c.fail)
				}
				return
			}
			recs := out.Records(0)
			if len(recs) != 1 || string(recs[0].Key) != c.key {
				t.Fatalf("emitted %d records; want one with key %q", len(recs), c.key)
			}
		})
	}
	// Without key: the key is kept, and the map says so.
	p, err := build(t, "map", "set: {a: 1}", []string{"out"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if kc, ok := p.(pipes.KeyChanger); ok && kc.ChangesKey() {
		t.Error("a map without key: must not declare a key change")
	}
}
