// Command bench measures the streamer engine end to end against a real
// broker, next to the fastest thing that could do the same job: a plain
// franz-go consume-and-produce loop.
//
//	go run ./bench -brokers 127.0.0.1:9092 -records 300000 -rounds 2
//
// One run of the command:
//
//  1. creates an input topic and fills it with N ~1 KB JSON orders from
//     internal/gen (untimed);
//  2. for each round, in alternating order:
//     (i)  passthrough: a consumer-group client (no transactions, autocommit)
//     reads the input from the start and produces every record unchanged
//     to a fresh output topic; timed from the first record consumed until
//     all N are produced and acknowledged;
//     (ii) streamer: bench/topology.yaml (filter + map) runs in-process with
//     engine.New(...).Run, exactly once, default 100ms commit interval;
//     timed from the first record consumed until Stats().CommittedIn
//     reaches N; the output is then read back with read_committed and its
//     count must be exactly N;
//  3. prints records/s, the ratio (ii)/(i) per round and the medians, and the
//     CPU time of this process (getrusage) and of the broker (/proc) per
//     record.
//
// Each run uses a fresh consumer group and a fresh output topic. Results are
// in bench/RESULTS.md.
//
// -restore and -aggregate run the state benchmarks instead (state.go):
// restore throughput against a raw read of the changelog, and the memory of
// a count over many distinct keys.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/internal/tuning"
	"github.com/streamerio/streamer/topology"
)

type config struct {
	brokers      []string
	records      int
	rounds       int
	partitions   int
	size         int
	topologyFile string
	wide         bool
	cpuProfile   string
	memProfile   string
	passProfile  string
	traceFile    string
	brokerPID    int
	keep         bool
	timeout      time.Duration
	backfill     bool // run the topology as a bounded backfill too (backfill.go)
	bounded      bool // this streamer run is the backfill
	// The state benchmarks (state.go).
	restore     bool
	aggregate   bool
	keys        int
	valueSize   int
	streamerBin string
}

