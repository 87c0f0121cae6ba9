package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

// TestOpenTransactionBelowCheckpoint (issue 13, 2a): a transaction left
// open low on a changelog partition (a paused former owner's, here a
// foreign transactional producer's) holds the partition's last stable
// offset below what the owner has committed since. The owner restarts on
// its state directory while it is open: its store's checkpoint is above
// the last stable offset but not above the high watermark, so the restore
// must wait for the transaction to end, not take the store for one from a
// recreated topic and rebuild it from what read_committed shows (which
// would drop the owner's writes above the open transaction and count on
// from stale values). The counts must still equal the oracle.
func TestOpenTransactionBelowCheckpoint(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 1)
	file := e.writeTopology(countTopology, nil)
	group := "streamer-" + e.id
	changelog := group + "-count-changelog"
	const keys = 97
	dir := filepath.Join(e.dir, "state-r1")
	start := func() *replica { return e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir) }

	e.produce("in", inputRecords(0, 3_000))
	r1 := start()
	e.waitConsumed(group, "in", []*replica{r1}, time.Minute)

	// The foreign transaction opens on the changelog partition, above the
	// owner's writes so far.
	ctx := context.Background()
	zombie, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(e.id+"-zombie"),
		kgo.TransactionTimeout(5*time.Minute), kgo.DefaultProduceTopic(changelog), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer zombie.Close()
	if err := zombie.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := zombie.ProduceSync(ctx, &kgo.Record{Partition: 0, Key: []byte("k0"), Value: []byte(`{"zombie":true}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}

	// The owner commits above it, then stops cleanly: its store's
	// checkpoint is past the last stable offset.
	e.produce("in", inputRecords(3_000, 6_000))
	e.waitConsumed(group, "in", []*replica{r1}, time.Minute)
	if _, code := r1.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r1.logText())
	}
	lso, err := e.admin.ListCommittedOffsets(ctx, changelog)
	if err != nil {
		t.Fatal(err)
	}
	hwm, err := e.admin.ListEndOffsets(ctx, changelog)
	if err != nil {
		t.Fatal(err)
	}
	l, _ := lso.Lookup(changelog, 0)
	h, _ := hwm.Lookup(changelog, 0)
	if l.Offset >= h.Offset-3_000 {
		t.Fatalf("the changelog's last stable offset %d is not held below the owner's writes (high watermark %d)", l.Offset, h.Offset)
	}

	// Restarted while the transaction is open, and fed more records.
	r1 = start()
	e.produce("in", inputRecords(6_000, 9_000))
	time.Sleep(8 * time.Second)
	if err := zombie.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	e.waitConsumed(group, "in", []*replica{r1}, 2*time.Minute)
	if _, code := r1.stop(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, r1.logText())
	}
	if !strings.Contains(r1.logText(), "a transaction open below the store's checkpoint") {
		t.Errorf("the restore did not say it waited for the open transaction:\n%s", r1.logText())
	}
	o := newCountOracle()
	o.addCounted(0, 9_000, keys)
	checkCounts(t, e.topic("out"), changelog, o)
}

const tombstoneTopology = `
name: {{.ID}}
datasets:
  orders:
    topic: {{topic "orders"}}
  customers:
    topic: {{topic "customers"}}
    table: global
  enriched:
    topic: {{topic "enriched"}}
    create: {partitions: 1}
pipes:
  customer:
    from: orders
    to: enriched
    on_error: fail
    join: {table: customers, type: left, fields: {name: name}}
`

// TestTableTombstoneCompactedAway (issue 13, 2c): a table row is deleted
// while the replica is away, and the broker compacts the tombstone away
// (delete.retention.ms passed). The replica restarts on its state
// directory: its store still holds the row, and reading on from its
// checkpoint cannot tell it is gone. The store was out of sync for longer
// than the topic keeps tombstones, so it must be rebuilt: the deleted row
// must not come back in a join.
func TestTableTombstoneCompactedAway(t *testing.T) {
	e := newEnv(t)
	e.createTopic("orders", 1)
	ctx := context.Background()
	cfg := map[string]*string{
		"cleanup.policy":            kadm.StringPtr("compact"),
		"delete.retention.ms":       kadm.StringPtr("1000"),
		"segment.ms":                kadm.StringPtr("300"),
		"min.cleanable.dirty.ratio": kadm.StringPtr("0.01"),
		"min.compaction.lag.ms":     kadm.StringPtr("0"),
	}
	resp, err := e.admin.CreateTopic(ctx, 1, 1, cfg, e.topic("customers"))
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	file := e.writeTopology(tombstoneTopology, nil)
	group := "streamer-" + e.id
	dir := filepath.Join(e.dir, "state-r1")
	start := func() *replica { return e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir) }
	order := func(id int) []*kgo.Record {
		return []*kgo.Record{{Key: []byte("c1"), Value: fmt.Appendf(nil, `{"id":%d}`, id)}}
	}

	e.produce("customers", []*kgo.Record{
		{Key: []byte("c1"), Value: []byte(`{"name":"deleted later"}`)},
		{Key: []byte("c2"), Value: []byte(`{"name":"kept"}`)},
	})
	e.produce("orders", order(0))
	r1 := start()
	e.waitConsumed(group, "orders", []*replica{r1}, time.Minute)
	if _, code := r1.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r1.logText())
	}

	// Away: c1 is deleted, and the cleaner drops the tombstone. Rows keep
	// coming, so that segments roll and the cleaner has work.
	e.produce("customers", []*kgo.Record{{Key: []byte("c1")}})
	deadline := time.Now().Add(3 * time.Minute)
	for i := 0; ; i++ {
		e.produce("customers", []*kgo.Record{{Key: fmt.Appendf(nil, "f%d", i%5), Value: []byte(`{"name":"filler"}`)}})
		if i%10 == 9 {
			c1 := 0
			rctx, cancel := context.WithTimeout(ctx, time.Minute)
			err := topicread.All(rctx, brokers, time.Second, func(r *kgo.Record) {
				if string(r.Key) == "c1" {
					c1++
				}
			}, e.topic("customers"))
			cancel()
			if err != nil {
				t.Fatal(err)
			}
			if c1 == 0 {
				t.Logf("the tombstone of c1 was compacted away after %d filler rows", i+1)
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the broker did not compact the tombstone away within 3 minutes")
		}
		time.Sleep(400 * time.Millisecond)
	}

	r1 = start()
	e.produce("orders", order(1))
	e.waitConsumed(group, "orders", []*replica{r1}, time.Minute)
	if _, code := r1.stop(t); code != 0 {
		t.Errorf("exit %d:\n%s", code, r1.logText())
	}
	names := map[int]string{}
	rctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	err = topicread.All(rctx, brokers, 2*time.Second, func(r *kgo.Record) {
		var v struct {
			ID   int
			Name *string
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Errorf("bad output %s", r.Value)
			return
		}
		names[v.ID] = "<null>"
		if v.Name != nil {
			names[v.ID] = *v.Name
		}
	}, e.topic("enriched"))
	if err != nil {
		t.Fatal(err)
	}
	if names[0] != "deleted later" {
		t.Errorf("order 0 joined %q, want the row then current", names[0])
	}
	if n, ok := names[1]; !ok || n != "<null>" {
		t.Errorf("order 1 joined %q (present %v): the deleted row came back", n, ok)
	}
	if !strings.Contains(r1.logText(), "out of sync longer than its topic keeps tombstones") {
		t.Errorf("the replica did not say why it rebuilt the table:\n%s", r1.logText())
	}
}
