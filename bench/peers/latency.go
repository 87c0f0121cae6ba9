package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
)

// End-to-end latency at a fixed offered load (issue 16 §4): for each system,
// a fresh input topic, the system started on it (running until its stdin
// closes), a paced producer and a read_committed reader in this process.
//
// The producer writes the generator's orders in order (the same sequence as
// the throughput input, so the same oracle applies), each stamped with the
// time it is handed to the client. First it probes, one record every 100 ms,
// until the reader has seen an output (the system has joined its group and
// its path is live) and one more second has passed; then it produces at the
// offered rate for the measured interval, in steps of 2 ms. The reader
// consumes the output read_committed (a fetch waits at most 10 ms) and
// takes, for each output record, the time it was returned minus its record
// timestamp (every system here keeps the input record's timestamp): from
// the moment the record was produced to the moment its output was committed
// and readable. Only records produced after the warm-up count. When every
// output has been read, the system's stdin is closed and it stops; the
// output is then read back once more and compared with the oracle, as in
// the throughput runs.

// latOutcome is one system's latency run.
type latOutcome struct {
	system       string
	rate         float64         // offered, records/s
	achieved     float64         // produced in the paced interval / its length
	total        int             // records produced (probes included)
	samples      []time.Duration // sorted
	head, tail   time.Duration   // median latency of the first and the last tenth of the samples, in arrival order
	load1, load2 string          // /proc/loadavg before and after
	ok           bool
	note         string
}

func (l latOutcome) quantile(q float64) time.Duration {
	if len(l.samples) == 0 {
		return 0
	}
	i := int(q * float64(len(l.samples)-1))
	return l.samples[i]
}

// kept says whether the system kept up with the offered load: latency at
// the end of the measured interval no more than a second above its start
// (a system that cannot keep up builds a backlog, and its latency grows
// for as long as the load lasts).
func (l latOutcome) kept() bool { return l.tail-l.head <= time.Second }