func main() {
	var c config
	defBrokers := os.Getenv("STREAMER_BROKERS")
	if defBrokers == "" {
		defBrokers = "127.0.0.1:9092"
	}
	brokers := flag.String("brokers", defBrokers, "seed brokers, comma separated (default $STREAMER_BROKERS or 127.0.0.1:9092)")
	flag.IntVar(&c.records, "records", 300000, "records in the input topic (N)")
	flag.IntVar(&c.rounds, "rounds", 2, "rounds; each runs passthrough and streamer once, alternating which goes first")
	flag.IntVar(&c.partitions, "partitions", 6, "partitions of the input and output topics")
	flag.IntVar(&c.size, "size", 1024, "approximate record value size in bytes (internal/gen Pad)")
	flag.BoolVar(&c.wide, "wide", false, "wide records: add nested profile, device and attribute objects that the pipes do not touch (internal/gen Wide)")
	flag.StringVar(&c.topologyFile, "topology", "", "topology file of the streamer run (default: bench/topology.yaml next to this source)")
	flag.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of the first streamer run to this file")
	flag.StringVar(&c.memProfile, "memprofile", "", "write an allocation profile to this file after the first streamer run (what the process allocated until then, input and passthrough included: look at the engine's part, or go tool pprof -sample_index=alloc_space)")
	flag.StringVar(&c.passProfile, "passprofile", "", "write a CPU profile of the first passthrough run to this file")
	flag.StringVar(&c.traceFile, "trace", "", "write a runtime/trace of the first streamer run to this file")
	flag.IntVar(&c.brokerPID, "broker-pid", -1, "pid of a local broker whose CPU time to report (-1: read $KAFKA_DATA/kafka.pid or /tmp/streamer-kafka/kafka.pid if present; 0: none)")
	flag.BoolVar(&c.keep, "keep", false, "keep the topics afterwards (they are deleted at the end, not between runs, so that deletions do not load the broker during a run)")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up on a run after this long")
	flag.BoolVar(&c.backfill, "backfill", false, "each round also runs the topology as a bounded backfill over the input (engine Options.Bounds), timed the same way")
	flag.BoolVar(&c.restore, "restore", false, "state restore benchmark instead: fill a changelog with -keys keys, then time a raw read of it against an engine restoring it (see state.go)")
	flag.BoolVar(&c.aggregate, "aggregate", false, "state size benchmark instead: `streamer run` counts per key over -keys distinct keys; reports records/s and peak RSS (see state.go)")
	flag.IntVar(&c.keys, "keys", 1000000, "distinct keys of -restore and -aggregate")
	flag.IntVar(&c.valueSize, "value-size", 0, "approximate changelog value size in bytes for -restore (0: a bare count, sum and max, 55-75 bytes)")
	flag.StringVar(&c.streamerBin, "streamer", "", "streamer binary for -aggregate (default: go build ./cmd/streamer)")
	flag.Parse()
	// The process runs as `streamer run` would; the passthrough shares it.
	headroom, err := tuning.EnvHeadroom()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", tuning.HeadroomEnv+":", err)
		os.Exit(2)
	}
	gogc := tuning.GC()
	_, mem := tuning.TuneGC(context.Background(), headroom, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	fmt.Printf("bench: GOGC %s, %s, as streamer run sets them (both jobs run in this process)\n", gogc, mem)
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	if c.records <= 0 || c.rounds <= 0 || c.partitions <= 0 {
		fmt.Fprintln(os.Stderr, "bench: -records, -rounds and -partitions must be positive")
		os.Exit(2)
	}
	if c.topologyFile == "" {
		c.topologyFile = defaultTopology()
	}
	if c.brokerPID < 0 {
		c.brokerPID = findBrokerPID()
	}
	do := run
	switch {
	case c.restore:
		do = runRestore
	case c.aggregate:
		do = runAggregate
	}
	if err := do(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// defaultTopology finds bench/topology.yaml from the working directory (the
// module root or bench/ itself).
func defaultTopology() string {
	for _, p := range []string{"bench/topology.yaml", "topology.yaml"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "bench/topology.yaml"
}

func findBrokerPID() int {
	dir := os.Getenv("KAFKA_DATA")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "streamer-kafka")
	}
	b, err := os.ReadFile(filepath.Join(dir, "kafka.pid"))
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	if _, err := brokerCPU(pid); err != nil {
		return 0
	}
	return pid
}

// result is one timed run.
type result struct {
	round      int
	mode       string
	records    int64
	elapsed    time.Duration
	cpu        time.Duration // this process, user+sys
	brokerCPU  time.Duration // the broker process, user+sys; 0 if unknown
	machineCPU time.Duration // all CPUs busy (from /proc/stat); 0 if unknown
	mallocs    uint64
	allocated  uint64
	gcs        uint32
	requests   *requestStats
	note       string
	// topics the run made for itself (internal and changelog topics), to
	// delete at the end.
	topics []string
}

func (r result) rate() float64 { return float64(r.records) / r.elapsed.Seconds() }

// meter samples the counters a result is made of.
type meter struct {
	t      time.Time
	cpu    time.Duration
	broker time.Duration
	busy   time.Duration
	ms     runtime.MemStats
}

func sample(brokerPID int) meter {
	var m meter
	runtime.ReadMemStats(&m.ms)
	m.cpu = processCPU()
	if brokerPID > 0 {
		m.broker, _ = brokerCPU(brokerPID)
	}
	m.busy, _ = machineBusy()
	m.t = time.Now()
	return m
}

func (r *result) set(from, to meter) {
	r.elapsed = to.t.Sub(from.t)
	r.cpu = to.cpu - from.cpu
	r.brokerCPU = to.broker - from.broker
	if from.busy > 0 && to.busy > 0 {
		r.machineCPU = to.busy - from.busy
	}
	r.mallocs = to.ms.Mallocs - from.ms.Mallocs
	r.allocated = to.ms.TotalAlloc - from.ms.TotalAlloc
	r.gcs = to.ms.NumGC - from.ms.NumGC
}

func processCPU() time.Duration { return benchkit.ProcessCPU() }

// brokerCPU reads utime+stime of a process from /proc/<pid>/stat. Linux
// reports them in clock ticks of 1/100 s (USER_HZ).
func brokerCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')') // the command may hold spaces
	if i < 0 {
		return 0, errors.New("bad /proc stat")
	}
	f := strings.Fields(s[i+1:])
	// After the command: state is field 3 of the line, so utime (14) and
	// stime (15) are at indexes 11 and 12 here.
	if len(f) < 13 {
		return 0, errors.New("bad /proc stat")
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("bad /proc stat")
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// machineBusy reads the time all CPUs spent busy from /proc/stat (USER_HZ
// ticks of 1/100 s): everything but idle and iowait.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0, errors.New("bad /proc/stat")
	}
	var busy int64
	for i, x := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest time is already counted in user
			break
		}
		n, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			return 0, err
		}
		busy += n
	}
	return time.Duration(busy) * 10 * time.Millisecond, nil
}

