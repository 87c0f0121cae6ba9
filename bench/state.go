package main

// The state benchmarks (bench/RESULTS.md, "State"):
//
//	go run ./bench -restore -keys 1000000
//	go run ./bench -aggregate -keys 10000000
//
// -restore fills a stateful topology's changelog (created by the engine's
// own EnsureTopics: compacted, one partition per source partition) with N
// distinct keys holding aggregate-like JSON values, written in transactions
// like the engine's. It then times, in one run against the same broker:
// (a) a plain kgo consumer reading the changelog read_committed to its end,
// and (b) a replica of the topology (engine.New(...).Run) on an empty state
// directory restoring it, as reported by its RestoreHook, until it is ready.
// The restored stores are then opened and their keys counted.
//
// -aggregate fills an input topic with N records of N distinct keys, runs
// `streamer run` (a child process: the binary a user runs) on a count and
// sum per key, and samples its resident memory until the group has
// committed all N; it reports records/s and the child's peak RSS (VmHWM).

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/gen"
	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

const restoreTopology = `
name: %s
datasets:
  in:
    topic: %s
  out:
    topic: %s
    create: {partitions: %d}
pipes:
  totals:
    from: in
    to: out
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: amount}
        biggest: {op: max, of: amount}
`

// stateValue is a store value like the aggregate pipe's: a count, a sum and
// a max per key, as JSON (55-75 bytes). With pad > 0 a "last" field of
// generated order JSON brings it to about pad bytes, like the state of an
// aggregate that keeps the last record per key, or a table of profiles.
func stateValue(i, pad int) []byte {
	n := 1 + i%97
	v := fmt.Appendf(nil, `{"biggest":{"n":%d,"b":%d.5},"n":{"n":%d},"total":{"n":%d,"s":%d.25}`, n, 100+i%900, n, n, (i%100000)*7)
	if pad > len(v)+10 {
		g := gen.NewOrders(uint64(i))
		g.Pad = pad - len(v) - 10
		v = append(append(v, `,"last":`...), g.Next().Value...)
	}
	return append(v, '}')
}

func runRestore(ctx context.Context, c config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	stamp := time.Now().Format("150405")
	name := "bench-restore-" + stamp
	src := fmt.Sprintf(restoreTopology, name, name+"-in", name+"-out", c.partitions)
	top, err := topology.Compile("restore.yaml", []byte(src), nil)
	if err != nil {
		return err
	}
	// The input stays empty: the replica has only its state to restore.
	if err := benchkit.CreateTopic(ctx, adm, name+"-in", c.partitions); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if err := engine.EnsureTopics(ctx, top, c.brokers, nil, log); err != nil {
		return err
	}
	changelog := top.ChangelogTopic("totals")
	if !c.keep {
		defer benchkit.DeleteTopics(adm, "bench", name+"-in", name+"-out", changelog)
	}
	if c.keys%1_000_003 == 0 {
		return errors.New("-keys must not be a multiple of 1000003")
	}
	fmt.Printf("bench: restore of %d keys over %d partitions, GOMAXPROCS %d, changelog %s\n", c.keys, c.partitions, runtime.GOMAXPROCS(0), changelog)
	start := time.Now()
	bytes, err := fillChangelog(ctx, c, changelog)
	if err != nil {
		return fmt.Errorf("filling %s: %w", changelog, err)
	}
	fmt.Printf("bench: filled the changelog with %d records, %.1f MB of keys and values, in transactions of 10000, in %v (untimed)\n\n",
		c.keys, float64(bytes)/1e6, time.Since(start).Round(time.Millisecond))

	var raws, restores, ingests []float64
	for round := 1; round <= c.rounds; round++ {
		raw, err := rawRead(ctx, c, changelog)
		if err != nil {
			return fmt.Errorf("raw read: %w", err)
		}
		fmt.Printf("round %d raw read  %9.0f records/s  %6.2f s  %5.2f µs CPU/record  (%d records, kgo consumer, read_committed)\n", round, raw.rate(), raw.elapsed.Seconds(), raw.cpuPerRecord(), raw.records)
		runtime.GC()
		prof := ""
		if round == 1 {
			prof = c.cpuProfile
		}
		rs, err := engineRestore(ctx, c, top, prof)
		if err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		fmt.Printf("round %d restore   %9.0f records/s  %6.2f s  %5.2f µs CPU/record  (%d records into %d Pebble stores; ready %.2f s after Run)\n", round, rs.rate(), rs.elapsed.Seconds(), rs.cpuPerRecord(), rs.records, c.partitions, rs.ready.Seconds())
		fmt.Printf("round %d ratio     %.2f (restore / raw read)\n", round, rs.rate()/raw.rate())
		runtime.GC()
		ing, err := pebbleIngest(c)
		if err != nil {
			return fmt.Errorf("pebble ingest: %w", err)
		}
		fmt.Printf("round %d ingest    %9.0f records/s  %6.2f s  %5.2f µs CPU/record  (the same keys and values straight into %d bulk Pebble stores, %d at a time)\n", round, ing.rate(), ing.elapsed.Seconds(), ing.cpuPerRecord(), c.partitions, runtime.GOMAXPROCS(0))
		fmt.Printf("round %d ratio     %.2f (restore / Pebble ingest; target 0.7)\n", round, rs.rate()/ing.rate())
		raws, restores, ingests = append(raws, raw.rate()), append(restores, rs.rate()), append(ingests, ing.rate())
		runtime.GC()
	}
	if c.rounds > 1 {
		fmt.Printf("\nmedian: raw read %.0f records/s, restore %.0f records/s, Pebble ingest %.0f records/s; restore/raw %.2f, restore/ingest %.2f\n",
			median(raws), median(restores), median(ingests), median(restores)/median(raws), median(restores)/median(ingests))
	}
	return nil
}

