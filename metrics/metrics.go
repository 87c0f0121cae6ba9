// Package metrics exports a replica's metrics to Prometheus: engine hooks
// for pipes, outputs, transactions, rebalances and lag, the Kafka client's
// metrics (franz-go's kprom) and the Go runtime's, on one registry.
//
// Names follow Prometheus conventions: the streamer_ prefix, units in the
// name, _total on counters. Labels are bounded: pipe, dataset, topic,
// partition, and a few fixed values (stage, outcome).
package metrics

import (
	"errors"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kprom"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/ml"
	"github.com/streamerio/streamer/topology"
)

// Metrics holds a replica's collectors. Its methods are engine hooks.
type Metrics struct {
	reg  *prometheus.Registry
	kafk *kprom.Metrics

	pipeIn, pipeOut, pipeDropped *prometheus.CounterVec
	deadLetters, skipped         *prometheus.CounterVec
	pipeSeconds, pipeBatch       *prometheus.HistogramVec
	decodeErrors                 *prometheus.CounterVec
	outputs                      *prometheus.CounterVec
	latency                      *prometheus.HistogramVec
	txns                         *prometheus.CounterVec
	txnSeconds                   prometheus.Histogram
	txnRecords                   prometheus.Histogram
	rebalances                   *prometheus.CounterVec
	assigned                     prometheus.Gauge
	lag                          *prometheus.GaugeVec
	openTxn, openTxnAge          *prometheus.GaugeVec
	ready                        atomic.Pointer[func() bool]
	restored                     *prometheus.CounterVec
	restoreSeconds               *prometheus.HistogramVec
	stateBytes                   *prometheus.GaugeVec
	restoreRemaining             *prometheus.GaugeVec
	pauses                       prometheus.Counter
	purges                       *prometheus.CounterVec
	modelCalls                   *prometheus.CounterVec
	modelRows                    *prometheus.CounterVec
	modelRetries                 *prometheus.CounterVec
	modelCallRows                *prometheus.HistogramVec
	modelSeconds, modelWait      *prometheus.HistogramVec
	modelBreaker                 *prometheus.GaugeVec
	tableStale                   *tableStaleness
	tableSkipped                 *prometheus.CounterVec
}

var (
	_ engine.PipeHook      = (*Metrics)(nil)
	_ engine.DecodeHook    = (*Metrics)(nil)
	_ engine.OutputHook    = (*Metrics)(nil)
	_ engine.TxnHook       = (*Metrics)(nil)
	_ engine.RebalanceHook = (*Metrics)(nil)
	_ engine.LagHook       = (*Metrics)(nil)
	_ engine.OpenTxnHook   = (*Metrics)(nil)
	_ engine.StateHook     = (*Metrics)(nil)
	_ engine.PauseHook     = (*Metrics)(nil)
	_ engine.PurgeHook     = (*Metrics)(nil)
	_ engine.RestoreHook   = (*Metrics)(nil)
	_ engine.TableHook     = (*Metrics)(nil)
	_ engine.TableSkipHook = (*Metrics)(nil)
	_ ml.BatchHook         = (*Metrics)(nil)
)

