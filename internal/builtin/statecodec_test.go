package builtin

import (
	"bytes"
	"encoding/json"
	"math"
	"reflect"
	"testing"
)

// TestStateCodecMatchesEncodingJSON: the state codec writes the bytes
// encoding/json writes, and reads back what encoding/json reads, so that
// stores and changelogs written before it (with encoding/json) read the
// same, and new ones are the same bytes. The states cover the
// accumulators' fields with awkward values: escaping, HTML characters,
// line separators, floats at the edges of their formats, big integers and
// nested values kept by last.
func TestStateCodecMatchesEncodingJSON(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	i := func(v int64) *int64 { return &v }
	lasts := []any{
		nil, true, "plain", "<a href=\"x\">&amp;</a>", "line\u2028sep\u2029", "tab\t\"quote\"\\ \x01\x1f",
		"日本語 ✓ é", 0.1, 1e21, 1e20, 1e-7, 1e-6, math.Copysign(0, -1), 123456789012345678.0, math.MaxFloat64, math.SmallestNonzeroFloat64,
		map[string]any{"b": 1.5, "a": []any{"x", nil, false}, "<k>": map[string]any{}},
		[]any{}, []any{1.0, "two", map[string]any{"z": nil}},
	}
	var states []winState
	for n, l := range lasts {
		states = append(states, winState{TS: int64(n) * 1_700_000_000_001, Acc: acc{
			"count":   {N: int64(n)},
			"sum":     {N: 3, Sum: []float64{0, 0.1, -2.5e-9, 1e300, 7}[n%5]},
			"best":    {Best: f([]float64{math.Copysign(0, -1), 3.25, 1e21}[n%3])},
			"last":    {Last: l, At: i(int64(n) - 5)},
			"<html>&": {N: math.MaxInt64},
		}})
	}
	states = append(states, winState{TS: math.MinInt64}, winState{Acc: acc{}})
	for _, s := range states {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		got, err := marshalState(s)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("marshalState wrote\n%s\nencoding/json writes\n%s", got, want)
		}
		var a, b winState
		if err := json.Unmarshal(want, &a); err != nil {
			t.Fatal(err)
		}
		if err := unmarshalState(want, &b); err != nil {
			t.Fatalf("unmarshalState(%s): %v", want, err)
		}
		if !reflect.DeepEqual(a, b) {
			t.Errorf("%s: unmarshalState read %#v, encoding/json %#v", want, b, a)
		}
	}
	// The aggregate's state is an acc alone.
	for _, s := range states {
		want, _ := json.Marshal(s.Acc)
		got, err := marshalState(s.Acc)
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("acc: marshalState wrote %s (%v), encoding/json %s", got, err, want)
		}
	}
}
