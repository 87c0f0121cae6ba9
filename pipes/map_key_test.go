package pipes_test

import (
	"context"
	"strings"
	"testing"

	"github.com/streamerio/streamer/pipes"
)

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
