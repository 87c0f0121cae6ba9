package engine

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamerio/streamer/topology"
)

// TestRestoreContents restores changelogs of several shapes into empty
// stores and compares each store with the changelog's last value per key:
// overwrites, tombstones, an aborted transaction at the end, and sizes on
// both sides of the bulk-load threshold.
// bulkOffsets is Options.BulkRestoreOffsets' default.
const bulkOffsets = 100_000

func TestRestoreContents(t *testing.T) {
	top, err := topology.Compile("t.yaml", []byte(`
name: counts
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 1}}
pipes:
  count:
    from: in
    to: out
    aggregate: {fields: {n: {op: count}}}
`), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	const changelog = "streamer-counts-count-changelog"
	tests := []struct {
		name    string
		records int // below or above bulkOffsets
		keys    int
		abort   bool // an aborted transaction at the end
	}{
		{"small", 5_000, 700, false},
		{"small, aborted tail", 5_000, 700, true},
		{"bulk", bulkOffsets + 30_000, 40_000, false},
		{"bulk, aborted tail", bulkOffsets + 30_000, 40_000, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", changelog))
			if err != nil {
				t.Fatal(err)
			}
			defer cluster.Close()
			brokers := cluster.ListenAddrs()
			ctx := context.Background()

			// Every key is written several times; some end deleted.
			want := map[string]string{}
			cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(changelog), kgo.RecordPartitioner(kgo.ManualPartitioner()))
			if err != nil {
				t.Fatal(err)
			}
			var recs []*kgo.Record
			for i := range tt.records {
				k := fmt.Sprintf("k%d", i%tt.keys)
				r := &kgo.Record{Key: []byte(k), Value: fmt.Appendf(nil, "v%d", i)}
				if i%tt.keys%5 == 0 && i%3 == 0 {
					r.Value = nil // a tombstone
					delete(want, k)
				} else {
					want[k] = string(r.Value)
				}
				recs = append(recs, r)
				if len(recs) == 10_000 {
					if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
						t.Fatal(err)
					}
					recs = recs[:0]
				}
			}
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			cl.Close()
			if tt.abort {
				txn, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(changelog), kgo.TransactionalID("tail"))
				if err != nil {
					t.Fatal(err)
				}
				if err := txn.BeginTransaction(); err != nil {
					t.Fatal(err)
				}
				for k := range 50 {
					if err := txn.ProduceSync(ctx, &kgo.Record{Key: fmt.Appendf(nil, "k%d", k), Value: []byte("aborted")}).FirstErr(); err != nil {
						t.Fatal(err)
					}
				}
				if err := txn.EndTransaction(ctx, kgo.TryAbort); err != nil {
					t.Fatal(err)
				}
				txn.Close()
			}

			o := Options{Brokers: brokers, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
			if err := o.setDefaults(top.CommitInterval); err != nil {
				t.Fatal(err)
			}
			p := newPebbleState(top, &o, sortHooks(nil), newHolds(), newMaterialiser(top, &o))
			defer p.close()
			k := storeKey{"count", 0}
			for attempt := range 2 { // the second finds nothing left to read
				p.mu.Lock()
				run := p.newRun(k.store, k.partition)
				p.mu.Unlock()
				st, err := p.openRestored(ctx, k, run)
				if err != nil {
					t.Fatal(err)
				}
				got := 0
				if err := st.Prefix(nil, func(key, v []byte) bool {
					got++
					if w, ok := want[string(key)]; !ok || w != string(v) {
						t.Errorf("%s = %q, want %q (present %v)", key, v, w, ok)
					}
					return true
				}); err != nil {
					t.Fatal(err)
				}
				if got != len(want) {
					t.Errorf("attempt %d: the store holds %d keys, want %d", attempt, got, len(want))
				}
				pr := run.snapshot()
				if cp, _, _ := st.Checkpoint(); cp < pr.End || pr.Position < pr.End {
					t.Errorf("attempt %d: checkpoint %d, position %d, end %d", attempt, cp, pr.Position, pr.End)
				}
				if attempt == 1 && pr.End != pr.From {
					t.Errorf("restored again from %d to %d", pr.From, pr.End)
				}
				if len(p.restoring()) != 0 {
					t.Errorf("still restoring: %v", p.restoring())
				}
				if err := st.Close(); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestRestoreResumes stops a bulk restore part way, as a revoke or a
// shutdown does, and restores again: the second restore starts where the
// first stopped, and the store ends up equal to the changelog.
func TestRestoreResumes(t *testing.T) {
	top, err := topology.Compile("t.yaml", []byte(`
name: counts
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 1}}
pipes:
  count:
    from: in
    to: out
    aggregate: {fields: {n: {op: count}}}
`), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	const changelog = "streamer-counts-count-changelog"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "in", changelog))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	ctx := context.Background()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic(changelog), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	const n, keys = bulkOffsets + 50_000, 60_000
	want := map[string]string{}
	var recs []*kgo.Record
	for i := range n {
		k := fmt.Sprintf("k%d", i%keys)
		want[k] = fmt.Sprintf("value %d, padded to make the fetches many: %d", i, i*i)
		recs = append(recs, &kgo.Record{Key: []byte(k), Value: []byte(want[k])})
		if len(recs) == 10_000 || i == n-1 {
			if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	cl.Close()

	// The restore is stopped as it asks for its second response: the
	// first is read, the rest is not.
	stopCtx, stop := context.WithCancel(ctx)
	var fetches atomic.Int32
	cluster.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if fetches.Add(1) == 2 {
			stop()
			cluster.SleepControl(func() { time.Sleep(100 * time.Millisecond) })
		}
		return nil, nil, false
	})
	o := Options{Brokers: brokers, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)}
	if err := o.setDefaults(top.CommitInterval); err != nil {
		t.Fatal(err)
	}
	p := newPebbleState(top, &o, sortHooks(nil), newHolds(), newMaterialiser(top, &o))
	defer p.close()
	k := storeKey{"count", 0}
	run := func(ctx context.Context) (RestoreProgress, *heldStore, error) {
		p.mu.Lock()
		r := p.newRun(k.store, k.partition)
		p.mu.Unlock()
		st, err := p.openRestored(ctx, k, r)
		return r.snapshot(), st, err
	}

	first, st, err := run(stopCtx)
	if err == nil {
		st.Close()
		t.Fatalf("the restore was not stopped: %+v", first)
	}
	if first.Position <= first.From || first.Position >= first.End {
		t.Fatalf("stopped at %d of [%d, %d): want part way", first.Position, first.From, first.End)
	}
	second, st, err := run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if second.From != first.Position || second.Position < second.End {
		t.Errorf("second restore read [%d, %d) to %d; want from %d to the end", second.From, second.End, second.Position, first.Position)
	}
	got := 0
	if err := st.Prefix(nil, func(key, v []byte) bool {
		got++
		if want[string(key)] != string(v) {
			t.Errorf("%s = %q, want %q", key, v, want[string(key)])
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if got != len(want) {
		t.Errorf("the store holds %d keys, want %d", got, len(want))
	}
	t.Logf("stopped at offset %d of %d, resumed from there", first.Position, first.End)
}

type progressRecorder struct{ reports []RestoreProgress }

func (r *progressRecorder) OnRestoreProgress(p RestoreProgress) { r.reports = append(r.reports, p) }

type displayRecorder struct{ progressRecorder }

func (*displayRecorder) DisplaysRestoreProgress() {}

// TestRestoreProgressReports checks when a running restore is logged and
// reported to hooks: a line every logEvery unless a hook displays progress
// itself, a hook report every progressEvery.
func TestRestoreProgressReports(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name                string
		display             bool
		sinceLog, sinceHook time.Duration
		wantLine, wantHook  bool
	}{
		{"both due", false, logEvery + time.Second, progressEvery + time.Second, true, true},
		{"hook due only", false, time.Second, progressEvery + time.Second, false, true},
		{"nothing due", false, time.Second, progressEvery / 2, false, false},
		{"a display draws it", true, logEvery + time.Second, progressEvery + time.Second, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			rec := &progressRecorder{}
			var hook Hook = rec
			if tt.display {
				d := &displayRecorder{}
				hook, rec = d, &d.progressRecorder
			}
			o := Options{Brokers: []string{"unused:9092"}, Logger: slog.New(slog.NewTextHandler(&logs, nil)), Hooks: []Hook{hook}}
			if err := o.setDefaults(time.Second); err != nil {
				t.Fatal(err)
			}
			top := &topology.Topology{Group: "g"}
			p := newPebbleState(top, &o, sortHooks(o.Hooks), newHolds(), newMaterialiser(top, &o))
			defer p.close()
			r := &restoreRun{p: RestoreProgress{Store: "count", Partition: 2, From: 0, End: 1000, Started: now.Add(-10 * time.Second)}, logged: true,
				lastLog: now.Add(-tt.sinceLog), lastHook: now.Add(-tt.sinceHook)}
			p.update(r, 400, 390)
			// 400 offsets in 10 s: 40/s, and 600 left take 15 s.
			out := logs.String()
			line := strings.Contains(out, `msg="restoring state store" store=count partition=2 records=390 offsets_left=600 offsets_per_s=`) &&
				(strings.Contains(out, "eta=15s") || strings.Contains(out, "eta=16s"))
			if line != tt.wantLine {
				t.Errorf("progress line logged %v, want %v:\n%s", line, tt.wantLine, logs.String())
			}
			if got := len(rec.reports) == 1 && rec.reports[0].Position == 400; got != tt.wantHook {
				t.Errorf("hook reports %+v, want one: %v", rec.reports, tt.wantHook)
			}
		})
	}
}
