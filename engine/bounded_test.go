package engine

import (
	"context"
	"log/slog"
	"slices"
	"testing"
	"time"

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

// TestBoundedAbortLiftsPauses: the partitions filter paused in a
// transaction that aborts are resumed (the abort rewinds them to before
// their ends: paused, they would never be read again and the run would
// not end), those of a committed one stay paused, and those revoked
// meanwhile are left alone (the engine resumed them, and a restore may
// hold them paused again).
func TestBoundedAbortLiftsPauses(t *testing.T) {
	top := &topology.Topology{Group: "g", Datasets: map[string]*topology.Dataset{}}
	b := newBounded(top, Options{Logger: slog.Default(), Bounds: &Bounds{End: map[string]map[int32]int64{"in": {0: 10, 1: 10, 2: 10}}}})
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poll := func(ps ...int32) {
		var fps []kgo.FetchPartition
		for _, p := range ps {
			fps = append(fps, kgo.FetchPartition{Partition: p, Records: recs("in", p, 5, 12)})
		}
		b.filter(context.Background(), kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: fps}}}}, cl)
	}
	paused := func() []int32 {
		ps := cl.PauseFetchPartitions(nil)["in"]
		slices.Sort(ps)
		return ps
	}
	poll(0)
	b.ended(true, cl)
	poll(1, 2)
	if got := paused(); !slices.Equal(got, []int32{0, 1, 2}) {
		t.Fatalf("paused %v before the abort, want [0 1 2]", got)
	}
	b.revoked(map[string][]int32{"in": {2}})
	b.ended(false, cl)
	if got := paused(); !slices.Equal(got, []int32{0, 2}) {
		t.Errorf("paused %v after the abort, want [0 2]: 0 committed, 1 resumed, 2 revoked", got)
	}
}

// BenchmarkBoundedFilter is the per-record cost a bounded run adds to a
// poll: a poll of 12 partitions of 500 records each (the bench's 6,000),
// none at its end. Reported per record, to set against the ~11 µs of CPU
// a record of bench/topology.yaml costs in all.
func BenchmarkBoundedFilter(b *testing.B) {
	const parts, per = 12, 500
	end := map[int32]int64{}
	for p := range int32(parts) {
		end[p] = 1 << 40
	}
	top := &topology.Topology{Group: "g", Datasets: map[string]*topology.Dataset{}}
	bd := newBounded(top, Options{Logger: slog.Default(), Bounds: &Bounds{End: map[string]map[int32]int64{"in": end}}})
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	all := make([][]*kgo.Record, parts)
	for p := range all {
		all[p] = recs("in", int32(p), 0, per)
	}
	fetches := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: make([]kgo.FetchPartition, parts)}}}}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ps := fetches[0].Topics[0].Partitions
		for p := range ps {
			ps[p] = kgo.FetchPartition{Partition: int32(p), Records: all[p]}
		}
		bd.filter(context.Background(), fetches, cl)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*parts*per), "ns/record")
}

// TestBoundedFullPollNotCaughtUp: a full poll is not caught up because a
// bounded run's filter drops most of it (the records past a partition's
// end): the poll said more may be waiting, so the transaction keeps its
// commit interval; the tasks and the transaction count only the records
// kept. A short poll, filtered or not, is caught up.
func TestBoundedFullPollNotCaughtUp(t *testing.T) {
	top := &topology.Topology{Group: "g", Datasets: map[string]*topology.Dataset{}}
	o := Options{Logger: slog.Default(), CommitInterval: 4 * time.Second, MinCommitInterval: 100 * time.Millisecond,
		Bounds: &Bounds{End: map[string]map[int32]int64{"in": {0: 10, 1: 1000}}}}
	e := &Engine{opts: o, bounds: newBounded(top, o)}
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	const limit = 100
	for _, tc := range []struct {
		name     string
		fetched  []kgo.FetchPartition
		kept     int
		caughtUp bool
	}{
		// 100 records, 90 of them past partition 0's end.
		{"full poll mostly past the end", []kgo.FetchPartition{{Partition: 0, Records: recs("in", 0, 0, 100)}}, 10, false},
		// 100 records, none dropped.
		{"full poll", []kgo.FetchPartition{{Partition: 1, Records: recs("in", 1, 0, 100)}}, 100, false},
		// 50 records, 40 past the end.
		{"short poll past the end", []kgo.FetchPartition{{Partition: 0, Records: recs("in", 0, 0, 50)}}, 10, true},
		{"short poll", []kgo.FetchPartition{{Partition: 1, Records: recs("in", 1, 0, 50)}}, 50, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tx := &txn{e: e, open: true, start: time.Now()} // open: take does not begin one
			fetches := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "in", Partitions: tc.fetched}}}}
			polled := fetches.NumRecords()
			n, todo, err := e.take(context.Background(), tx, cl, fetches, limit)
			if err != nil || !todo {
				t.Fatalf("take: %d records, todo %v, err %v", n, todo, err)
			}
			if n != tc.kept || tx.records != int64(tc.kept) {
				t.Errorf("take: %d records for the tasks, %d in the transaction; want the %d kept", n, tx.records, tc.kept)
			}
			want := o.CommitInterval
			if tc.caughtUp {
				want = o.MinCommitInterval
			}
			if tx.caughtUp != tc.caughtUp || tx.age() != want {
				t.Errorf("caught up %v (the transaction may stay open %v) after a poll of %d records, limit %d: want %v (%v)",
					tx.caughtUp, tx.age(), polled, limit, tc.caughtUp, want)
			}
			cl.ResumeFetchPartitions(map[string][]int32{"in": {0, 1}})
		})
	}
}
