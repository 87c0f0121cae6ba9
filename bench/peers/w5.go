package main

import (
	"encoding/json"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/topology"
)

// W5, the stream–stream join within a window (bench/join.yaml, and the
// Kafka Streams app's Join): each order is re-keyed by its order_id, split
// into a left and a right stream that keep every record, and the two are
// joined, inner, within a minute either way (grace 10 minutes). Order ids
// are unique and both copies of an order have its record timestamp, so
// each order meets exactly its own twin: one output per order, keyed by
// order_id, the order with twin_amount set to its amount.
//
// The input is W1's (the generator's orders, record timestamps set by the
// producer when it fills the topic: a few seconds apart at most, far
// inside the window, so no order meets another's twin by time alone, only
// by key). The passthrough copies it, as in W1: the limit.

// w5Output is the dataset of bench/join.yaml whose records are the join's
// output (the sink the run is timed and checked on).
const w5Output = "joined"

// expectedW5 is the oracle: per generated order, key "o-<i>" (the
// generator numbers its orders from 0) and the order's JSON with
// twin_amount, the generator's own amount (not parsed from the value).
func expectedW5(in benchkit.Input) fingerprint {
	g := in.Orders()
	var f fingerprint
	for i := 0; i < in.Records; i++ {
		o := g.Next()
		var v map[string]any
		if err := json.Unmarshal(o.Value, &v); err != nil {
			panic(err) // the generator makes no bad records here
		}
		v["twin_amount"] = o.Amount
		b, _ := json.Marshal(v)
		f.add([]byte("o-"+strconv.Itoa(i)), b)
	}
	return f
}

// bindW5 points bench/join.yaml's one external source and its sink at the
// job's topics; its internal topics (the join's merge and changelog) are
// named after the job's group, fresh per run.
func bindW5(top *topology.Topology, j job) error {
	var srcs []*topology.Dataset
	for _, d := range top.Sources() {
		if !d.IsInternal() {
			srcs = append(srcs, d)
		}
	}
	sink := top.Datasets[w5Output]
	if len(srcs) != 1 || sink == nil {
		return fmt.Errorf("%s: want one external source and a dataset %s", j.topology, w5Output)
	}
	srcs[0].Topic, srcs[0].Partitions = j.input, j.parts
	sink.Topic, sink.Partitions = j.output, j.parts
	if sink.Create != nil {
		sink.Create.Partitions = j.parts
	}
	return nil
}

// replicaTally counts a streamer replica's transactions and the time it
// spent ending them (every workload reports it), and says when a W5
// replica's outputs are committed: records consumed more than once (the
// merge topic) make CommittedIn no measure of that, so it counts the sink's
// outputs of each transaction and adds them up when the transaction
// commits (those of an aborted one are produced again later), as `go run
// ./bench` times topologies with internal topics. It is an
// engine.OutputHook and an engine.TxnHook of one replica.
type replicaTally struct {
	pending, committed atomic.Int64
	// Ended transactions and the time spent ending them (flush, offsets,
	// EndTxn), for the worker's report of where its wall time went.
	txns, txnNanos, txnRecords atomic.Int64
}

// OnTxnEnd is an engine.TxnHook. The engine calls it after the
// transaction's last OnOutput and before the next transaction's first.
func (d *replicaTally) OnTxnEnd(e engine.TxnEnd) {
	d.txns.Add(1)
	d.txnNanos.Add(int64(e.Duration))
	d.txnRecords.Add(e.Records)
	if n := d.pending.Swap(0); e.Committed {
		d.committed.Add(n)
	}
}

// summary says how many transactions ended and how long ending them took,
// against wall, the run's timed interval. It counts every transaction of
// the run, the one ended at shutdown too: a slight overcount against wall.
func (d *replicaTally) summary(wall time.Duration) string {
	n, end := d.txns.Load(), time.Duration(d.txnNanos.Load())
	if n == 0 {
		return "no transactions ended"
	}
	return fmt.Sprintf("%d transactions ended, %.0f consumed records each, %v ending them in all (%.0f%% of the %v timed; %v each on average)",
		n, float64(d.txnRecords.Load())/float64(n), end.Round(time.Millisecond), 100*end.Seconds()/wall.Seconds(),
		wall.Round(time.Millisecond), (end / time.Duration(n)).Round(time.Microsecond))
}

func (d *replicaTally) OnOutput(dataset string, _ time.Duration) {
	if dataset == w5Output {
		d.pending.Add(1)
	}
}

var (
	_ engine.OutputHook = (*replicaTally)(nil)
	_ engine.TxnHook    = (*replicaTally)(nil)
)
