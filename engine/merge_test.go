package engine_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/pipes"
)

// sidesConfig configures the test pipe "sides", which keeps a store (so
// the compiler merges its inputs) and logs each batch it gets.
type sidesConfig struct {
	Interleaved bool `yaml:"interleaved"`
}

type sides struct {
	interleaved bool
	log         *[]string
}

// sidesLog is where every "sides" pipe writes what it saw: one line per
// batch, "input:key=value,..." or, interleaved, "*:input/key=value,...".
var sidesLog []string

func init() {
	pipes.MustRegister("sides", pipes.Spec{Summary: "test: logs the batches of a keyed pipe with several inputs"},
		func(c sidesConfig, env *pipes.Env) (pipes.Pipe, error) {
			if _, err := env.Store(env.Pipe); err != nil {
				return nil, err
			}
			return &sides{interleaved: c.Interleaved, log: &sidesLog}, nil
		})
}

func (s *sides) ReadsInterleaved() bool { return s.interleaved }

func (s *sides) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	var parts []string
	for i, r := range b.Records {
		var hs []string
		for _, h := range r.Headers {
			hs = append(hs, h.Key)
		}
		item := fmt.Sprintf("%s=%v[%s]", r.Key, r.Value, strings.Join(hs, " "))
		if b.Inputs != nil {
			item = fmt.Sprintf("%d/%s", b.InputOf(i), item)
		}
		parts = append(parts, item)
		out.Emit(0, r)
	}
	head := fmt.Sprint(b.Input)
	if b.Inputs != nil {
		head = "*"
	}
	*s.log = append(*s.log, head+":"+strings.Join(parts, ","))
	return nil
}

var _ pipes.InterleavedReader = (*sides)(nil)

const mergeTopology = `
name: m
dead_letter: dlq
datasets:
  a:   {topic: a}
  b:   {topic: b, value: string}
  out: {topic: out}
  dlq: {topic: dlq, value: bytes}
pipes:
  p:
    from: [a, b]
    to: out
    sides: {interleaved: INTERLEAVED}
`

// TestMergeTasks drives the two halves of a merge: the tasks of the
// sources forward their records, as consumed, to the merge topic with a
// side header; the task of a merge partition decodes each as its side's
// dataset, without that header, and hands the pipe its inputs in the order
// they arrived (in runs of one input, or interleaved in one batch). A
// record without a valid side header is a dead letter.
func TestMergeTasks(t *testing.T) {
	for _, interleaved := range []bool{false, true} {
		t.Run(fmt.Sprintf("interleaved=%v", interleaved), func(t *testing.T) {
			top := compile(t, strings.Replace(mergeTopology, "INTERLEAVED", fmt.Sprint(interleaved), 1))
			merge := top.Datasets["p-merge"]
			if merge == nil || merge.Topic != "streamer-m-p-merge" {
				t.Fatalf("no merge source: %v", top.Merges())
			}
			// The sources' tasks forward, running no pipe.
			var fwd sink
			for _, src := range []string{"a", "b"} {
				task, err := engine.NewTask(top, src, 1, engine.TaskOptions{})
				if err != nil {
					t.Fatal(err)
				}
				in := []*kgo.Record{{Topic: src, Partition: 1, Key: []byte("k-" + src), Value: []byte(`{"x":1}`),
					Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte("t")}}}}
				if err := task.Process(context.Background(), in, fwd.emit); err != nil {
					t.Fatal(err)
				}
				task.Close()
			}
			if len(fwd.recs) != 2 || sidesLog != nil {
				t.Fatalf("forwarded %d records (want 2) and ran pipes %q (want none)", len(fwd.recs), sidesLog)
			}
			for i, r := range fwd.recs {
				if r.Topic != merge.Topic || string(r.Value) != `{"x":1}` || r.Partition != 0 ||
					header(r, "trace") != "t" || header(r, engine.HeaderSide) != fmt.Sprint(i) {
					t.Errorf("forwarded record %d: topic %s value %s partition %d headers %v", i, r.Topic, r.Value, r.Partition, r.Headers)
				}
			}

			// The merge partition's task.
			task, err := engine.NewTask(top, "p-merge", 0, engine.TaskOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer task.Close()
			var in []*kgo.Record
			add := func(key, value string, hs ...string) {
				r := &kgo.Record{Topic: merge.Topic, Offset: int64(len(in)), Key: []byte(key), Value: []byte(value)}
				for i := 0; i < len(hs); i += 2 {
					r.Headers = append(r.Headers, kgo.RecordHeader{Key: hs[i], Value: []byte(hs[i+1])})
				}
				in = append(in, r)
			}
			add("k1", `{"n":1}`, engine.HeaderSide, "0")
			add("k2", `{"n":2}`, "trace", "t", engine.HeaderSide, "0")
			add("k3", `plain`, engine.HeaderSide, "1", "after", "x")
			add("bad", `{"n":0}`) // no side
			add("k4", `{"n":4}`, engine.HeaderSide, "0")
			add("bad", `{"n":0}`, engine.HeaderSide, "2") // no such side
			add("k5", `five`, engine.HeaderSide, "1")
			add("k6", `{"n":`, engine.HeaderSide, "0") // side 0 is JSON: a decode error
			add("k7", `seven`, engine.HeaderSide, "1")
			var out sink
			if err := task.Process(context.Background(), in, out.emit); err != nil {
				t.Fatal(err)
			}
			want := []string{"0:k1=map[n:1][],k2=map[n:2][trace]", "1:k3=plain[after]", "0:k4=map[n:4][]", "1:k5=five[],k7=seven[]"}
			if interleaved {
				want = []string{"*:0/k1=map[n:1][],0/k2=map[n:2][trace],1/k3=plain[after],0/k4=map[n:4][],1/k5=five[],1/k7=seven[]"}
			}
			if strings.Join(sidesLog, "\n") != strings.Join(want, "\n") {
				t.Errorf("batches\n got %q\nwant %q", sidesLog, want)
			}
			sidesLog = nil
			if got := out.topic("out"); len(got) != 6 {
				t.Errorf("outputs %q, want the 6 good records", got)
			}
			dead := 0
			for _, r := range out.recs {
				if r.Topic != "dlq" {
					continue
				}
				dead++
				if header(r, engine.HeaderStage) != "decode" || header(r, engine.HeaderPipe) != "p" {
					t.Errorf("dead letter %s: headers %v", r.Key, r.Headers)
				}
				if string(r.Key) == "bad" && !strings.Contains(header(r, engine.HeaderError), engine.HeaderSide) {
					t.Errorf("dead letter without a side: error %q", header(r, engine.HeaderError))
				}
			}
			if dead != 3 {
				t.Errorf("%d dead letters, want 3 (two bad sides, one bad value)", dead)
			}
		})
	}
}

