package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/topology"
)

// The exactly-once tests on kfake share these: a cluster, replicas run in
// turn until they have committed what they should, and a check of the
// count and total per key that an aggregate wrote.

// cluster starts a one-broker kfake cluster with topics of the given
// partition counts, and returns its addresses.
func cluster(t *testing.T, topics map[string]int32) []string {
	t.Helper()
	opts := []kfake.Opt{kfake.NumBrokers(1)}
	for topic, n := range topics {
		opts = append(opts, kfake.SeedTopics(n, topic))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

// client returns a client of the cluster, closed when the test ends.
func client(t *testing.T, brokers []string) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// runReplica runs one replica of top with its state in dir until it has
// committed the offsets of consumed records, then stops it. It does not
// purge internal topics, so that tests can read them back; set changes the
// options further.
func runReplica(t *testing.T, top *topology.Topology, brokers []string, id, dir string, consumed int64, set ...func(*engine.Options)) {
	t.Helper()
	log := slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	o := engine.Options{Brokers: brokers, ReplicaID: id, StateDir: dir, Logger: log, SessionTimeout: 6 * time.Second, PurgeInterval: -1}
	for _, f := range set {
		f(&o)
	}
	e, err := engine.New(top, o)
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
		select {
		case err := <-done:
			cancel()
			t.Fatalf("replica %s stopped after committing %d of %d: %v", id, e.Stats().CommittedIn.Load(), consumed, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("replica %s: %v", id, err)
	}
}

// checkCounts reads the outputs of an aggregate with fields n (count) and
// total (sum) from topic, and checks each key's counts run 1, 2, 3, ...
// without a gap or a repeat up to want[key], with the last total
// wantSum[key] (unless wantSum is nil), and that no other key came out.
func checkCounts(t *testing.T, brokers []string, topic string, want, wantSum map[string]int) {
	t.Helper()
	seq, sums := map[string][]int{}, map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := topicread.All(ctx, brokers, time.Second, func(r *kgo.Record) {
		var v struct {
			N     int
			Total float64
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Errorf("output %s: %v", r.Value, err)
			return
		}
		k := string(r.Key)
		seq[k] = append(seq[k], v.N)
		sums[k] = int(v.Total)
	}, topic)
	if err != nil {
		t.Fatal(err)
	}
	if len(seq) != len(want) {
		t.Fatalf("%d keys out (%v), want %d", len(seq), keys(seq), len(want))
	}
	for key, w := range want {
		s := seq[key]
		if len(s) != w || wantSum != nil && sums[key] != wantSum[key] {
			t.Fatalf("key %s: %d outputs (want %d), total %d (want %d)", key, len(s), w, sums[key], wantSum[key])
		}
		for i, n := range s {
			if n != i+1 {
				t.Fatalf("key %s: count %d at position %d: a record counted twice, lost, or counted in another state (%v...)", key, n, i, s[:min(len(s), i+3)])
			}
		}
	}
}

// produced returns the records per key and their sum of ids among the
// first n records of produce(), which keys record i as k<i%50>.
func produced(n int) (count, sum map[string]int) {
	count, sum = map[string]int{}, map[string]int{}
	for i := range n {
		k := "k" + strconv.Itoa(i%50)
		count[k]++
		sum[k] += i
	}
	return count, sum
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
