package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/pipes"
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
	brokers := cluster(t, map[string]int32{"in": 3})
	top := compile(t, counting)
	dirA, dirB := t.TempDir(), t.TempDir()
	const batch = 3000
	if err := produce(brokers, 0, batch); err != nil {
		t.Fatal(err)
	}
	runReplica(t, top, brokers, "a", dirA, batch)
	if err := produce(brokers, batch, 2*batch); err != nil {
		t.Fatal(err)
	}
	runReplica(t, top, brokers, "b", dirB, batch)
	if err := produce(brokers, 2*batch, 3*batch); err != nil {
		t.Fatal(err)
	}
	runReplica(t, top, brokers, "c", dirA, batch)

	want, wantSum := produced(3 * batch)
	checkCounts(t, brokers, "out", want, wantSum)
}

func itoa(i int) string { return strconv.Itoa(i) }

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// TestStateFromADeletedChangelog: a reset deletes the group, the changelog
// and the topics, and the job starts over; a replica whose state directory
// outlived it on another machine must not resume on that state when it
// gets the partition later, although its checkpoint is below the new
// changelog's end by then. Before the changelog's topic ID was recorded it
// did: "early" counted on from its old count.
func TestStateFromADeletedChangelog(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 1})
	top := compile(t, counting)
	cl := client(t, brokers)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	send := func(key string, n int) {
		t.Helper()
		var recs []*kgo.Record
		for i := range n {
			k := key
			if k == "" {
				k = "k" + strconv.Itoa(i%10)
			}
			recs = append(recs, &kgo.Record{Topic: "in", Key: []byte(k), Value: fmt.Appendf(nil, `{"id":%d}`, i)})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	send("early", 5)
	runReplica(t, top, brokers, "a", dirA, 5)

	// The reset: the group, its changelog, and the input and output
	// topics, made again.
	if _, err := adm.DeleteGroup(ctx, top.Group); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{top.ChangelogTopic("count"), "in", "out"} {
		resp, err := adm.DeleteTopic(ctx, topic)
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatalf("deleting %s: %v", topic, err)
		}
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "in"); err != nil {
		t.Fatal(err)
	}
	cl.PurgeTopicsFromClient("in") // it knows the old topic's ID
	send("", 200)
	runReplica(t, top, brokers, "b", dirB, 200)
	send("early", 1)
	runReplica(t, top, brokers, "a", dirA, 1) // on its old directory

	want := map[string]int{"early": 1}
	for i := range 10 {
		want["k"+strconv.Itoa(i)] = 20
	}
	checkCounts(t, brokers, "out", want, nil)
}

func init() {
	pipes.MustRegister("ctorwriter", pipes.Spec{Summary: "test: writes its store in its constructor"},
		func(_ struct{}, env *pipes.Env) (pipes.Pipe, error) {
			st, err := env.Store(env.Pipe)
			if err != nil {
				return nil, err
			}
			if err := st.Put([]byte("seed"), []byte("1")); err != nil {
				return nil, err
			}
			return nopPipe{}, nil
		})
}

// TestStoreWrittenOutsideProcess: a write with no transaction open has no
// changelog record to go with it, and a restore would lose it: the task
// must refuse it, not keep it only locally.
func TestStoreWrittenOutsideProcess(t *testing.T) {
	top := compile(t, `
name: ctor
datasets:
  in: {topic: in}
  out: {topic: out}
pipes:
  w:
    from: in
    to: out
    ctorwriter: {}
`)
	_, err := engine.NewTask(top, "in", 0, engine.TaskOptions{})
	if err == nil || !strings.Contains(err.Error(), "outside Process") {
		t.Fatalf("NewTask = %v, want the write outside Process refused", err)
	}
}

type nopPipe struct{}

func (nopPipe) Process(context.Context, *pipes.Batch, *pipes.Output) error { return nil }