const mergedCounting = `
name: merged
datasets:
  in:  {topic: in}
  in2: {topic: in2}
  out: {topic: out, create: {partitions: 2}}
pipes:
  count:
    from: [in, in2]
    to: out
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: id}
`

// TestMergeCountsExactlyOnce counts per key over two topics of 3 and 2
// partitions on kfake, with three replicas in turn (the second on an empty
// state directory, restoring from the changelog; the third on the first's).
// The compiler merges both inputs into one topic, so each key's records
// from both topics meet in one state: its counts must run 1, 2, 3, ... and
// end at the number of its records in both.
func TestMergeCountsExactlyOnce(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 3, "in2": 2})
	top := compile(t, mergedCounting)
	if m := top.Merges(); len(m) != 1 || m[0].Topic != "streamer-merged-count-merge" {
		t.Fatalf("merges %v", m)
	}
	const batch = 1500
	send := func(from, to int) {
		t.Helper()
		if err := produce(brokers, from, to); err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		var recs []*kgo.Record // ids 100000 and up, keyed as produce() keys
		for i := from; i < to; i++ {
			recs = append(recs, &kgo.Record{Topic: "in2", Key: fmt.Appendf(nil, "k%d", i%50), Value: fmt.Appendf(nil, `{"id":%d}`, 100000+i)})
		}
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dirA, dirB := t.TempDir(), t.TempDir()
	// Each record is consumed twice: from its topic, then from the merge.
	send(0, batch)
	runReplica(t, top, brokers, "a", dirA, 4*batch)
	send(batch, 2*batch)
	runReplica(t, top, brokers, "b", dirB, 4*batch)
	send(2*batch, 3*batch)
	runReplica(t, top, brokers, "c", dirA, 4*batch)

	want, wantSum := produced(3 * batch)
	for k := range want {
		want[k] *= 2
		wantSum[k] += wantSum[k] + 100000*want[k]/2
	}
	checkCounts(t, brokers, "out", want, wantSum)
}