// fillChangelog writes N distinct keys to the changelog, spread over its
// partitions, in transactions of 10,000 records as the engine's commits
// would (so the log holds transaction markers too).
func fillChangelog(ctx context.Context, c config, topic string) (int64, error) {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.brokers...),
		kgo.TransactionalID("bench-restore-fill-"+strconv.FormatInt(time.Now().UnixNano(), 36)),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.ProducerLinger(5*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(1<<16),
	)
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var (
		bytes int64
		first benchkit.FirstErr
	)
	promise := first.Promise
	const txn = 10000
	for i := 0; i < c.keys; i += txn {
		if err := cl.BeginTransaction(); err != nil {
			return 0, err
		}
		for j := i; j < min(i+txn, c.keys); j++ {
			// Keys in a scrambled order, as a changelog holds them: in the
			// order of their last update.
			k, v := fmt.Appendf(nil, "user-%010d", scramble(j, c.keys)), stateValue(j, c.valueSize)
			bytes += int64(len(k) + len(v))
			cl.Produce(ctx, &kgo.Record{Topic: topic, Partition: int32(j % c.partitions), Key: k, Value: v}, promise)
		}
		if err := cl.Flush(ctx); err != nil {
			return 0, err
		}
		if err := first.Err(); err != nil {
			return 0, err
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			return 0, err
		}
	}
	return bytes, nil
}

// pebbleIngest writes the changelog's keys and values, partition by
// partition in the changelog's order, straight into Pebble stores opened
// for a bulk load, as the restore does (state.OpenPebbleBulk, a Loader
// flushed every 4 MB, a final synced flush and one compaction), with as
// many partitions at once as the restore runs (one per core). It is the
// yardstick of the restore: Pebble's own ingest of the same data, with no
// Kafka in the way. The keys and values are made before the clock starts.
func pebbleIngest(c config) (timed, error) {
	dir, err := os.MkdirTemp("", "bench-ingest-")
	if err != nil {
		return timed{}, err
	}
	defer os.RemoveAll(dir)
	parts := make([][]kv, c.partitions)
	for j := range c.keys {
		p := j % c.partitions
		parts[p] = append(parts[p], kv{fmt.Appendf(nil, "user-%010d", scramble(j, c.keys)), stateValue(j, c.valueSize)})
	}
	start, cpu := time.Now(), processCPU()
	slots := make(chan struct{}, runtime.GOMAXPROCS(0))
	errs := make([]error, c.partitions)
	var wg sync.WaitGroup
	for p := range c.partitions {
		wg.Add(1)
		go func() {
			defer wg.Done()
			slots <- struct{}{}
			defer func() { <-slots }()
			errs[p] = ingestOne(filepath.Join(dir, strconv.Itoa(p)), parts[p])
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return timed{}, err
	}
	return timed{records: int64(c.keys), elapsed: time.Since(start), cpu: processCPU() - cpu}, nil
}

type kv struct{ k, v []byte }

func ingestOne(dir string, kvs []kv) error {
	st, err := state.OpenPebbleBulk(dir, state.PebbleOptions{})
	if err != nil {
		return err
	}
	ld, err := st.Loader()
	if err != nil {
		st.Close()
		return err
	}
	for i, x := range kvs {
		if err := ld.Put(x.k, x.v); err != nil {
			ld.Close()
			st.Close()
			return err
		}
		if ld.Len() >= 4<<20 {
			if err := ld.Flush(int64(i+1), false); err != nil {
				ld.Close()
				st.Close()
				return err
			}
		}
	}
	err = ld.Flush(int64(len(kvs)), true)
	err = errors.Join(err, ld.Close())
	if err == nil {
		err = st.CompactAll()
	}
	return errors.Join(err, st.Close())
}

// scramble maps 0..n-1 onto itself in a scattered order.
func scramble(i, n int) int {
	const prime = 1_000_003 // n must not be a multiple of it
	return int(uint64(i) * prime % uint64(n))
}

type timed struct {
	records int64
	elapsed time.Duration
	ready   time.Duration // restore: from Run to Ready
	cpu     time.Duration // this process, user+sys, over the run
}

func (t timed) cpuPerRecord() float64 { return float64(t.cpu.Nanoseconds()) / 1e3 / float64(t.records) }

func (t timed) rate() float64 { return float64(t.records) / t.elapsed.Seconds() }

// rawRead reads the whole changelog with a plain consumer, read_committed,
// until it has every record: the fastest a restore could read it.
func rawRead(ctx context.Context, c config, topic string) (timed, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	start, cpu := time.Now(), processCPU()
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
	)
	if err != nil {
		return timed{}, err
	}
	defer cl.Close()
	var n int64
	for n < int64(c.keys) {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return timed{}, fmt.Errorf("read %d of %d: %w", n, c.keys, err)
		}
		var ferr error
		fs.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("fetching %s[%d]: %w", t, p, err) })
		if ferr != nil {
			return timed{}, ferr
		}
		n += int64(fs.NumRecords())
	}
	return timed{records: n, elapsed: time.Since(start), cpu: processCPU() - cpu}, nil
}

