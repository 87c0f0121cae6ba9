package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

// regrouping re-keys records from their id to a group field and counts per
// group: the compiler must put a repartition topic between the map and the
// aggregate, or a group's records would be counted in several partitions.
const regrouping = `
name: regroup
datasets:
  in:  {topic: in}
  by-group: {}
  out: {topic: out, create: {partitions: 2}}
pipes:
  rekey:
    from: in
    to: by-group
    map:
      key: g
  count:
    from: by-group
    to: out
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: id}
`

// TestRepartitionCountsExactlyOnce runs the regrouping topology on kfake
// with three replicas in turn (the second on an empty state directory), so
// that both the source and the repartition topic resume from committed
// offsets. Each group's counts must run 1, 2, 3, ... with no gap or repeat,
// and end at the number of inputs in the group; a record counted under its
// old key (no repartition) or twice (not exactly once) breaks that.
func TestRepartitionCountsExactlyOnce(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 3})
	top := compile(t, regrouping)
	if got := top.TopicsRead(); len(got) != 2 || got[0] != "streamer-regroup-by-group-repartition" || got[1] != "in" {
		t.Fatalf("topics read %v: want in and the repartition topic", got)
	}
	const groups, batch = 7, 2000
	// Records are keyed by id (k<id>), so a group's records are spread over
	// every partition of in.
	send := func(from, to int) {
		t.Helper()
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: "in", Key: []byte("k" + strconv.Itoa(i)), Value: fmt.Appendf(nil, `{"id":%d,"g":"g%d"}`, i, i%groups)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	// Every record is consumed twice: from in, then from the repartition
	// topic.
	send(0, batch)
	runReplica(t, top, brokers, "a", dirA, 2*batch)
	send(batch, 2*batch)
	runReplica(t, top, brokers, "b", dirB, 2*batch)
	send(2*batch, 3*batch)
	runReplica(t, top, brokers, "c", dirA, 2*batch)

	want, wantSum := map[string]int{}, map[string]int{}
	for i := range 3 * batch {
		want["g"+strconv.Itoa(i%groups)]++
		wantSum["g"+strconv.Itoa(i%groups)] += i
	}
	checkCounts(t, brokers, "out", want, wantSum)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// The repartition topic holds every record once, keyed by group, in the
	// partition Kafka's default (murmur2) partitioner gives the group.
	part := kgo.StickyKeyPartitioner(nil).ForTopic("x")
	var n int
	misplaced := map[string]int32{}
	err := topicread.All(ctx, brokers, time.Second, func(r *kgo.Record) {
		n++
		if want := int32(part.Partition(r, 3)); r.Partition != want {
			misplaced[string(r.Key)] = r.Partition
		}
	}, "streamer-regroup-by-group-repartition")
	if err != nil {
		t.Fatal(err)
	}
	if n != 3*batch || len(misplaced) > 0 {
		t.Errorf("repartition topic holds %d committed records (want %d); keys in the wrong partition: %v", n, 3*batch, misplaced)
	}
}

// TestLatestStartsInternalTopicsFromTheirStart: start_offset latest is for
// the external sources. Records in a repartition topic that the group has
// no committed offset for (a replica wrote them and died before its group
// consumed them) must be read, or they are lost.
func TestLatestStartsInternalTopicsFromTheirStart(t *testing.T) {
	const topic = "streamer-regroup-by-group-repartition"
	brokers := cluster(t, map[string]int32{"in": 3, topic: 3})
	top := compile(t, regrouping+"processing: {start_offset: latest}\n")
	const groups, n = 7, 300
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	want, wantSum := map[string]int{}, map[string]int{}
	for i := range n {
		g := "g" + strconv.Itoa(i%groups)
		want[g]++
		wantSum[g] += i
		recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(g), Value: fmt.Appendf(nil, `{"id":%d,"g":"%s"}`, i, g)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	runReplica(t, top, brokers, "a", t.TempDir(), n)
	checkCounts(t, brokers, "out", want, wantSum)
}