// otherCores is the CPU that neither this process nor the broker used during
// a run, in cores: other load on the machine, which makes a run noisy.
func (r result) otherCores() string {
	if r.machineCPU <= 0 {
		return "-"
	}
	other := r.machineCPU - r.cpu - r.brokerCPU
	return fmt.Sprintf("%.2f", max(0, other.Seconds()/r.elapsed.Seconds()))
}

func run(ctx context.Context, c config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	stamp := time.Now().Format("150405")
	input := "bench-in-" + stamp
	if err := benchkit.CreateTopic(ctx, adm, input, c.partitions); err != nil {
		return err
	}
	created := []string{input}
	if !c.keep {
		defer func() { benchkit.DeleteTopics(adm, "bench", created...) }()
	}
	fmt.Printf("bench: brokers %v, %d records of ~%d B, %d partitions, %d rounds, GOMAXPROCS %d, NumCPU %d\n",
		c.brokers, c.records, c.size, c.partitions, c.rounds, runtime.GOMAXPROCS(0), runtime.NumCPU())
	if c.brokerPID > 0 {
		fmt.Printf("bench: broker pid %d (its CPU time is reported too)\n", c.brokerPID)
	}
	start := time.Now()
	bytes, err := fill(ctx, c, input)
	if err != nil {
		return fmt.Errorf("filling %s: %w", input, err)
	}
	fmt.Printf("bench: filled %s with %d records, %.1f MB of values, in %v (untimed)\n\n",
		input, c.records, float64(bytes)/1e6, time.Since(start).Round(time.Millisecond))

	var results []result
	for round := 1; round <= c.rounds; round++ {
		modes := []string{"passthrough", "streamer"}
		if c.backfill {
			modes = append(modes, "backfill")
		}
		if round%2 == 0 {
			slices.Reverse(modes)
		}
		for _, mode := range modes {
			name := fmt.Sprintf("bench-%s-%s-r%d", mode, stamp, round)
			var r result
			var err error
			switch mode {
			case "passthrough":
				prof := ""
				if round == 1 {
					prof = c.passProfile
				}
				r, err = passthrough(ctx, c, adm, input, name, prof)
				created = append(created, name+"-out")
			case "backfill":
				cb := c
				cb.bounded = true
				r, err = streamer(ctx, cb, adm, input, name, "", "")
				r.mode = "backfill"
				created = append(created, name+"-out")
				created = append(created, r.topics...)
			case "streamer":
				prof := ""
				if round == 1 {
					prof = c.cpuProfile
				}
				tr := ""
				if round == 1 {
					tr = c.traceFile
				}
				r, err = streamer(ctx, c, adm, input, name, prof, tr)
				if err == nil && round == 1 && c.memProfile != "" {
					err = writeAllocs(c.memProfile)
				}
				created = append(created, name+"-out")
				created = append(created, r.topics...)
			}
			if err != nil {
				return fmt.Errorf("round %d, %s: %w", round, mode, err)
			}
			r.round = round
			results = append(results, r)
			fmt.Printf("round %d %-11s %9.0f records/s  %6.2f s  %5.1f µs CPU/record  other load %s cores%s\n",
				round, mode, r.rate(), r.elapsed.Seconds(), perRecordMicros(r.cpu, r.records), r.otherCores(), r.note)
			fmt.Print(r.requests.summary("      "))
			runtime.GC() // start the next run from a clean heap
		}
	}
	report(c, results)
	return nil
}

