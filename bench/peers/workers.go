package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/pprof"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/tuning"
	"github.com/streamerio/streamer/topology"
)

// job is what one worker process runs: a system reads input and writes
// output under group, and times itself.
type job struct {
	system   string
	brokers  []string
	input    string
	output   string
	group    string
	records  int
	parts    int
	topology string
	timeout  time.Duration
	workload string
	table    string // W2: the customers topic
	stateDir string // W6: the state directory
	phase    string // W6: fill or restore
}

// timing is a worker's measurement of itself: wall time and process CPU
// from the first record consumed until its last output is committed (or,
// for the passthrough, acknowledged).
type timing struct {
	from, to       time.Time
	cpuFrom, cpuTo time.Duration
}

func (t *timing) start() error {
	t.from, t.cpuFrom = time.Now(), benchkit.ProcessCPU()
	return nil
}

func (t *timing) stop() { t.to, t.cpuTo = time.Now(), benchkit.ProcessCPU() }

// runWorker runs one system in this process and prints its timing line,
// which the parent parses.
func runWorker(ctx context.Context, j job) error {
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	if j.records == 0 {
		// Latency mode (latency.go): run until the parent closes stdin.
		var stopped context.CancelFunc
		ctx, stopped = context.WithCancel(ctx)
		defer stopped()
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			stopped()
		}()
	}
	var t timing
	var err error
	switch j.system {
	case "passthrough":
		err = runPassthrough(ctx, j, &t)
	case "streamer":
		err = runStreamer(ctx, j, &t)
	case "naive":
		err = runNaive(ctx, j, &t)
	case "careful":
		err = runCareful(ctx, j, &t)
	default:
		err = fmt.Errorf("unknown system %q", j.system)
	}
	if err != nil {
		return err
	}
	fmt.Printf("result seconds %.4f cpu_seconds %.4f\n", t.to.Sub(t.from).Seconds(), (t.cpuTo - t.cpuFrom).Seconds())
	return nil
}

// runPassthrough is bench's passthrough (benchkit): no transactions.
func runPassthrough(ctx context.Context, j job, t *timing) error {
	opts := append([]kgo.Opt{kgo.SeedBrokers(j.brokers...), kgo.ConsumerGroup(j.group), kgo.ConsumeTopics(j.input)},
		benchkit.PassthroughOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return err
	}
	defer cl.Close()
	err = benchkit.Passthrough(ctx, cl, j.output, j.records, t.start)
	t.stop()
	return err
}

// runStreamer runs the topology with the engine as `streamer run` does (its
// GC tuning included), with the input and output topics and the group
// overridden, until every input record is committed.
func runStreamer(ctx context.Context, j job, t *timing) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	headroom, err := tuning.EnvHeadroom()
	if err != nil {
		return err
	}
	tuning.TuneGC(ctx, headroom, log)
	top, err := topology.Load(j.topology, topology.WithGroup(j.group))
	if err != nil {
		return err
	}
	stateDir := ""
	if j.workload == "W2" {
		if err := bindW2(top, j); err != nil {
			return err
		}
		if stateDir, err = w2StateDir(j.group); err != nil {
			return err
		}
		defer os.RemoveAll(stateDir)
	} else if err := bindW1(top, j); err != nil {
		return err
	}
	if path := os.Getenv("PEERS_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	stats := engine.NewStats()
	e, err := engine.New(top, engine.Options{Brokers: j.brokers, ReplicaID: "peers", Logger: log, Stats: stats, StateDir: stateDir})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	started := false
	timeline := os.Getenv("PEERS_TIMELINE") != ""
	last := time.Now()
	for j.records == 0 || stats.CommittedIn.Load() < int64(j.records) {
		if timeline && time.Since(last) > 250*time.Millisecond {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "%s in %d out %d committed %d commits %d\n", last.Format("15:04:05.000"),
				stats.RecordsIn.Load(), stats.RecordsOut.Load(), stats.CommittedIn.Load(), stats.Commits.Load())
		}
		select {
		case err := <-done:
			return fmt.Errorf("engine stopped after %d committed records: %v", stats.CommittedIn.Load(), err)
		case <-ctx.Done():
			stop()
			err := <-done
			if j.records == 0 && (err == nil || errors.Is(err, context.Canceled)) {
				t.stop()
				return nil // latency mode: stdin closed
			}
			return fmt.Errorf("after %d committed records: %w", stats.CommittedIn.Load(), ctx.Err())
		case <-tick.C:
		}
		if !started && stats.RecordsIn.Load() > 0 {
			started = true
			t.start()
		}
	}
	t.stop()
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// bindW1 points W1's one source and one sink at the job's topics.
func bindW1(top *topology.Topology, j job) error {
	var srcs, sinks []*topology.Dataset
	for _, d := range top.Sources() {
		if !d.IsInternal() {
			srcs = append(srcs, d)
		}
	}
	for _, d := range top.Sinks() {
		if d.Repartition == nil {
			sinks = append(sinks, d)
		}
	}
	if len(srcs) != 1 || len(sinks) != 1 || len(top.Internal()) > 0 {
		return fmt.Errorf("%s: want one source, one sink and no internal topics", j.topology)
	}
	srcs[0].Topic, srcs[0].Partitions = j.input, j.parts
	sinks[0].Topic, sinks[0].Partitions = j.output, j.parts
	if sinks[0].Create != nil {
		sinks[0].Create.Partitions = j.parts
	}
	return nil
}

// bindW2 points the datasets of bench/peers/w2.yaml at the job's topics.
func bindW2(top *topology.Topology, j job) error {
	for name, topic := range map[string]string{"orders": j.input, "customers": j.table, "per-minute": j.output} {
		d := top.Datasets[name]
		if d == nil {
			return fmt.Errorf("%s: no dataset %s", j.topology, name)
		}
		d.Topic, d.Partitions = topic, j.parts
		if d.Create != nil {
			d.Create.Partitions = j.parts
		}
	}
	return nil
}
