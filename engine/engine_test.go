package engine_test

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/topicread"
)

const passthrough = `
name: eos
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 4}}
pipes:
  tag:
    from: in
    to: out
    on_error: fail
    map: {compute: {double: id * 2}}
`

// TestExactlyOnceAcrossRebalances runs replicas on an in-process Kafka, adds
// one and stops another while records flow, and checks that the output holds
// every input exactly once, in order per key.
func TestExactlyOnceAcrossRebalances(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 6})
	top := compile(t, passthrough)

	const n = 20000
	// Records arrive in steady chunks while replicas come and go.
	produced := make(chan error, 1)
	go func() {
		for i := 0; i < n; i += 500 {
			if err := produce(brokers, i, i+500); err != nil {
				produced <- err
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		produced <- nil
	}()

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	start := func(id string) (*engine.Engine, context.CancelFunc, chan error) {
		e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: id, Logger: log, SessionTimeout: 6 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		return e, cancel, done
	}
	committed := func(es ...*engine.Engine) int64 {
		var c int64
		for _, e := range es {
			c += e.Stats().CommittedIn.Load()
		}
		return c
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	a, stopA, doneA := start("a")
	waitFor("a to commit", func() bool { return committed(a) > 2000 })
	b, stopB, doneB := start("b")
	waitFor("b to commit", func() bool { return committed(b) > 1000 })
	stopA() // a leaves mid-stream: b takes over its partitions
	if err := <-doneA; err != nil {
		t.Fatalf("replica a: %v", err)
	}
	if err := <-produced; err != nil {
		t.Fatal(err)
	}
	waitFor("all records committed", func() bool { return committed(a, b) >= n })
	stopB()
	if err := <-doneB; err != nil {
		t.Fatalf("replica b: %v", err)
	}
	if c := committed(a, b); c != n {
		t.Errorf("committed %d input records, want %d", c, n)
	}

	checkExactlyOnce(t, brokers, n)
}

// checkExactlyOnce reads "out" read_committed and checks it holds each of
// ids 0..n-1 once, doubled, in order per key.
func checkExactlyOnce(t *testing.T, brokers []string, n int) {
	t.Helper()
	seen := map[int]int{}
	lastPerKey := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := topicread.All(ctx, brokers, time.Second, func(r *kgo.Record) {
		var v struct{ ID, Double int }
		if err := json.Unmarshal(r.Value, &v); err != nil || v.Double != 2*v.ID {
			t.Errorf("bad output %s: %v", r.Value, err)
		}
		seen[v.ID]++
		if last, ok := lastPerKey[string(r.Key)]; ok && v.ID <= last {
			t.Errorf("key %s: id %d after %d, order lost", r.Key, v.ID, last)
		}
		lastPerKey[string(r.Key)] = v.ID
	}, "out")
	if err != nil {
		t.Fatal(err)
	}
	dups, missing := 0, 0
	for i := 0; i < n; i++ {
		switch seen[i] {
		case 0:
			missing++
		case 1:
		default:
			dups++
		}
	}
	if dups != 0 || missing != 0 || len(seen) != n {
		t.Fatalf("output: %d duplicated, %d missing, %d distinct of %d", dups, missing, len(seen), n)
	}
}

func produce(brokers []string, from, to int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		recs = append(recs, &kgo.Record{Topic: "in", Key: []byte(fmt.Sprintf("k%d", i%50)), Value: []byte(fmt.Sprintf(`{"id":%d}`, i))})
	}
	return cl.ProduceSync(context.Background(), recs...).FirstErr()
}

// TestMissingTopics checks the start-up error names every missing topic the
// job does not own.
func TestMissingTopics(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	top := compile(t, passthrough)
	e, err := engine.New(top, engine.Options{Brokers: cluster.ListenAddrs(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	err = e.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "missing topics: in (") {
		t.Fatalf("Run = %v, want the missing topic named", err)
	}
}

// TestCompression: processing.compression sets the codec of every batch the
// replica produces, read back from the output topic.
func TestCompression(t *testing.T) {
	for _, tt := range []struct {
		name string
		want uint8 // the batch attribute's codec: 0 none, 1 gzip, 2 snappy, 3 lz4, 4 zstd
	}{{"", 2}, {"zstd", 4}, {"lz4", 3}, {"gzip", 1}, {"none", 0}} {
		t.Run(cmp.Or(tt.name, "default"), func(t *testing.T) {
			brokers := cluster(t, map[string]int32{"in": 2})
			src := passthrough
			if tt.name != "" {
				src += "processing: {compression: " + tt.name + "}\n"
			}
			top := compile(t, src)
			if err := produce(brokers, 0, 200); err != nil {
				t.Fatal(err)
			}
			runReplica(t, top, brokers, "a", t.TempDir(), 200)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			n := 0
			err := topicread.All(ctx, brokers, time.Second, func(r *kgo.Record) {
				n++
				if got := r.Attrs.CompressionType(); got != tt.want {
					t.Fatalf("record at out[%d]@%d: codec %d, want %d", r.Partition, r.Offset, got, tt.want)
				}
			}, "out")
			if err != nil || n != 200 {
				t.Fatalf("read %d records, %v; want 200", n, err)
			}
		})
	}
}
