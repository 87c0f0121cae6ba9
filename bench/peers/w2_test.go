package main

import (
	"encoding/json"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
)

// The W2 oracle, recomputed from the order values as a system sees them
// (amount parsed from the JSON), must agree with expectedW2, which takes
// the generator's fields; and the ticks must close every window of every
// partition: one known customer per partition, after every window's end.
func TestW2OracleAndTicks(t *testing.T) {
	w := w2Input{in: benchkit.Input{Records: 70000, Size: 64}, base: 1_700_000_040_000, partitions: 6}
	want := expectedW2(w)
	got := map[w2Window]w2Agg{}
	g := w.in.Orders()
	dropped := 0
	for i := 0; i < w.in.Records; i++ {
		o := g.Next()
		var v struct {
			Amount float64 `json:"amount"`
		}
		if err := json.Unmarshal(o.Value, &v); err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(strings.TrimPrefix(string(o.Key), "c-"))
		if n >= w2Known {
			dropped++
			continue
		}
		ts := w.base + int64(i)
		k := w2Window{key: string(o.Key), start: ts / 60_000 * 60_000}
		a := got[k]
		a.n++
		a.cents += int64(math.Round(v.Amount * 100))
		a.segment = w2Segments[n%3]
		got[k] = a
	}
	if len(got) != len(want) {
		t.Fatalf("%d windows from the values, %d from the oracle", len(got), len(want))
	}
	for k, a := range want {
		if got[k] != a {
			t.Fatalf("window %v: %+v from the values, %+v from the oracle", k, got[k], a)
		}
	}
	if dropped == 0 || dropped > w.in.Records/5 {
		t.Fatalf("the join drops %d of %d orders, want about a tenth", dropped, w.in.Records)
	}
	lastEnd := int64(0)
	for k := range want {
		lastEnd = max(lastEnd, k.start+60_000)
	}
	seen := map[int]bool{}
	part := kgo.StickyKeyPartitioner(nil).ForTopic("")
	for _, r := range w.ticks() {
		p := part.Partition(r, w.partitions)
		n, err := strconv.Atoi(strings.TrimPrefix(string(r.Key), "c-"))
		if err != nil || n >= w2Known || seen[p] || r.Timestamp.UnixMilli() <= lastEnd {
			t.Fatalf("tick %s at %v (partition %d): want a known customer, one per partition, after %d", r.Key, r.Timestamp, p, lastEnd)
		}
		seen[p] = true
	}
	if len(seen) != w.partitions {
		t.Fatalf("ticks for %d of %d partitions", len(seen), w.partitions)
	}
}
