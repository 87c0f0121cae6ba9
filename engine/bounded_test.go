package engine

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

func recs(topic string, p int32, from, to int64) []*kgo.Record {
	var out []*kgo.Record
	for o := from; o < to; o++ {
		out = append(out, &kgo.Record{Topic: topic, Partition: p, Offset: o})
	}
	return out
}

// TestBoundedFilter: records at or past a partition's end are dropped and
// the partition paused, a partition of a source topic outside the bounds is
// dropped whole, and internal topics pass untouched.
func TestBoundedFilter(t *testing.T) {
	top := &topology.Topology{Group: "g", Datasets: map[string]*topology.Dataset{}}
	b := newBounded(top, Options{Logger: slog.Default(), Bounds: &Bounds{End: map[string]map[int32]int64{"in": {0: 10, 1: 100}}}})
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	fetches := kgo.Fetches{{Topics: []kgo.FetchTopic{
		{Topic: "in", Partitions: []kgo.FetchPartition{
			{Partition: 0, Records: recs("in", 0, 5, 15)},
			{Partition: 1, Records: recs("in", 1, 5, 15)},
			{Partition: 2, Records: recs("in", 2, 0, 3)},
		}},
		{Topic: "g-x-repartition", Partitions: []kgo.FetchPartition{{Partition: 0, Records: recs("g-x-repartition", 0, 0, 4)}}},
	}}}
	// Unknown to the bounds, "in" has no entry for partition 2.
	if dropped := b.filter(context.Background(), fetches, cl); !dropped {
		t.Error("filter reported nothing dropped")
	}
	got := map[string][]int64{}
	fetches.EachRecord(func(r *kgo.Record) {
		k := r.Topic + "/" + string(rune('0'+r.Partition))
		got[k] = append(got[k], r.Offset)
	})
	want := map[string][]int64{
		"in/0":              {5, 6, 7, 8, 9},
		"in/1":              {5, 6, 7, 8, 9, 10, 11, 12, 13, 14},
		"g-x-repartition/0": {0, 1, 2, 3},
	}
	if len(got) != len(want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for k, w := range want {
		if !slices.Equal(got[k], w) {
			t.Errorf("%s: got %v, want %v", k, got[k], w)
		}
	}
	paused := cl.PauseFetchPartitions(nil)
	slices.Sort(paused["in"])
	if !slices.Equal(paused["in"], []int32{0, 2}) || len(paused) != 1 {
		t.Errorf("paused %v, want in: [0 2]", paused)
	}
}