func medianDuration(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// runLatency measures every system in c.latSystems at rate records/s.
func runLatency(ctx context.Context, c config, adm *kadm.Client, stamp string, rate float64, created *[]string) ([]latOutcome, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	var outs []latOutcome
	for _, sys := range c.latSystems {
		name := fmt.Sprintf("peers-lat-%s-%s", sys, stamp)
		input, output := name+"-in", name+"-out"
		for _, t := range []string{input, output} {
			if sys == "kstreams" && t == output {
				continue // the app creates its own output topic
			}
			if err := benchkit.CreateTopic(ctx, adm, t, c.partitions); err != nil {
				return nil, err
			}
			*created = append(*created, t)
		}
		var cmd *exec.Cmd
		switch sys {
		case "kstreams":
			*created = append(*created, name+"-out")
			cmd = exec.CommandContext(ctx, "java", "-jar", c.jar, strings.Join(c.brokers, ","), input, name,
				"1", fmt.Sprint(c.partitions), "latency")
		case "streamer", "careful":
			cmd = exec.CommandContext(ctx, self, "-worker", sys, "-worker-input", input, "-worker-output", output,
				"-worker-group", name, "-brokers", strings.Join(c.brokers, ","), "-records", "0",
				"-partitions", fmt.Sprint(c.partitions), "-topology", c.topology, "-timeout", c.timeout.String())
		case "quix":
			return nil, fmt.Errorf("latency: quix is not wired for latency runs")
		default:
			return nil, fmt.Errorf("latency: unknown system %q", sys)
		}
		l, err := latencyRun(ctx, c, cmd, sys, input, output, rate)
		if err != nil {
			return nil, fmt.Errorf("latency %s: %w", sys, err)
		}
		outs = append(outs, l)
		printLatency(l)
	}
	return outs, nil
}

func printLatency(l latOutcome) {
	fmt.Printf("latency %-9s offered %.0f/s achieved %.0f/s  %d samples  p50 %v  p99 %v  max %v  first/last tenth p50 %v/%v  load %s -> %s  %s\n",
		l.system, l.rate, l.achieved, len(l.samples), l.quantile(0.5), l.quantile(0.99), l.quantile(1),
		l.head, l.tail, l.load1, l.load2, l.note)
}

func latencyRun(ctx context.Context, c config, cmd *exec.Cmd, sys, input, output string, rate float64) (latOutcome, error) {
	l := latOutcome{system: sys, rate: rate, load1: loadavg()}
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return l, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return l, err
	}
	if err := cmd.Start(); err != nil {
		return l, err
	}
	go func() { _, _ = io.Copy(io.Discard, bufio.NewReader(stdout)) }()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		stdin.Close()
		return cmd.Wait()
	}
	defer func() { _ = stop() }()

	reader, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ConsumeTopics(output),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxWait(10*time.Millisecond))
	if err != nil {
		return l, err
	}
	defer reader.Close()
	producer, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...), kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(1<<16))
	if err != nil {
		return l, err
	}
	defer producer.Close()

	var (
		seen     atomic.Int64
		paceFrom atomic.Int64 // unix ms from which records count; 0 while probing
		mu       sync.Mutex
		samples  []time.Duration
	)
	rctx, rcancel := context.WithCancel(ctx)
	defer rcancel()
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for rctx.Err() == nil {
			fs := reader.PollFetches(rctx)
			now := time.Now()
			from := paceFrom.Load()
			var batch []time.Duration
			fs.EachRecord(func(r *kgo.Record) {
				seen.Add(1)
				if from > 0 && r.Timestamp.UnixMilli() >= from {
					batch = append(batch, now.Sub(r.Timestamp))
				}
			})
			if len(batch) > 0 {
				mu.Lock()
				samples = append(samples, batch...)
				mu.Unlock()
			}
		}
	}()

	var perr atomic.Pointer[error]
	promise := func(_ *kgo.Record, err error) {
		if err != nil {
			perr.CompareAndSwap(nil, &err)
		}
	}
	g := c.in.Orders()
	produced := 0
	produce := func() {
		o := g.Next()
		producer.Produce(ctx, &kgo.Record{Topic: input, Key: o.Key, Value: o.Value, Timestamp: time.Now()}, promise)
		produced++
	}
	// Probe until the first output is readable, then a second more.
	deadline := time.Now().Add(c.timeout)
	var liveAt time.Time
	for liveAt.IsZero() || time.Since(liveAt) < time.Second {
		if time.Now().After(deadline) {
			return l, fmt.Errorf("no output after %v of probing", c.timeout)
		}
		if cmd.ProcessState != nil {
			return l, fmt.Errorf("the system exited while probing")
		}
		produce()
		time.Sleep(100 * time.Millisecond)
		if liveAt.IsZero() && seen.Load() > 0 {
			liveAt = time.Now()
		}
	}
	// Paced: at step k the producer has produced rate*elapsed records.
	// Record timestamps are in ms: count from the next whole millisecond.
	start := time.Now().Truncate(time.Millisecond).Add(time.Millisecond)
	time.Sleep(time.Until(start))
	paceFrom.Store(start.Add(c.latWarmup).UnixMilli())
	base := produced
	want := int(rate * (c.latWarmup + c.latMeasure).Seconds())
	tick := time.NewTicker(2 * time.Millisecond)
	for produced-base < want {
		<-tick.C
		due := int(rate * time.Since(start).Seconds())
		for produced-base < min(due, want) {
			produce()
		}
	}
	tick.Stop()
	l.achieved = float64(want) / time.Since(start).Seconds()
	if err := producer.Flush(ctx); err != nil {
		return l, err
	}
	if p := perr.Load(); p != nil {
		return l, fmt.Errorf("producing: %w", *p)
	}
	l.total = produced
	// Wait for every output (the filter keeps every generated order).
	wait := time.Now().Add(2 * time.Minute)
	for seen.Load() < int64(produced) && time.Now().Before(wait) {
		time.Sleep(20 * time.Millisecond)
	}
	rcancel()
	<-readerDone
	l.load2 = loadavg()
	if err := stop(); err != nil {
		return l, fmt.Errorf("stopping: %w", err)
	}
	mu.Lock()
	l.samples = samples
	mu.Unlock()
	if n := len(l.samples) / 10; n > 0 {
		l.head = medianDuration(l.samples[:n])
		l.tail = medianDuration(l.samples[len(l.samples)-n:])
	}
	slices.Sort(l.samples)
	o := outcome{system: sys}
	if err := verify(ctx, c, output, expected(benchkit.Input{Records: produced, Size: c.in.Size, Wide: c.in.Wide}), &o); err != nil {
		return l, err
	}
	l.ok, l.note = o.ok, o.note
	if got := seen.Load(); got != int64(produced) {
		l.ok = false
		l.note = fmt.Sprintf("MISMATCH: %d outputs read while running, %d produced; %s", got, produced, o.note)
	}
	return l, nil
}
