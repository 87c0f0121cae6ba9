package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
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
	model    string // W3: the model file of the hand-written systems
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
	case "streamer", "streamer-2r":
		err = runStreamer(ctx, j, &t)
	case "naive", "careful":
		var naive recordFn
		var careful batchFn
		if naive, careful, err = handwrittenWork(j); err != nil {
			return err
		}
		naivePoll, carefulPoll := 0, 10000 // W1: a naive poll takes all that is buffered
		switch j.workload {
		case "W3":
			naivePoll = 1000
		case "W4":
			naivePoll, carefulPoll = 1000, 1000
		}
		if j.system == "naive" {
			err = runNaive(ctx, j, &t, naive, naivePoll)
		} else {
			err = runCareful(ctx, j, &t, careful, carefulPoll)
		}
	default:
		err = fmt.Errorf("unknown system %q", j.system)
	}
	if err != nil {
		return err
	}
	fmt.Printf("result seconds %.4f cpu_seconds %.4f peak_rss_kb %d\n", t.to.Sub(t.from).Seconds(), (t.cpuTo - t.cpuFrom).Seconds(), peakRSS())
	return nil
}

// peakRSS is this process's peak resident set in KiB (VmHWM), 0 when
// unknown. The parent's rusage of a child is no measure when the parent
// is the larger: Linux starts a child's ru_maxrss from the RSS of the
// process it was forked from (W4's parent holds lingua's models for its
// oracle, 590 MiB, which every child then reported).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err == nil {
				return kb
			}
		}
	}
	return 0
}

// parseResult reads a worker's result line into o; its own peak RSS, when
// it gives one, replaces the one from rusage.
func parseResult(line string, o *outcome) error {
	var kb int64
	n, err := fmt.Sscanf(line, "result seconds %g cpu_seconds %g peak_rss_kb %d", &o.seconds, &o.cpu, &kb)
	if n < 2 {
		return err
	}
	if n == 3 && kb > 0 {
		o.rssKB = kb
	}
	return nil
}

// handwrittenWork is the per-record and the per-poll work of the
// hand-written systems for the job's workload.
func handwrittenWork(j job) (recordFn, batchFn, error) {
	switch j.workload {
	case "W3":
		m, err := loadModelFile(j.model)
		if err != nil {
			return nil, nil, err
		}
		return w3Naive(m), w3Careful(m), nil
	case "W4":
		det := w4Detector()
		return w4Naive(det), w4Careful(det), nil
	}
	return shape, sequential(shape), nil
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

// loadStreamer prepares a streamer child as `streamer run` does: a logger
// of warnings and errors to stderr, the GC tuned to the memory headroom
// (tuning.EnvHeadroom) for ctx's life, and j's topology loaded with j's
// group.
func loadStreamer(ctx context.Context, j job) (*topology.Topology, *slog.Logger, error) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	headroom, err := tuning.EnvHeadroom()
	if err != nil {
		return nil, nil, err
	}
	tuning.TuneGC(ctx, headroom, log)
	top, err := topology.Load(j.topology, topology.WithGroup(j.group))
	if err != nil {
		return nil, nil, err
	}
	return top, log, nil
}

// runStreamer runs the topology with the engine as `streamer run` does (its
// GC tuning included), with the input and output topics and the group
// overridden, until every input record is committed.
func runStreamer(ctx context.Context, j job, t *timing) error {
	top, log, err := loadStreamer(ctx, j)
	if err != nil {
		return err
	}
	stateDir := ""
	w5 := false
	switch {
	case j.workload == "W5":
		if err := bindW5(top, j); err != nil {
			return err
		}
		if stateDir, err = freshStateDir(j.group); err != nil {
			return err
		}
		defer os.RemoveAll(stateDir)
		w5 = true
	case j.workload == "W2":
		if err := bindW2(top, j); err != nil {
			return err
		}
		if stateDir, err = freshStateDir(j.group); err != nil {
			return err
		}
		defer os.RemoveAll(stateDir)
	default: // W1, W3, W4: one source, one sink
		if err := bindW1(top, j); err != nil {
			return err
		}
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
	// The system streamer-2r runs two replicas of the group in this
	// process (engines with replica ids peers-0 and peers-1, each with a
	// transactional producer and a state directory of its own), as a user
	// would run two replicas on a 2-core machine: one ends a transaction
	// while the other processes, as Kafka Streams' two stream threads do.
	replicas := 1
	if j.system == "streamer-2r" {
		replicas = 2
	}
	engines, statsOf, tallies := make([]*engine.Engine, replicas), make([]*engine.Stats, replicas), make([]*replicaTally, replicas)
	for i := range engines {
		id, dir := "peers", stateDir
		if replicas > 1 {
			id = fmt.Sprintf("peers-%d", i)
			if dir != "" {
				dir = filepath.Join(stateDir, strconv.Itoa(i))
			}
		}
		statsOf[i] = engine.NewStats()
		var hooks []engine.Hook
		tallies[i] = &replicaTally{}
		hooks = append(hooks, tallies[i])
		if engines[i], err = engine.New(top, engine.Options{Brokers: j.brokers, ReplicaID: id, Logger: log, Stats: statsOf[i], StateDir: dir, Hooks: hooks}); err != nil {
			return err
		}
	}
	sum := func(f func(*engine.Stats) *atomic.Int64) int64 {
		var n int64
		for _, s := range statsOf {
			n += f(s).Load()
		}
		return n
	}
	in := func(s *engine.Stats) *atomic.Int64 { return &s.RecordsIn }
	out := func(s *engine.Stats) *atomic.Int64 { return &s.RecordsOut }
	committed := func(s *engine.Stats) *atomic.Int64 { return &s.CommittedIn }
	commits := func(s *engine.Stats) *atomic.Int64 { return &s.Commits }
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, replicas)
	for _, e := range engines {
		go func() { done <- e.Run(runCtx) }()
	}
	// wait stops the engines and returns the first error that is not the
	// stop itself.
	wait := func() error {
		stop()
		var first error
		for range engines {
			if err := <-done; err != nil && !errors.Is(err, context.Canceled) && first == nil {
				first = err
			}
		}
		return first
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	started := false
	timeline := os.Getenv("PEERS_TIMELINE") != ""
	last := time.Now()
	finished := func() bool {
		if !w5 {
			return j.records > 0 && sum(committed) >= int64(j.records)
		}
		var n int64
		for _, d := range tallies {
			n += d.committed.Load()
		}
		return n >= int64(j.records)
	}
	for !finished() {
		if timeline && time.Since(last) > 250*time.Millisecond {
			last = time.Now()
			fmt.Fprintf(os.Stderr, "%s in %d out %d committed %d commits %d\n", last.Format("15:04:05.000"),
				sum(in), sum(out), sum(committed), sum(commits))
		}
		select {
		case err := <-done:
			stop()
			for range replicas - 1 {
				<-done
			}
			return fmt.Errorf("engine stopped after %d committed records: %v", sum(committed), err)
		case <-ctx.Done():
			err := wait()
			if j.records == 0 && err == nil {
				t.stop()
				return nil // latency mode: stdin closed
			}
			return fmt.Errorf("after %d committed records: %w", sum(committed), ctx.Err())
		case <-tick.C:
		}
		if !started && sum(in) > 0 {
			started = true
			t.start()
		}
	}
	t.stop()
	if err := wait(); err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	for i, d := range tallies {
		fmt.Fprintf(os.Stderr, "streamer %s replica %d: %s\n", j.workload, i, d.summary(t.to.Sub(t.from)))
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
