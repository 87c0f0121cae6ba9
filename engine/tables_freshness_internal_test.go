package engine

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

type freshnessRecorder struct {
	mu     sync.Mutex
	events []TableFreshness
}

func (r *freshnessRecorder) OnTableFreshness(f TableFreshness) {
	r.mu.Lock()
	r.events = append(r.events, f)
	r.mu.Unlock()
}

func (r *freshnessRecorder) take() []TableFreshness {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.events
	r.events = nil
	return out
}

// TestTableFreshnessHook: a table partition is reported caught up when it
// opens; a catch-up that does not reach the topic's end reports it behind
// since the last catch-up that did; the next one that does reports it
// caught up again; catch-ups that change nothing report nothing; closing
// it says so.
func TestTableFreshnessHook(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "customers"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	top, err := topology.Compile("t.yaml", []byte(`
name: fresh
datasets:
  orders:    {topic: orders}
  customers: {topic: customers, table: partitioned}
  out: {topic: out, create: {partitions: 1}}
pipes:
  customer: {from: orders, to: out, join: {table: customers, fields: {name: name}}}
`), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("customers"))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	produce := func(from, to int) {
		t.Helper()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, kgo.StringRecord(fmt.Sprintf(`{"name":"n%d"}`, i)))
		}
		if err := pcl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produce(0, 100)

	rec := &freshnessRecorder{}
	o := Options{Brokers: brokers, StateDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	m := newMaterialiser(top, &o)
	defer m.close()
	s := newTableSyncer(top, &o, m, sortHooks([]Hook{rec}))
	defer s.stop()
	tbl, err := s.OpenTable("customers", 0)
	if err != nil {
		t.Fatal(err)
	}
	if ev := rec.take(); len(ev) != 1 || ev[0] != (TableFreshness{Table: "customers", Partition: 0}) {
		t.Fatalf("on opening: %+v, want customers[0] caught up", ev)
	}
	poll := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "orders", Partitions: []kgo.FetchPartition{{Partition: 0, Records: []*kgo.Record{{Topic: "orders"}}}}}}}}
	ctx := context.Background()
	before := time.Now()
	if err := s.sync(ctx, poll); err != nil {
		t.Fatal(err)
	}
	after := time.Now()
	if ev := rec.take(); len(ev) != 0 {
		t.Fatalf("a catch-up that reached the end: %+v, want nothing new", ev)
	}

	// A catch-up out of budget at once: the partition stays behind.
	produce(100, 200)
	tp := s.parts[tableKey{"customers", 0}]
	if err := s.catchUp(ctx, map[*tablePart]bool{tp: true}, time.Nanosecond); err == nil {
		t.Fatal("a catch-up with no budget reached the end")
	}
	ev := rec.take()
	if len(ev) != 1 || ev[0].Table != "customers" || ev[0].Closed || ev[0].BehindSince.Before(before) || ev[0].BehindSince.After(after) {
		t.Fatalf("a catch-up that fell short: %+v, want customers[0] behind since the last catch-up, between %v and %v", ev, before, after)
	}
	if err := s.catchUp(ctx, map[*tablePart]bool{tp: true}, time.Nanosecond); err == nil {
		t.Fatal("a catch-up with no budget reached the end")
	}
	if ev := rec.take(); len(ev) != 0 {
		t.Fatalf("still behind: %+v, want nothing new", ev)
	}
	if err := s.sync(ctx, poll); err != nil {
		t.Fatal(err)
	}
	if ev := rec.take(); len(ev) != 1 || ev[0] != (TableFreshness{Table: "customers", Partition: 0}) {
		t.Fatalf("caught up again: %+v, want customers[0] caught up", ev)
	}
	if err := tbl.(io.Closer).Close(); err != nil {
		t.Fatal(err)
	}
	if ev := rec.take(); len(ev) != 1 || ev[0] != (TableFreshness{Table: "customers", Partition: 0, Closed: true}) {
		t.Fatalf("on closing: %+v", ev)
	}
}
