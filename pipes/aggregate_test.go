package pipes_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/streamerio/streamer/pipes"
)

func TestAggregate(t *testing.T) {
	p, err := build(t, "aggregate", "fields:\n  n: {op: count}\n  total: {op: sum, of: amount}\n  low: {op: min, of: amount}\n  high: {op: max, of: amount}\n  mean: {op: avg, of: amount}\n  last: {op: last, of: country}", []string{"out"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := []struct{ key, value string }{
		{"a", `{"amount":10,"country":"DE"}`},
		{"b", `{"amount":1,"country":"FR"}`},
		{"a", `{"amount":-2,"country":"NL"}`},
		{"a", `{"amount":null,"country":"US"}`},
	}
	out := pipes.NewOutput(1)
	batch := &pipes.Batch{}
	for _, r := range in {
		var v any
		_ = json.Unmarshal([]byte(r.value), &v)
		batch.Records = append(batch.Records, &pipes.Record{Key: []byte(r.key), Value: v})
	}
	batch.Records = append(batch.Records, &pipes.Record{Value: map[string]any{"amount": 1}}) // no key
	if err := p.Process(context.Background(), batch, out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out.Records(0) {
		b, _ := json.Marshal(r.Value)
		got = append(got, string(b))
	}
	want := []string{
		`{"high":10,"key":"a","last":"DE","low":10,"mean":10,"n":1,"total":10}`,
		`{"high":1,"key":"b","last":"FR","low":1,"mean":1,"n":1,"total":1}`,
		`{"high":10,"key":"a","last":"NL","low":-2,"mean":4,"n":2,"total":8}`,
		`{"high":10,"key":"a","last":"US","low":-2,"mean":4,"n":3,"total":8}`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if len(out.Failures()) != 1 {
		t.Errorf("%d failures, want the keyless record", len(out.Failures()))
	}
}
