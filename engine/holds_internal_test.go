package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

// paused returns the paused partitions of topic t.
func paused(cl *kgo.Client, t string) []int32 {
	ps := slices.Clone(cl.PauseFetchPartitions(nil)[t])
	slices.Sort(ps)
	return ps
}

// TestHolds: a partition stays paused until the last of its holds lets go,
// and a hold of an earlier assignment lets go of nothing.
func TestHolds(t *testing.T) {
	cl, err := kgo.NewClient(kgo.SeedBrokers("127.0.0.1:1"), kgo.ConsumeTopics("in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	h := newHolds()
	p0, p1 := partitionKey{"in", 0}, partitionKey{"in", 1}

	restore, load := h.take(cl, p0), h.take(cl, p0)
	other := h.take(cl, p1)
	var again *hold // p1's hold after it is assigned again
	steps := []struct {
		name string
		do   func()
		want []int32
	}{
		{"both held", func() {}, []int32{0, 1}},
		{"the restore lets go: the load still holds 0", func() { h.release(cl, p0, restore) }, []int32{0, 1}},
		{"the load lets go", func() { h.release(cl, p0, load) }, []int32{1}},
		{"1 revoked: the engine resumes it", func() {
			h.forget(map[string][]int32{"in": {1}})
			cl.ResumeFetchPartitions(map[string][]int32{"in": {1}})
		}, nil},
		{"1 assigned again and held", func() { again = h.take(cl, p1) }, []int32{1}},
		{"the hold of the first assignment lets go of nothing", func() { h.release(cl, p1, other) }, []int32{1}},
		{"the new hold lets go", func() { h.release(cl, p1, again) }, nil},
	}
	for _, s := range steps {
		s.do()
		if got := paused(cl, "in"); !slices.Equal(got, s.want) {
			t.Fatalf("%s: paused %v, want %v", s.name, got, s.want)
		}
	}
	if n := h.held(); n != 0 {
		t.Fatalf("%d partitions still held", n)
	}
}

// TestTablesLoadedOnAssignment: the tables that newly assigned partitions
// join are read in the background, with the partitions paused and the
// syncer reporting a load under way, up to the end of their topics; then
// the partitions are resumed and the stores hold every row.
func TestTablesLoadedOnAssignment(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders", "customers"), kfake.SeedTopics(2, "countries"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	top, err := topology.Compile("t.yaml", []byte(`
name: joins
datasets:
  orders:    {topic: orders}
  customers: {topic: customers, table: partitioned}
  countries: {topic: countries, table: global}
  mid: {}
  out: {topic: out, create: {partitions: 3}}
pipes:
  customer: {from: orders, to: mid, join: {table: customers, fields: {name: name}}}
  country: {from: mid, to: out, join: {table: countries, on: cc, fields: {country: name}}}
`), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}

	// Rows, some keys written twice and some deleted: want holds the
	// latest per key.
	want := map[string]map[string]string{"customers": {}, "countries": {}}
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	var recs []*kgo.Record
	for i := range 30_000 {
		topic, key := "customers", fmt.Sprintf("c%d", i%20_000)
		if i%10 == 0 {
			topic, key = "countries", fmt.Sprintf("C%d", i%700)
		}
		v, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("n%d", i)})
		if i%13 == 0 {
			v = nil
			delete(want[topic], key)
		} else {
			want[topic][key] = string(v)
		}
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: v})
	}
	if err := pcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}

	dir := t.TempDir()
	faults := &phaseCounter{n: map[Phase]int{}}
	o := Options{Brokers: brokers, StateDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Faults: faults}
	m := newMaterialiser(top, &o)
	defer m.close()
	s := newTableSyncer(top, &o, m, &hooks{})
	defer s.stop()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	h := newHolds()
	s.prepare(cl, map[string][]int32{"orders": {0, 2}}, h)
	if s.loading() != 2 || h.held() != 2 || !slices.Equal(paused(cl, "orders"), []int32{0, 2}) {
		t.Fatalf("right after the assignment: %d partitions loading, %d held, paused %v; want 2, 2, [0 2]", s.loading(), h.held(), paused(cl, "orders"))
	}
	deadline := time.Now().Add(30 * time.Second)
	for s.loading() > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the load did not end")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if h.held() != 0 || len(paused(cl, "orders")) != 0 {
		t.Fatalf("after the load: %d held, paused %v", h.held(), paused(cl, "orders"))
	}
	if faults.count(PhaseMidTableLoad) == 0 {
		t.Error("the table load never reached PhaseMidTableLoad")
	}
	s.mu.Lock()
	open := len(s.parts)
	s.mu.Unlock()
	if open != 0 {
		t.Fatalf("the load left %d table stores open", open)
	}

	// What is on disk: customers partitions 0 and 2 only (partition 1 is
	// not assigned here), every partition of the global countries table.
	got := map[string]map[string]string{"customers": {}, "countries": {}}
	for _, c := range []struct {
		table string
		parts []int32
	}{{"customers", []int32{0, 2}}, {"countries", []int32{0, 1}}} {
		for _, p := range c.parts {
			st, err := state.OpenPebble(state.Dir(dir, top.Group, "table-"+c.table, p))
			if err != nil {
				t.Fatal(err)
			}
			if _, ok, err := st.Checkpoint(); !ok || err != nil {
				t.Errorf("%s[%d]: no checkpoint (%v)", c.table, p, err)
			}
			err = st.Range(nil, nil, func(k, v []byte) bool {
				got[c.table][string(k)] = string(v)
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			st.Close()
		}
	}
	// Partition 1 of customers was not read: drop its keys from want.
	for k := range want["customers"] {
		r := &kgo.Record{Key: []byte(k)}
		if p := kgo.StickyKeyPartitioner(nil).ForTopic("customers").Partition(r, 3); p == 1 {
			delete(want["customers"], k)
		}
	}
	for _, table := range []string{"customers", "countries"} {
		if len(got[table]) != len(want[table]) {
			t.Errorf("%s: %d rows on disk, want %d", table, len(got[table]), len(want[table]))
		}
		for k, v := range want[table] {
			if got[table][k] != v {
				t.Errorf("%s[%s] = %q, want %q", table, k, got[table][k], v)
				break
			}
		}
	}
}
