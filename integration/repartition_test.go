package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

const repartitionTopology = `
name: {{.ID}}
datasets:
  in:
    topic: {{topic "in"}}
  by-group: {}
  counts:
    topic: {{topic "out"}}
    create: {partitions: 6}
pipes:
  regroup:
    from: in
    to: by-group
    map:
      key: g
  count:
    from: by-group
    to: counts
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: n}
`

// groupOf is the group of input record i: the field the records are
// re-keyed by, unrelated to their key (id), so that every group's records
// come from every partition of the input.
func groupOf(i int) string { return "g" + strconv.Itoa(i*7%53) }

// regroupRecords are inputs from..to-1: key id-<i>, value
// {"id":i,"n":i,"g":groupOf(i)}.
func regroupRecords(from, to int) []*kgo.Record {
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		v := fmt.Sprintf(`{"id":%d,"n":%d,"g":%q}`, i, i, groupOf(i))
		recs = append(recs, &kgo.Record{Key: []byte("id-" + strconv.Itoa(i)), Value: []byte(v)})
	}
	return recs
}

// TestRepartitionKillAndRestart: records keyed by id are re-keyed by group
// and counted per group with aggregate, on 6 partitions and 2 replicas;
// one replica is SIGKILLed mid-run and restarted on its state directory.
// The compiler puts a repartition topic between the re-key and the count,
// which the same group consumes in the same transactions. The counts must
// equal the oracle worked out from the inputs, each group's counts running
// 1, 2, 3, ... (no record counted twice or lost, and none counted in
// another partition's state), with one changelog record per input, and the
// repartition topic must hold each input exactly once, keyed by its group
// (so the replicas do not purge it).
func TestRepartitionKillAndRestart(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(repartitionTopology, nil)
	group := "streamer-" + e.id
	repart := group + "-by-group-repartition"
	const n = 40_000
	dir1, dir2 := filepath.Join(e.dir, "state-r1"), filepath.Join(e.dir, "state-r2")
	e.produce("in", regroupRecords(0, 10_000))
	r1 := e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir1, "--purge-interval", "off")
	r2 := e.startArgs(file, "r2", "--metrics-addr", "off", "--state-dir", dir2, "--purge-interval", "off")
	e.waitLagBelow(group, "in", 8_000, r1, r2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 10_000; i < 30_000; i += 4_000 {
			e.produceQuiet("in", regroupRecords(i, i+4_000))
			time.Sleep(150 * time.Millisecond)
		}
	}()
	time.Sleep(400 * time.Millisecond)
	r1.kill()
	time.Sleep(time.Second)
	r1 = e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir1, "--purge-interval", "off")
	<-done
	waitFor(t, "the restarted replica to get partitions", time.Minute, func() bool {
		return assignedRe.MatchString(r1.logText())
	})
	e.produce("in", regroupRecords(30_000, n))
	e.waitConsumed(group, "in", []*replica{r1, r2}, 3*time.Minute)
	// The input is consumed; the counts are done once every record has come
	// back from the repartition topic. Its lag cannot say so: the committed
	// offset stops before each partition's last transaction marker.
	waitFor(t, "every record to be counted", 3*time.Minute, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c, err := topicread.Count(ctx, brokers, e.topic("out"))
		return err == nil && c[e.topic("out")] >= n
	})
	for _, r := range []*replica{r1, r2} {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit %d:\n%s", code, r.log)
		}
	}

	o := newCountOracle()
	for i := range n {
		o.add(groupOf(i), i)
	}
	checkCounts(t, e.topic("out"), group+"-count-changelog", o)
	checkRepartitioned(t, repart, n)
}

// checkRepartitioned reads the repartition topic back read_committed: each
// input id exactly once, under its group's key, in the partition Kafka's
// default partitioner gives that key.
func checkRepartitioned(t *testing.T, topic string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	adm, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer adm.Close()
	td, err := kadm.NewClient(adm).ListTopics(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	parts := len(td[topic].Partitions)
	if parts != 6 {
		t.Errorf("repartition topic %s has %d partitions, want the input's 6", topic, parts)
	}
	part := kgo.StickyKeyPartitioner(nil).ForTopic(topic)
	seen := map[int]int{}
	var faults []string
	err = topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		var v struct{ ID int }
		if err := json.Unmarshal(r.Value, &v); err != nil {
			faults = append(faults, fmt.Sprintf("%q: %v", r.Value, err))
			return
		}
		seen[v.ID]++
		if string(r.Key) != groupOf(v.ID) {
			faults = append(faults, fmt.Sprintf("id %d under key %q, want %q", v.ID, r.Key, groupOf(v.ID)))
		}
		if want := int32(part.Partition(r, parts)); r.Partition != want {
			faults = append(faults, fmt.Sprintf("key %s in partition %d, want %d", r.Key, r.Partition, want))
		}
	}, topic)
	if err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if seen[i] != 1 {
			faults = append(faults, fmt.Sprintf("id %d seen %d times", i, seen[i]))
		}
	}
	if len(seen) != n {
		faults = append(faults, fmt.Sprintf("%d ids for %d inputs", len(seen), n))
	}
	if len(faults) > 0 {
		t.Fatalf("%d faults in %s; the first:\n%s", len(faults), topic, strings.Join(faults[:min(len(faults), 10)], "\n"))
	}
}