// New returns the metrics of one replica of a topology. The info metric
// carries the topology, group, replica and version; other series do not
// repeat them.
func New(top *topology.Topology, replica, version string) *Metrics {
	reg := prometheus.NewRegistry()
	f := func(c prometheus.Collector) { reg.MustRegister(c) }
	m := &Metrics{reg: reg}
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c := prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels)
		f(c)
		return c
	}
	hist := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h := prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels)
		f(h)
		return h
	}
	secs := prometheus.ExponentialBuckets(0.0001, 4, 10) // 100µs to 26s
	m.pipeIn = counter("streamer_pipe_records_in_total", "Records handed to a pipe.", "pipe")
	m.pipeOut = counter("streamer_pipe_records_out_total", "Records a pipe emitted, on all its outputs.", "pipe")
	m.pipeDropped = counter("streamer_pipe_records_dropped_total", "Records a pipe consumed without emitting or failing them (filtered out).", "pipe")
	m.deadLetters = counter("streamer_dead_letters_total", "Records sent to the dead-letter dataset, by the pipe and stage they failed in (decode; process, which includes encoding the pipe's output).", "pipe", "stage")
	m.skipped = counter("streamer_pipe_records_skipped_total", "Failed records dropped by on_error: skip.", "pipe")
	m.pipeSeconds = hist("streamer_pipe_batch_duration_seconds", "Time a pipe took to process one batch.", secs, "pipe")
	m.pipeBatch = hist("streamer_pipe_batch_records", "Records per batch handed to a pipe.", prometheus.ExponentialBuckets(1, 4, 9), "pipe")
	m.decodeErrors = counter("streamer_decode_errors_total", "Records of a source dataset that failed to decode.", "dataset")
	m.outputs = counter("streamer_output_records_total", "Records produced to a sink dataset.", "dataset")
	m.latency = hist("streamer_end_to_end_latency_seconds", "Age of records produced to a sink: now minus the record timestamp.", prometheus.ExponentialBuckets(0.001, 4, 10), "dataset")
	m.txns = counter("streamer_transactions_total", "Ended transactions, committed or aborted.", "outcome")
	m.txnSeconds = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "streamer_transaction_commit_duration_seconds", Help: "Time to end a transaction: flush, offset commit and EndTxn.", Buckets: secs})
	m.txnRecords = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "streamer_transaction_records", Help: "Consumed records covered by one transaction.", Buckets: prometheus.ExponentialBuckets(1, 4, 10)})
	f(m.txnSeconds)
	f(m.txnRecords)
	m.rebalances = counter("streamer_rebalances_total", "Assignment changes of this replica.", "kind")
	m.assigned = prometheus.NewGauge(prometheus.GaugeOpts{Name: "streamer_assigned_partitions", Help: "Source partitions assigned to this replica."})
	m.openTxn = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "streamer_open_transaction_records", Help: "Records between the last stable offset and the high watermark of a partition the job reads: records of open transactions, invisible to read_committed readers."}, []string{"topic", "partition"})
	m.openTxnAge = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "streamer_open_transaction_age_seconds", Help: "How long the last stable offset of a partition the job reads has stood still with records above it; longer than the transaction timeout, a transaction hangs."}, []string{"topic", "partition"})
	m.lag = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "streamer_consumer_lag_records", Help: "Records between the last consumed and the partition's last stable offset, as of the last fetch."}, []string{"topic", "partition"})
	ready := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "streamer_ready", Help: "1 when the replica has joined the group, holds its assignment and has restored its state."}, func() float64 {
		if f := m.ready.Load(); f != nil && (*f)() {
			return 1
		}
		return 0
	})
	m.restored = counter("streamer_state_restored_records_total", "Changelog records applied to state stores while restoring them.", "store")
	m.restoreSeconds = hist("streamer_state_restore_duration_seconds", "Time to restore one store partition from its changelog.", prometheus.ExponentialBuckets(0.001, 4, 10), "store")
	m.stateBytes = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "streamer_state_size_bytes", Help: "Disk space of a state store partition, as of the last report (every 10 s at most)."}, []string{"store", "partition"})
	f(m.stateBytes)
	m.restoreRemaining = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "streamer_state_restore_remaining_records", Help: "Changelog offsets a state restore still has to read, per store partition (an upper bound on the records left); 0 once done."}, []string{"store", "partition"})
	f(m.restoreRemaining)
	m.pauses = prometheus.NewCounter(prometheus.CounterOpts{Name: "streamer_dependency_pauses_total", Help: "Transactions aborted because a dependency (model server, schema registry) was unavailable; the same records are processed again after a pause."})
	f(m.pauses)
	m.purges = counter("streamer_internal_purges_total", "Deletions of the consumed records of repartition and merge topics, by outcome (ok, failed). Those topics keep their records until purged: failures let them grow.", "outcome")
	m.purges.WithLabelValues("ok")
	m.purges.WithLabelValues("failed")
	m.modelCalls = counter("streamer_model_calls_total", "Model calls of a predict pipe's shared micro-batcher, by outcome: ok, rejected (the model refused some rows) or unavailable (after retries, or with the breaker open).", "model", "outcome")
	m.modelRows = counter("streamer_model_rows_total", "Rows scored by model calls.", "model")
	m.modelRetries = counter("streamer_model_retries_total", "Retried attempts of model calls.", "model")
	m.modelCallRows = hist("streamer_model_call_rows", "Rows per model call (the micro-batch size).", prometheus.ExponentialBuckets(1, 2, 12), "model")
	m.modelSeconds = hist("streamer_model_call_duration_seconds", "Time of a model call, retries included.", secs, "model")
	m.modelWait = hist("streamer_model_batch_wait_seconds", "Time rows waited for their micro-batch to fill and for a free call slot.", secs, "model")
	m.modelBreaker = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "streamer_model_breaker_open", Help: "1 while a model's circuit breaker is open."}, []string{"model"})
	f(m.modelBreaker)
	m.tableStale = newTableStaleness()
	f(m.tableStale)
	m.tableSkipped = counter("streamer_table_rows_skipped_total", "Rows of an encrypted table that did not decrypt (wrong key, tampered, no data key header), skipped as the table was read: the key keeps its previous value. The log names each row's topic, partition and offset.", "table")
	for _, d := range top.Tables() {
		if d.Encryption != nil {
			m.tableSkipped.WithLabelValues(d.Name)
		}
	}
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "streamer_info", Help: "The replica's topology, consumer group, replica id and version."}, []string{"topology", "group", "replica", "version"})
	f(m.assigned)
	f(m.lag)
	f(m.openTxn)
	f(m.openTxnAge)
	f(ready)
	f(info)
	info.WithLabelValues(top.Name, top.Group, replica, version).Set(1)

	// Every pipe's series exist from the start, at zero, so dashboards and
	// rate() see them before the first failure.
	for _, p := range top.Pipes {
		m.pipeIn.WithLabelValues(p.Name)
		m.pipeOut.WithLabelValues(p.Name)
		m.pipeDropped.WithLabelValues(p.Name)
		m.skipped.WithLabelValues(p.Name)
		for _, stage := range []string{"decode", "process"} {
			m.deadLetters.WithLabelValues(p.Name, stage)
		}
	}
	for _, d := range top.Sinks() {
		m.outputs.WithLabelValues(d.Name)
	}
	for _, s := range top.Stores() {
		m.restored.WithLabelValues(s)
	}
	for _, p := range top.Pipes {
		if p.Type == "predict" {
			for _, o := range []string{"ok", "rejected", "unavailable"} {
				m.modelCalls.WithLabelValues(p.Name, o)
			}
			m.modelRows.WithLabelValues(p.Name)
			m.modelRetries.WithLabelValues(p.Name)
			m.modelBreaker.WithLabelValues(p.Name)
		}
	}
	for _, d := range top.Sources() {
		m.decodeErrors.WithLabelValues(d.Name)
	}
	for _, o := range []string{"committed", "aborted"} {
		m.txns.WithLabelValues(o)
	}
	for _, k := range []string{"assigned", "revoked", "lost"} {
		m.rebalances.WithLabelValues(k)
	}

	f(collectors.NewGoCollector())
	f(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.kafk = kprom.NewMetrics("streamer_kafka", kprom.Registry(reg),
		kprom.FetchAndProduceDetail(kprom.ByTopic, kprom.Records, kprom.CompressedBytes, kprom.UncompressedBytes, kprom.ConsistentNaming))
	return m
}