func perRecordMicros(d time.Duration, n int64) float64 {
	return float64(d.Microseconds()) / float64(n)
}

// fill produces the input (benchkit.Fill).
func fill(ctx context.Context, c config, topic string) (int64, error) {
	return benchkit.Fill(ctx, c.brokers, topic, benchkit.Input{Records: c.records, Size: c.size, Wide: c.wide})
}

// passthrough consumes the input with a plain group client and produces
// every record unchanged. Producer settings match the engine's client (same
// buffer and batch limits, franz-go's default linger and compression), so the
// difference to the streamer run is the engine: decoding, pipes, encoding and
// transactions.
func passthrough(ctx context.Context, c config, adm *kadm.Client, input, name, profile string) (result, error) {
	res := result{mode: "passthrough", records: int64(c.records), requests: newRequestStats()}
	output := name + "-out"
	if err := benchkit.CreateTopic(ctx, adm, output, c.partitions); err != nil {
		return res, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()

	opts := append([]kgo.Opt{
		kgo.SeedBrokers(c.brokers...),
		kgo.ConsumerGroup(name),
		kgo.ConsumeTopics(input),
		kgo.WithHooks(res.requests),
	}, benchkit.PassthroughOpts()...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return res, err
	}
	defer cl.Close()

	var from meter
	stopProfile := func() {}
	defer func() { stopProfile() }()
	err = benchkit.Passthrough(ctx, cl, output, c.records, func() error {
		from = sample(c.brokerPID)
		res.requests.start()
		if profile != "" {
			var err error
			stopProfile, err = startProfile(profile)
			return err
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	res.set(from, sample(c.brokerPID))
	res.requests.stop()
	return res, nil
}

// streamer runs the topology in-process, exactly once, and checks its output.
func streamer(ctx context.Context, c config, adm *kadm.Client, input, name, profile, traceFile string) (result, error) {
	res := result{mode: "streamer", records: int64(c.records), requests: newRequestStats()}
	// A fresh group (so transactional id and internal topics) and output
	// topic for every run.
	top, err := topology.Load(c.topologyFile, topology.WithGroup(name))
	if err != nil {
		return res, err
	}
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
	if len(srcs) != 1 || len(sinks) != 1 || top.DeadLetter != nil {
		return res, fmt.Errorf("%s: want one source, one sink and no dead_letter, got %d sources and %d sinks", c.topologyFile, len(srcs), len(sinks))
	}
	output := name + "-out"
	for _, d := range top.Internal() {
		res.topics = append(res.topics, d.Topic)
	}
	for _, st := range top.Stores() {
		res.topics = append(res.topics, top.ChangelogTopic(st))
	}
	srcs[0].Topic, srcs[0].Partitions = input, c.partitions
	sinks[0].Topic, sinks[0].Partitions = output, c.partitions
	if sinks[0].Create != nil {
		sinks[0].Create.Partitions = c.partitions
	}
	if err := benchkit.CreateTopic(ctx, adm, output, c.partitions); err != nil {
		return res, err
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	stats := engine.NewStats()
	outs := &outputCount{}
	var bounds *engine.Bounds
	if c.bounded {
		if bounds, err = inputBounds(ctx, adm, input); err != nil {
			return res, err
		}
	}
	e, err := engine.New(top, engine.Options{
		Brokers: c.brokers, ReplicaID: "bench", Logger: log, Stats: stats,
		ClientOpts: []kgo.Opt{kgo.WithHooks(res.requests)}, // observes request latencies only
		Hooks:      []engine.Hook{outs},
		Bounds:     bounds,
	})
	if err != nil {
		return res, err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()

	deadline := time.NewTimer(c.timeout)
	defer deadline.Stop()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	var from meter
	started := false
	stopProfile, stopTrace := func() {}, func() {}
	// The run is done when every input record is committed. With internal
	// topics, records are consumed more than once, so it is done instead
	// when the sink has every output and the transaction holding the last
	// one committed: the engine ends a transaction only after the poll it
	// processes, so the next commit counted is that one.
	internal := len(top.Internal()) > 0
	commitsAt := int64(-1)
	finished := func() bool {
		if !internal {
			return stats.CommittedIn.Load() >= int64(c.records)
		}
		if commitsAt < 0 && outs.n.Load() >= int64(c.records) {
			commitsAt = stats.Commits.Load()
		}
		return commitsAt >= 0 && stats.Commits.Load() > commitsAt
	}
	for !finished() {
		select {
		case err := <-done:
			return res, fmt.Errorf("engine stopped early after %d committed records: %v", stats.CommittedIn.Load(), err)
		case <-deadline.C:
			stop()
			<-done
			return res, fmt.Errorf("timed out after %d committed records", stats.CommittedIn.Load())
		case <-tick.C:
		}
		if !started && stats.RecordsIn.Load() > 0 {
			started = true
			from = sample(c.brokerPID)
			res.requests.start()
			if profile != "" {
				if stopProfile, err = startProfile(profile); err != nil {
					return res, err
				}
			}
			if traceFile != "" {
				if stopTrace, err = startTrace(traceFile); err != nil {
					return res, err
				}
			}
		}
	}
	res.set(from, sample(c.brokerPID))
	res.requests.stop()
	stopProfile()
	stopTrace()
	if c.bounded {
		if err := awaitBounded(e, done, deadline.C, &res); err != nil {
			return res, err
		}
	} else {
		stop()
		if err := <-done; err != nil {
			return res, fmt.Errorf("engine: %w", err)
		}
	}
	res.note += fmt.Sprintf("  (in %d, out %d, commits %d, aborts %d)",
		stats.RecordsIn.Load(), stats.RecordsOut.Load(), stats.Commits.Load(), stats.Aborts.Load())

	// Exactly once: the committed output holds every record once.
	vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	counts, err := topicread.Count(vctx, c.brokers, output)
	if err != nil {
		return res, fmt.Errorf("reading %s back: %w", output, err)
	}
	got := counts[output]
	mark := "ok, exactly once"
	if got != int64(c.records) {
		mark = "MISMATCH"
	}
	res.note += fmt.Sprintf("\n      read back %s with read_committed: %d records, want %d: %s", output, got, c.records, mark)
	if got != int64(c.records) {
		fmt.Println(res.note)
		return res, fmt.Errorf("output %s holds %d committed records, want %d", output, got, c.records)
	}
	return res, nil
}

// outputCount counts the records produced to sinks (engine.OutputHook).
type outputCount struct{ n atomic.Int64 }

func (o *outputCount) OnOutput(string, time.Duration) { o.n.Add(1) }

func startProfile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}

// writeAllocs writes the allocation profile of the process so far.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	return errors.Join(pprof.Lookup("allocs").WriteTo(f, 0), f.Close())
}

func startTrace(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := trace.Start(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			trace.Stop()
			f.Close()
		})
	}, nil
}

// requestStats is a franz-go hook that sums the round-trip time of every
// request the client makes during the timed interval, by request type. It
// shows where a run waits on the broker: for the streamer, the transaction
// requests that End makes while processing stands still.
type requestStats struct {
	on atomic.Bool
	mu sync.Mutex
	by map[int16]*reqStat
}

type reqStat struct {
	n          int
	total, max time.Duration
	written    int64
}

func newRequestStats() *requestStats { return &requestStats{by: map[int16]*reqStat{}} }

func (s *requestStats) start() { s.on.Store(true) }
func (s *requestStats) stop()  { s.on.Store(false) }

func (s *requestStats) OnBrokerE2E(_ kgo.BrokerMetadata, key int16, e kgo.BrokerE2E) {
	if !s.on.Load() || e.Err() != nil {
		return
	}
	d := e.DurationE2E()
	s.mu.Lock()
	st := s.by[key]
	if st == nil {
		st = &reqStat{}
		s.by[key] = st
	}
	st.n++
	st.total += d
	st.max = max(st.max, d)
	st.written += int64(e.BytesWritten)
	s.mu.Unlock()
}

var _ kgo.HookBrokerE2E = (*requestStats)(nil)

func (s *requestStats) summary(indent string) string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]int16, 0, len(s.by))
	for k := range s.by {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(indent + "requests (round trip, summed over concurrent requests):")
	for i, k := range keys {
		st := s.by[k]
		if i%3 == 0 {
			b.WriteString("\n" + indent + "  ")
		}
		fmt.Fprintf(&b, "%-18s n=%-6d avg %6.2fms max %7.2fms   ", kmsg.NameForKey(k), st.n,
			float64(st.total.Microseconds())/1000/float64(st.n), float64(st.max.Microseconds())/1000)
	}
	b.WriteString("\n")
	return b.String()
}