// TestPurgeInternalTopics runs TestMergeCountsExactlyOnce's replicas with
// purging every 50ms: the counts must still be exact, and the merge
// topic's records below the group's committed offsets deleted, never any
// above them.
func TestPurgeInternalTopics(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 3, "in2": 2})
	top := compile(t, mergedCounting)
	const batch = 1500
	purges := &purgeCount{}
	purging := func(o *engine.Options) {
		o.PurgeInterval = 50 * time.Millisecond
		o.Hooks = append(o.Hooks, purges)
	}
	for i, id := range []string{"a", "b", "c"} {
		if err := produce(brokers, i*batch, (i+1)*batch); err != nil {
			t.Fatal(err)
		}
		// Each record is consumed twice: from in, then from the merge.
		runReplica(t, top, brokers, id, t.TempDir(), 2*batch, purging)
	}
	want, wantSum := produced(3 * batch)
	checkCounts(t, brokers, "out", want, wantSum)

	adm := kadm.NewClient(client(t, brokers))
	ctx := context.Background()
	merge := top.Merges()[0].Topic
	starts, err := adm.ListStartOffsets(ctx, merge)
	if err != nil {
		t.Fatal(err)
	}
	committed, err := adm.FetchOffsets(ctx, top.Group)
	if err != nil {
		t.Fatal(err)
	}
	purged := int64(0)
	starts.Each(func(o kadm.ListedOffset) {
		c, _ := committed.Lookup(merge, o.Partition)
		if o.Offset > c.At {
			t.Errorf("%s[%d]: records deleted up to %d, beyond the committed offset %d", merge, o.Partition, o.Offset, c.At)
		}
		purged += o.Offset
	})
	if purged == 0 {
		t.Errorf("nothing purged from %s", merge)
	}
	if ok, failed := purges.ok.Load(), purges.failed.Load(); ok == 0 || failed != 0 {
		t.Errorf("purge hooks: %d ok, %d failed; want some ok and none failed", ok, failed)
	}
	t.Logf("%s: deleted below offsets that sum to %d (its %d records and their transactions' markers)", merge, purged, 3*batch)
}

// purgeCount is a PurgeHook counting deletions by outcome.
type purgeCount struct{ ok, failed atomic.Int64 }

var _ engine.PurgeHook = (*purgeCount)(nil)

func (c *purgeCount) OnPurge(p engine.Purge) {
	if p.Err != nil {
		c.failed.Add(1)
	} else if p.Partitions > 0 {
		c.ok.Add(1)
	}
}

// TestInternalTopicsKeepRecords: repartition and merge topics must keep
// their records until the purge deletes them. A time retention would drop
// a replay's records, which keep their old source timestamps, unread. The
// engine makes them with retention.ms -1, and sets it on one that exists
// without it (made by hand, or by an older version).
func TestInternalTopicsKeepRecords(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		topics     map[string]int32
		existing   int32 // partitions of the internal topic made beforehand, 0: none
	}{
		{"repartition topic made by the engine", regrouping, map[string]int32{"in": 3}, 0},
		{"merge topic made beforehand with a retention", mergedCounting, map[string]int32{"in": 3, "in2": 2}, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			brokers := cluster(t, tt.topics)
			top := compile(t, tt.yaml)
			internal := top.Internal()
			if len(internal) != 1 {
				t.Fatalf("internal topics %v, want one", internal)
			}
			topic := internal[0].Topic
			cl := client(t, brokers)
			adm := kadm.NewClient(cl)
			ctx := context.Background()
			if tt.existing > 0 {
				if _, err := adm.CreateTopic(ctx, tt.existing, 1, map[string]*string{"retention.ms": kadm.StringPtr("3600000")}, topic); err != nil {
					t.Fatal(err)
				}
			}
			var recs []*kgo.Record
			for i := range 100 {
				recs = append(recs, &kgo.Record{Topic: "in", Key: []byte("k" + strconv.Itoa(i)), Value: fmt.Appendf(nil, `{"id":%d,"g":"g%d"}`, i, i%7)})
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			runReplica(t, top, brokers, "a", t.TempDir(), 200) // from in, then from the internal topic
			rcs, err := adm.DescribeTopicConfigs(ctx, topic)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := rcs.On(topic, nil)
			if err != nil || rc.Err != nil {
				t.Fatalf("configs of %s: %v %v", topic, err, rc.Err)
			}
			got := "<unset>"
			for _, c := range rc.Configs {
				if c.Key == "retention.ms" {
					got = c.MaybeValue()
				}
			}
			if got != "-1" {
				t.Errorf("%s: retention.ms %s, want -1", topic, got)
			}
		})
	}
}
