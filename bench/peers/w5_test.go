package main

import (
	"encoding/json"
	"testing"

	"github.com/streamerio/streamer/bench/internal/benchkit"
)

// The W5 oracle (expectedW5, from the generator's order numbers and
// amounts) must agree with the join computed from the values as a system
// sees them: each order re-keyed by the order_id in its JSON, a left and a
// right copy, every left and right pair of one key whose timestamps are at
// most a minute apart joined, the left value with twin_amount set to the
// right one's amount parsed from its JSON. A digest that ignored a wrong
// twin or a lost output would pass anything: one changed output must
// change it.
func TestW5OracleIsTheJoin(t *testing.T) {
	in := benchkit.Input{Records: 3000, Size: 256}
	type rec struct {
		ts    int64 // ms
		value map[string]any
		raw   []byte
	}
	byKey := map[string][]rec{}
	var keys []string
	g := in.Orders()
	for i := 0; i < in.Records; i++ {
		o := g.Next()
		var v map[string]any
		if err := json.Unmarshal(o.Value, &v); err != nil {
			t.Fatal(err)
		}
		id, ok := v["order_id"].(string)
		if !ok {
			t.Fatalf("order %d has no order_id: %s", i, o.Value)
		}
		if _, seen := byKey[id]; !seen {
			keys = append(keys, id)
		}
		// Timestamps as the fill gives them: increasing, well inside a minute.
		byKey[id] = append(byKey[id], rec{ts: 1_700_000_000_000 + int64(i/100), value: v, raw: o.Value})
	}
	join := func(change int) fingerprint {
		var f fingerprint
		n := 0
		for _, k := range keys {
			for _, l := range byKey[k] { // left copies
				for _, r := range byKey[k] { // right copies
					if d := l.ts - r.ts; d < -60_000 || d > 60_000 {
						continue
					}
					var out map[string]any
					if err := json.Unmarshal(l.raw, &out); err != nil {
						t.Fatal(err)
					}
					out["twin_amount"] = r.value["amount"]
					if n == change {
						out["twin_amount"] = r.value["amount"].(float64) + 0.01
					}
					b, err := json.Marshal(out)
					if err != nil {
						t.Fatal(err)
					}
					f.add([]byte(k), b)
					n++
				}
			}
		}
		return f
	}
	got, want := join(-1), expectedW5(in)
	if got != want {
		t.Fatalf("the join of the values gives %v, the oracle %v", got, want)
	}
	if want.n != int64(in.Records) {
		t.Fatalf("the oracle has %d outputs for %d orders, want one each", want.n, in.Records)
	}
	if wrong := join(1234); wrong == want {
		t.Fatal("a wrong twin_amount left the digest as it was")
	}
}