func report(c config, rs []result) {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "round\tmode\trecords\tseconds\trecords/s\tCPU µs/rec\tbroker CPU µs/rec\tother load (cores)\tallocs/rec\talloc B/rec\tGCs\tratio (ii)/(i)\t")
	byMode := map[string][]result{}
	for _, r := range rs {
		byMode[r.mode] = append(byMode[r.mode], r)
	}
	var ratios []float64
	for _, r := range rs {
		ratio := ""
		if r.mode != "passthrough" {
			for _, p := range byMode["passthrough"] {
				if p.round == r.round {
					x := r.rate() / p.rate()
					if r.mode == "streamer" {
						ratios = append(ratios, x)
					}
					ratio = fmt.Sprintf("%.3f", x)
				}
			}
		}
		fmt.Fprintf(w, "%d\t%s\t%d\t%.2f\t%.0f\t%.1f\t%s\t%s\t%.1f\t%.0f\t%d\t%s\t\n",
			r.round, r.mode, r.records, r.elapsed.Seconds(), r.rate(),
			perRecordMicros(r.cpu, r.records), brokerCol(r), r.otherCores(),
			float64(r.mallocs)/float64(r.records), float64(r.allocated)/float64(r.records), r.gcs, ratio)
	}
	fmt.Fprintln(w, "\t\t\t\t\t\t\t\t\t\t\t\t")
	for _, mode := range []string{"passthrough", "streamer", "backfill"} {
		ms := byMode[mode]
		if len(ms) == 0 {
			continue
		}
		ratio := ""
		if mode == "streamer" {
			ratio = fmt.Sprintf("%.3f", median(ratios))
		}
		fmt.Fprintf(w, "median\t%s\t\t\t%.0f\t%.1f\t%s\t\t\t\t\t%s\t\n", mode,
			median(mapf(ms, result.rate)),
			median(mapf(ms, func(r result) float64 { return perRecordMicros(r.cpu, r.records) })),
			medianBroker(ms), ratio)
	}
	w.Flush()
	fmt.Println("\nrecords/s: passthrough from the first record consumed to the last one acked;")
	fmt.Println("streamer from the first record consumed to CommittedIn == N (outputs and offsets committed);")
	fmt.Println("backfill (-backfill) the same, as a bounded run, which then stops by itself.")
	fmt.Println("CPU: this process (getrusage user+sys) over the same interval; broker: /proc/<pid>/stat;")
	fmt.Println("other load: CPU busy on the machine (/proc/stat) minus both, in cores (noise from other processes).")
}

func brokerCol(r result) string {
	if r.brokerCPU <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f", perRecordMicros(r.brokerCPU, r.records))
}

func medianBroker(rs []result) string {
	xs := mapf(rs, func(r result) float64 { return perRecordMicros(r.brokerCPU, r.records) })
	if m := median(xs); m > 0 {
		return fmt.Sprintf("%.1f", m)
	}
	return "-"
}

func mapf(rs []result, f func(result) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}
