package metrics_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/metrics"
	"github.com/streamerio/streamer/topology"
)

const top = `
name: m
dead_letter: dlq
datasets:
  in:  {topic: in}
  out: {topic: out}
  dlq: {topic: dlq, value: bytes}
pipes:
  keep:
    from: in
    to: out
    filter: {when: "n > 0"}
`

func TestPipeAndOutputMetrics(t *testing.T) {
	tp, err := topology.Compile("t.yaml", []byte(top), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(tp, "r1", "test")
	task, err := engine.NewTask(tp, "in", 0, engine.TaskOptions{Hooks: []engine.Hook{m}})
	if err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-2 * time.Second)
	in := []*kgo.Record{
		{Topic: "in", Value: []byte(`{"n":1}`), Timestamp: old},
		{Topic: "in", Value: []byte(`{"n":0}`), Timestamp: old},
		{Topic: "in", Value: []byte(`{"n":"x"}`), Timestamp: old},
		{Topic: "in", Value: []byte(`{`), Timestamp: old},
	}
	if err := task.Process(context.Background(), in, func(*kgo.Record) {}); err != nil {
		t.Fatal(err)
	}
	m.OnTxnEnd(engine.TxnEnd{Committed: true, Duration: time.Millisecond, Records: 4})
	m.OnLag("in", 0, 42)
	m.OnRebalance(engine.Rebalance{Assigned: map[string][]int32{"in": {0, 1}}})
	m.SetReadiness(func() bool { return true })
	m.OnPurge(engine.Purge{Partitions: 3})
	m.OnPurge(engine.Purge{Partitions: 3, Err: errors.New("TOPIC_AUTHORIZATION_FAILED")})
	m.OnPurge(engine.Purge{Partitions: 2})

	want := `
# HELP streamer_pipe_records_in_total Records handed to a pipe.
# TYPE streamer_pipe_records_in_total counter
streamer_pipe_records_in_total{pipe="keep"} 3
# HELP streamer_pipe_records_out_total Records a pipe emitted, on all its outputs.
# TYPE streamer_pipe_records_out_total counter
streamer_pipe_records_out_total{pipe="keep"} 1
# HELP streamer_pipe_records_dropped_total Records a pipe consumed without emitting or failing them (filtered out).
# TYPE streamer_pipe_records_dropped_total counter
streamer_pipe_records_dropped_total{pipe="keep"} 1
# HELP streamer_output_records_total Records produced to a sink dataset.
# TYPE streamer_output_records_total counter
streamer_output_records_total{dataset="out"} 1
# HELP streamer_transactions_total Ended transactions, committed or aborted.
# TYPE streamer_transactions_total counter
streamer_transactions_total{outcome="aborted"} 0
streamer_transactions_total{outcome="committed"} 1
# HELP streamer_consumer_lag_records Records between the last consumed and the partition's last stable offset, as of the last fetch.
# TYPE streamer_consumer_lag_records gauge
streamer_consumer_lag_records{partition="0",topic="in"} 42
# HELP streamer_assigned_partitions Source partitions assigned to this replica.
# TYPE streamer_assigned_partitions gauge
streamer_assigned_partitions 2
# HELP streamer_internal_purges_total Deletions of the consumed records of repartition and merge topics, by outcome (ok, failed). Those topics keep their records until purged: failures let them grow.
# TYPE streamer_internal_purges_total counter
streamer_internal_purges_total{outcome="failed"} 1
streamer_internal_purges_total{outcome="ok"} 2
# HELP streamer_ready 1 when the replica has joined the group, holds its assignment and has restored its state.
# TYPE streamer_ready gauge
streamer_ready 1
`
	names := []string{"streamer_pipe_records_in_total", "streamer_pipe_records_out_total", "streamer_pipe_records_dropped_total",
		"streamer_output_records_total", "streamer_transactions_total", "streamer_consumer_lag_records", "streamer_assigned_partitions", "streamer_ready", "streamer_internal_purges_total"}
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
	dl := testutil.ToFloat64(collect(t, m, "streamer_dead_letters_total", map[string]string{"pipe": "keep", "stage": "decode"}))
	dp := testutil.ToFloat64(collect(t, m, "streamer_dead_letters_total", map[string]string{"pipe": "keep", "stage": "process"}))
	if dl != 1 || dp != 1 {
		t.Errorf("dead letters decode %v process %v, want 1 and 1", dl, dp)
	}
	// The record was 2 s old when produced.
	if n, err := testutil.GatherAndCount(m.Registry(), "streamer_end_to_end_latency_seconds"); err != nil || n != 1 {
		t.Errorf("latency series %d %v", n, err)
	}
	m.OnLag("in", 0, -1)
	if n, _ := testutil.GatherAndCount(m.Registry(), "streamer_consumer_lag_records"); n != 0 {
		t.Errorf("lag of an unassigned partition still exported")
	}
}

// TestConventions runs Prometheus's own linter over everything exported:
// names, units, _total suffixes, help strings.
func TestConventions(t *testing.T) {
	tp, _ := topology.Compile("t.yaml", []byte(top), fstest.MapFS{})
	m := metrics.New(tp, "r1", "test")
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.NewWithMetricFamilies(mfs).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "streamer_") && !strings.HasPrefix(p.Metric, "streamer_kafka_") {
			t.Errorf("%s: %s", p.Metric, p.Text)
		}
	}
	for _, mf := range mfs {
		n := mf.GetName()
		if !strings.HasPrefix(n, "streamer_") && !strings.HasPrefix(n, "go_") && !strings.HasPrefix(n, "process_") {
			t.Errorf("metric %s lacks the streamer_ prefix", n)
		}
	}
}

// TestTableStaleness: 0 while a table partition is caught up; while
// records wait for it, the time since it last was, growing between
// scrapes; gone once it closes.
func TestTableStaleness(t *testing.T) {
	tp, err := topology.Compile("t.yaml", []byte(top), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	m := metrics.New(tp, "r", "v")
	value := func() (float64, bool) {
		t.Helper()
		mfs, err := m.Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "streamer_table_staleness_seconds" {
				for _, s := range mf.GetMetric() {
					ok := len(s.GetLabel()) == 2 && s.GetLabel()[0].GetValue() == "7" && s.GetLabel()[1].GetValue() == "customers"
					if ok {
						return s.GetGauge().GetValue(), true
					}
				}
			}
		}
		return 0, false
	}
	m.OnTableFreshness(engine.TableFreshness{Table: "customers", Partition: 7})
	if v, ok := value(); !ok || v != 0 {
		t.Fatalf("caught up: %v %v, want 0", v, ok)
	}
	m.OnTableFreshness(engine.TableFreshness{Table: "customers", Partition: 7, BehindSince: time.Now().Add(-90 * time.Second)})
	v1, _ := value()
	time.Sleep(20 * time.Millisecond)
	v2, _ := value()
	if v1 < 90 || v1 > 95 || v2 <= v1 {
		t.Fatalf("behind for 90 s: %v then %v, want about 90 and growing", v1, v2)
	}
	m.OnTableFreshness(engine.TableFreshness{Table: "customers", Partition: 7, Closed: true})
	if v, ok := value(); ok {
		t.Fatalf("closed: still %v", v)
	}
}
