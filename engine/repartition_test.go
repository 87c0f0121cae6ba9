package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
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
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	top := compile(t, regrouping)
	if got := top.TopicsRead(); len(got) != 2 || got[0] != "streamer-regroup-by-group-repartition" || got[1] != "in" {
		t.Fatalf("topics read %v: want in and the repartition topic", got)
	}
	log := slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
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
	run := func(id, dir string, consumed int64) {
		t.Helper()
		e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: id, StateDir: dir, Logger: log, SessionTimeout: 6 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		deadline := time.Now().Add(60 * time.Second)
		for e.Stats().CommittedIn.Load() < consumed {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("replica %s committed %d of %d", id, e.Stats().CommittedIn.Load(), consumed)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("replica %s: %v", id, err)
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	// Every record is consumed twice: from in, then from the repartition
	// topic.
	send(0, batch)
	run("a", dirA, 2*batch)
	send(batch, 2*batch)
	run("b", dirB, 2*batch)
	send(2*batch, 3*batch)
	run("c", dirA, 2*batch)

	seq := map[string][]int{}
	sums := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = topicread.All(ctx, brokers, time.Second, func(r *kgo.Record) {
		var v struct {
			N     int
			Total float64
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Fatal(err)
		}
		k := string(r.Key)
		seq[k] = append(seq[k], v.N)
		sums[k] = int(v.Total)
	}, "out")
	if err != nil {
		t.Fatal(err)
	}
	if len(seq) != groups {
		t.Fatalf("%d keys out (%v), want the %d groups", len(seq), keys(seq), groups)
	}
	for g := 0; g < groups; g++ {
		key := "g" + strconv.Itoa(g)
		want, wantSum := 0, 0
		for i := g; i < 3*batch; i += groups {
			want++
			wantSum += i
		}
		s := seq[key]
		if len(s) != want || sums[key] != wantSum {
			t.Fatalf("group %s: %d outputs (want %d), sum %d (want %d)", key, len(s), want, sums[key], wantSum)
		}
		for i, n := range s {
			if n != i+1 {
				t.Fatalf("group %s: count %d at position %d: a record counted twice, or under another partition's state (%v...)", key, n, i, s[:min(len(s), i+3)])
			}
		}
	}
	// The repartition topic holds every record once, keyed by group, in the
	// partition Kafka's default (murmur2) partitioner gives the group.
	part := kgo.StickyKeyPartitioner(nil).ForTopic("x")
	var n int
	misplaced := map[string]int32{}
	err = topicread.All(ctx, brokers, time.Second, func(r *kgo.Record) {
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

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
