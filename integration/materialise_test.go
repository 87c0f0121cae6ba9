package integration

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
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
