package engine_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/topicread"
)

const counting = `
name: counts
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 4}}
pipes:
  count:
    from: in
    to: out
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: id}
`

// TestStateSurvivesReplicasAndLostDirs counts per key across three
// replicas in turn: the second starts with an empty state directory (it
// restores from the changelog), the third reuses the first's directory (it
// restores from its checkpoint on). Every key's counts must run 1, 2, 3, ...
// without a gap or a repeat, and end at the number of its records.
func TestStateSurvivesReplicasAndLostDirs(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	top := compile(t, counting)
	dirA, dirB := t.TempDir(), t.TempDir()
	log := slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	run := func(id, dir string, total int64) {
		t.Helper()
		e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: id, StateDir: dir, Logger: log, SessionTimeout: 6 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		deadline := time.Now().Add(30 * time.Second)
		for e.Stats().CommittedIn.Load() < total {
			if time.Now().After(deadline) {
				cancel()
				t.Fatalf("replica %s committed %d of %d", id, e.Stats().CommittedIn.Load(), total)
			}
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("replica %s: %v", id, err)
		}
	}
	const batch = 3000
	if err := produce(brokers, 0, batch); err != nil {
		t.Fatal(err)
	}
	run("a", dirA, batch)
	if err := produce(brokers, batch, 2*batch); err != nil {
		t.Fatal(err)
	}
	run("b", dirB, batch)
	if err := produce(brokers, 2*batch, 3*batch); err != nil {
		t.Fatal(err)
	}
	run("c", dirA, batch)

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
		seq[string(r.Key)] = append(seq[string(r.Key)], v.N)
		sums[string(r.Key)] = int(v.Total)
	}, "out")
	if err != nil {
		t.Fatal(err)
	}
	// produce() keys record i as k<i%50>.
	for k := 0; k < 50; k++ {
		key := "k" + itoa(k)
		want, wantSum := 0, 0
		for i := k; i < 3*batch; i += 50 {
			want++
			wantSum += i
		}
		s := seq[key]
		if len(s) != want || sums[key] != wantSum {
			t.Fatalf("key %s: %d outputs (want %d), sum %d (want %d)", key, len(s), want, sums[key], wantSum)
		}
		for i, n := range s {
			if n != i+1 {
				t.Fatalf("key %s: count %d at position %d: state lost or doubled (%v...)", key, n, i, s[:min(len(s), i+3)])
			}
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