// Registry returns the registry, to add more collectors or to gather.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ClientHook is the franz-go hook that reports a client's metrics
// (connections, bytes and records produced and fetched, request latency).
// Attach it to one client: engine.Options.ClientHooks.
func (m *Metrics) ClientHook() kgo.Hook { return m.kafk }

// Handler serves the metrics in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// SetReadiness makes streamer_ready report ready(), such as
// engine.Engine.Ready: joined, assigned, and every restore done.
func (m *Metrics) SetReadiness(ready func() bool) { m.ready.Store(&ready) }

func (m *Metrics) OnPipeBatch(b engine.PipeBatch) {
	m.pipeIn.WithLabelValues(b.Pipe).Add(float64(b.In))
	m.pipeOut.WithLabelValues(b.Pipe).Add(float64(b.Out))
	if d := b.In - b.Out - b.Failed; d > 0 {
		m.pipeDropped.WithLabelValues(b.Pipe).Add(float64(d))
	}
	if b.Skipped > 0 {
		m.skipped.WithLabelValues(b.Pipe).Add(float64(b.Skipped))
	}
	if b.DeadLettered > 0 {
		m.deadLetters.WithLabelValues(b.Pipe, "process").Add(float64(b.DeadLettered))
	}
	m.pipeSeconds.WithLabelValues(b.Pipe).Observe(b.Duration.Seconds())
	m.pipeBatch.WithLabelValues(b.Pipe).Observe(float64(b.In))
}