// engineRestore runs a replica of the topology on an empty state directory
// until it is ready, which it is once every partition's store is restored.
// The time is from the first restore's start to the last one's end.
func engineRestore(ctx context.Context, c config, top *topology.Topology, profile string) (timed, error) {
	dir, err := os.MkdirTemp("", "bench-restore-state-")
	if err != nil {
		return timed{}, err
	}
	defer os.RemoveAll(dir)
	w := &benchkit.RestoreWatch{SkipEmpty: true}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := engine.New(top, engine.Options{Brokers: c.brokers, ReplicaID: "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36), StateDir: dir, Logger: log, Hooks: []engine.Hook{w}})
	if err != nil {
		return timed{}, err
	}
	if profile != "" {
		stop, err := startProfile(profile)
		if err != nil {
			return timed{}, err
		}
		defer stop()
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	begin, cpu := time.Now(), processCPU()
	go func() { done <- e.Run(rctx) }()
	deadline := time.After(c.timeout)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !e.Ready() {
		select {
		case err := <-done:
			cancel()
			return timed{}, fmt.Errorf("replica stopped: %v", err)
		case <-deadline:
			cancel()
			<-done
			return timed{}, fmt.Errorf("not ready after %v: %v", c.timeout, e.Restoring())
		case <-tick.C:
		}
	}
	ready, cpu := time.Since(begin), processCPU()-cpu
	cancel()
	if err := <-done; err != nil {
		return timed{}, err
	}
	rt := w.Totals()
	if rt.Err != nil {
		return timed{}, rt.Err
	}
	if rt.Done != c.partitions || rt.Records != int64(c.keys) {
		return timed{}, fmt.Errorf("%d restores applied %d records; want %d and %d", rt.Done, rt.Records, c.partitions, c.keys)
	}
	// Check what was restored, untimed: every key is in a store.
	keys := 0
	for p := range c.partitions {
		st, err := state.OpenPebble(state.Dir(dir, top.Group, "totals", int32(p)))
		if err != nil {
			return timed{}, err
		}
		err = st.Prefix(nil, func(_, _ []byte) bool { keys++; return true })
		st.Close()
		if err != nil {
			return timed{}, err
		}
	}
	if keys != c.keys {
		return timed{}, fmt.Errorf("the restored stores hold %d keys, want %d", keys, c.keys)
	}
	return timed{records: rt.Records, elapsed: rt.Last.Sub(rt.First), ready: ready, cpu: cpu}, nil
}

const aggregateTopology = `
name: %s
datasets:
  in:
    topic: %s
  out:
    topic: %s
    create: {partitions: %d}
pipes:
  totals:
    from: in
    to: out
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: amount}
`

// runAggregate counts and sums per key over N distinct keys with `streamer
// run` as a child process, and reports its throughput and peak RSS.
func runAggregate(ctx context.Context, c config) error {
	bin := c.streamerBin
	tmp, err := os.MkdirTemp("", "bench-aggregate-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if bin == "" {
		bin = filepath.Join(tmp, "streamer")
		b := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/streamer")
		b.Stdout, b.Stderr = os.Stdout, os.Stderr
		if err := b.Run(); err != nil {
			return fmt.Errorf("building streamer: %w", err)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	stamp := time.Now().Format("150405")
	name := "bench-agg-" + stamp
	input := name + "-in"
	if err := benchkit.CreateTopic(ctx, adm, input, c.partitions); err != nil {
		return err
	}
	file := filepath.Join(tmp, "aggregate.yaml")
	if err := os.WriteFile(file, fmt.Appendf(nil, aggregateTopology, name, input, name+"-out", c.partitions), 0o644); err != nil {
		return err
	}
	group := "streamer-" + name
	if !c.keep {
		defer benchkit.DeleteTopics(adm, "bench", input, name+"-out", group+"-totals-changelog")
	}
	fmt.Printf("bench: aggregate over %d distinct keys, %d partitions, binary %s, GOGC=%q GOMEMLIMIT=%q\n", c.keys, c.partitions, bin, os.Getenv("GOGC"), os.Getenv("GOMEMLIMIT"))
	start := time.Now()
	if err := fillKeys(ctx, c, input); err != nil {
		return fmt.Errorf("filling %s: %w", input, err)
	}
	fmt.Printf("bench: filled %s with %d records in %v (untimed)\n", input, c.keys, time.Since(start).Round(time.Millisecond))

	stateDir := filepath.Join(tmp, "state")
	args := []string{"run", file, "--brokers", strings.Join(c.brokers, ","), "--replica-id", "bench", "--state-dir", stateDir, "--metrics-addr", "off", "--log-level", "warn"}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.Env = os.Environ()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() error {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			return err
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			return errors.New("streamer did not stop on SIGTERM")
		}
	}
	began := time.Now()
	var (
		first    time.Time
		hwm, rss int64
		last     int64
	)
	deadline := time.Now().Add(c.timeout)
	for {
		select {
		case err := <-exited:
			return fmt.Errorf("streamer exited: %v", err)
		case <-time.After(time.Second):
		}
		if h, r, err := memStatus(cmd.Process.Pid); err == nil {
			hwm, rss = h, r
		}
		committed, err := committedOffsets(ctx, adm, group, input)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: committed offsets:", err)
			continue
		}
		if committed > 0 && first.IsZero() {
			first = time.Now()
		}
		if committed != last {
			fmt.Printf("  %6.0f s  committed %9d  RSS %4d MB  peak %4d MB\n", time.Since(began).Seconds(), committed, rss>>20, hwm>>20)
			last = committed
		}
		if committed >= int64(c.keys) {
			break
		}
		if time.Now().After(deadline) {
			_ = stop()
			return fmt.Errorf("committed %d of %d after %v", committed, c.keys, c.timeout)
		}
	}
	took := time.Since(began)
	size := dirSize(stateDir)
	// The child's CPU time is steadier than its rate on a shared machine:
	// other work slows the rate but adds little to the CPU per record.
	cpu, cpuErr := brokerCPU(cmd.Process.Pid)
	if err := stop(); err != nil {
		return err
	}
	fmt.Printf("\naggregate: %d records of %d distinct keys in %.1f s from start (%.0f records/s; %.0f records/s from the first commit)\n",
		c.keys, c.keys, took.Seconds(), float64(c.keys)/took.Seconds(), float64(c.keys)/time.Since(first).Seconds())
	fmt.Printf("aggregate: peak RSS (VmHWM) %d MB, state on disk %d MB\n", hwm>>20, size>>20)
	if cpuErr == nil {
		fmt.Printf("aggregate: streamer CPU %.1f s, %.2f µs/record\n", cpu.Seconds(), float64(cpu.Microseconds())/float64(c.keys))
	}
	return nil
}

// fillKeys writes N records of N distinct keys to topic: fast,
// non-transactional, big batches.
func fillKeys(ctx context.Context, c config, topic string) error {
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(c.brokers...),
		kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20),
		kgo.MaxBufferedRecords(1<<17),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	var first benchkit.FirstErr
	for i := 0; i < c.keys; i++ {
		if err := first.Err(); err != nil {
			return err
		}
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: fmt.Appendf(nil, "user-%010d", i), Value: fmt.Appendf(nil, `{"id":%d,"amount":%d.5}`, i, i%1000)}, first.Promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return first.Err()
}

// committedOffsets sums the group's committed offsets on topic.
func committedOffsets(ctx context.Context, adm *kadm.Client, group, topic string) (int64, error) {
	offs, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At > 0 {
			n += o.At
		}
	})
	return n, nil
}

// memStatus reads a process's peak and current resident set sizes.
func memStatus(pid int) (hwm, rss int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmHWM:":
			hwm = kb << 10
		case "VmRSS:":
			rss = kb << 10
		}
	}
	return hwm, rss, nil
}

func dirSize(dir string) int64 {
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}