func (m *Metrics) OnDecodeError(dataset, pipe string, deadLettered bool) {
	m.decodeErrors.WithLabelValues(dataset).Inc()
	if deadLettered {
		m.deadLetters.WithLabelValues(pipe, "decode").Inc()
	}
}

func (m *Metrics) OnOutput(dataset string, age time.Duration) {
	m.outputs.WithLabelValues(dataset).Inc()
	m.latency.WithLabelValues(dataset).Observe(age.Seconds())
}

func (m *Metrics) OnTxnEnd(t engine.TxnEnd) {
	outcome := "aborted"
	if t.Committed {
		outcome = "committed"
	}
	m.txns.WithLabelValues(outcome).Inc()
	m.txnSeconds.Observe(t.Duration.Seconds())
	m.txnRecords.Observe(float64(t.Records))
}

func (m *Metrics) OnRebalance(r engine.Rebalance) {
	n := func(p map[string][]int32) (c int) {
		for _, ps := range p {
			c += len(ps)
		}
		return c
	}
	switch {
	case r.Lost:
		m.rebalances.WithLabelValues("lost").Inc()
		m.assigned.Sub(float64(n(r.Revoked)))
	case r.Assigned != nil:
		m.rebalances.WithLabelValues("assigned").Inc()
		m.assigned.Add(float64(n(r.Assigned)))
	default:
		m.rebalances.WithLabelValues("revoked").Inc()
		m.assigned.Sub(float64(n(r.Revoked)))
	}
}

func (m *Metrics) OnLag(topic string, partition int32, lag int64) {
	p := strconv.Itoa(int(partition))
	if lag < 0 {
		m.lag.DeleteLabelValues(topic, p)
		return
	}
	m.lag.WithLabelValues(topic, p).Set(float64(lag))
}

func (m *Metrics) OnOpenTxn(o engine.OpenTxn) {
	p := strconv.Itoa(int(o.Partition))
	m.openTxn.WithLabelValues(o.Topic, p).Set(float64(o.Records))
	m.openTxnAge.WithLabelValues(o.Topic, p).Set(o.Age.Seconds())
}

func (m *Metrics) OnStateRestored(r engine.StateRestore) {
	m.restored.WithLabelValues(r.Store).Add(float64(r.Records))
	m.restoreSeconds.WithLabelValues(r.Store).Observe(r.Duration.Seconds())
}

func (m *Metrics) OnStateSize(store string, partition int32, bytes int64) {
	m.stateBytes.WithLabelValues(store, strconv.Itoa(int(partition))).Set(float64(bytes))
}

func (m *Metrics) OnPause(engine.Pause) { m.pauses.Inc() }

func (m *Metrics) OnPurge(p engine.Purge) {
	outcome := "ok"
	if p.Err != nil {
		outcome = "failed"
	}
	m.purges.WithLabelValues(outcome).Inc()
}

// OnModelCall reports a predict pipe's model call; the model label is the
// pipe's name.
func (m *Metrics) OnModelCall(c ml.ModelCall) {
	outcome := "ok"
	switch {
	case errors.Is(c.Err, ml.ErrUnavailable):
		outcome = "unavailable"
	case c.Err != nil:
		outcome = "rejected"
	}
	m.modelCalls.WithLabelValues(c.Model, outcome).Inc()
	if c.Err == nil {
		m.modelRows.WithLabelValues(c.Model).Add(float64(c.Rows))
	}
	if c.Attempts > 1 {
		m.modelRetries.WithLabelValues(c.Model).Add(float64(c.Attempts - 1))
	}
	m.modelCallRows.WithLabelValues(c.Model).Observe(float64(c.Rows))
	m.modelSeconds.WithLabelValues(c.Model).Observe(c.Duration.Seconds())
	m.modelWait.WithLabelValues(c.Model).Observe(c.Wait.Seconds())
}

func (m *Metrics) OnBreaker(model string, open bool) {
	v := 0.0
	if open {
		v = 1
	}
	m.modelBreaker.WithLabelValues(model).Set(v)
}

func (m *Metrics) OnRestoreProgress(p engine.RestoreProgress) {
	v := float64(p.Remaining())
	if p.Done {
		v = 0
	}
	m.restoreRemaining.WithLabelValues(p.Store, strconv.Itoa(int(p.Partition))).Set(v)
}
