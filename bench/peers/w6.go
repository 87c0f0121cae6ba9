package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/topology"
)

// W6, recovery (bench/peers/w6.yaml and the Kafka Streams app's Recover): a
// replica holding a count and a sum per key over N distinct keys loses its
// disk; how long until it is ready again?
//
// The input holds N events {"id":i,"amount":i%1000+0.5}, keyed user-<i>,
// one per key (the default partitioner: murmur2, as the Java client's).
// Each system first fills its own state by processing the input (its own
// changelog, written by its own exactly-once commits: N records, one per
// key, the same JSON value layout in both), and stops. Then, per round, its
// state directory is deleted and it is started again: the time from the
// process's start until it is ready (streamer: Engine.Ready, every
// partition's store restored; Kafka Streams: state RUNNING and every
// changelog partition's restore ended, from a StateRestoreListener), the
// restore's own span, the process's CPU from its start until ready, and its
// peak RSS at that moment.
//
// Once ready, the restored state is checked: one probe event (amount 1) for
// each of w6Probes sampled keys goes to the input; each system processes
// the input to its end (the probes of earlier rounds included) and its
// output of this round must say, for every probed key, the count and sum of
// all the key's events so far. A wrong or missing count is a MISMATCH.

// w6Event is the fill's event of key i.
func w6Event(i int) (key, value []byte) {
	return fmt.Appendf(nil, "user-%010d", i), fmt.Appendf(nil, `{"id":%d,"amount":%d.5}`, i, i%1000)
}

// w6Sample is the probed keys: probes of them spread over the key space.
func w6Sample(keys, probes int) []int {
	probes = min(probes, keys)
	out := make([]int, probes)
	for j := range out {
		out[j] = int(int64(j) * int64(keys) / int64(probes))
	}
	return out
}

// fillW6 produces the N events, fast and non-transactional.
func fillW6(ctx context.Context, brokers []string, topic string, keys int) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(1<<17))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var first benchkit.FirstErr
	var bytes int64
	for i := 0; i < keys; i++ {
		if err := first.Err(); err != nil {
			return 0, err
		}
		k, v := w6Event(i)
		bytes += int64(len(k) + len(v))
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: k, Value: v}, first.Promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	return bytes, first.Err()
}

// produceProbes sends one event of amount 1 per sampled key.
func produceProbes(ctx context.Context, brokers []string, topic string, sample []int) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	var first benchkit.FirstErr
	for _, i := range sample {
		k, _ := w6Event(i)
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: k, Value: fmt.Appendf(nil, `{"id":%d,"amount":1}`, i)}, first.Promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return first.Err()
}

// w6Outcome is one restore of one system.
type w6Outcome struct {
	system    string
	round     int
	ready     float64 // s, from the process's start (as the parent saw it) until it said it was ready
	selfReady float64 // s, ready as the process timed itself (Go: from main; Java: from the JVM's start)
	began     float64 // s, when the first restore began, as the process timed itself
	restore   float64 // s, the restores' span, from the first start to the last end
	restored  int64   // records restored, as the system counted them
	cpu       float64 // s of process CPU from its start until ready
	rssKB     int64   // VmHWM at ready
	exitRSSKB int64   // peak RSS over the whole run, probes included (rusage)
	// probed is the s from ready (as the parent saw it) until the group
	// committed the whole input, probes included: the system's first
	// processing after ready, reading and updating restored keys.
	probed       float64
	load1, load2 string
	ok           bool
	note         string
}

func (o w6Outcome) rate() float64 { return float64(o.restored) / o.restore }

// w6System is one system's fixed names.
type w6System struct {
	name      string
	group     string // streamer's group, Kafka Streams' application id
	stateDir  string
	changelog string
}

// runW6 fills W6's input and each system's state, then times the restores.
func runW6(ctx context.Context, c config, adm *kadm.Client) error {
	stamp := time.Now().Format("150405")
	prefix := "peers-w6-" + stamp
	input := prefix + "-in"
	keys := c.in.Records
	if err := benchkit.CreateTopic(ctx, adm, input, c.partitions); err != nil {
		return err
	}
	created := []string{input}
	var systems []*w6System
	defer func() {
		if ts, err := adm.ListTopics(context.Background()); err == nil {
			for _, t := range ts.Names() {
				if strings.HasPrefix(t, prefix) && !contains(created, t) {
					created = append(created, t)
				}
			}
		}
		benchkit.DeleteTopics(adm, "peers", created...)
		for _, s := range systems {
			os.RemoveAll(s.stateDir)
		}
	}()
	t0 := time.Now()
	bytes, err := fillW6(ctx, c.brokers, input, keys)
	if err != nil {
		return fmt.Errorf("filling %s: %w", input, err)
	}
	fmt.Printf("peers: W6 on %v: %d events of %d distinct keys (%.1f MB) in %s, %d partitions, filled in %v\n",
		c.brokers, keys, keys, float64(bytes)/1e6, input, c.partitions, time.Since(t0).Round(time.Millisecond))
	self, err := os.Executable()
	if err != nil {
		return err
	}

	for _, name := range c.systems {
		s := &w6System{name: name, group: prefix + "-" + name}
		if s.stateDir, err = os.MkdirTemp("", "peers-w6-"+name+"-state-"); err != nil {
			return err
		}
		systems = append(systems, s)
		fillOut := s.group + "-fill-out"
		if err := benchkit.CreateTopic(ctx, adm, fillOut, c.partitions); err != nil {
			return err
		}
		created = append(created, fillOut)
		var cmd *exec.Cmd
		switch name {
		case "streamer":
			top, err := topology.Load(c.topology, topology.WithGroup(s.group))
			if err != nil {
				return err
			}
			s.changelog = top.ChangelogTopic("per-key")
			cmd = exec.CommandContext(ctx, self, w6WorkerArgs(c, s, input, fillOut, "fill")...)
		case "kstreams":
			s.changelog = s.group + "-totals-changelog"
			cmd = exec.CommandContext(ctx, "java", "-cp", c.jar, "io.streamer.bench.Recover", strings.Join(c.brokers, ","),
				input, s.group, fillOut, s.stateDir, "fill")
		default:
			return fmt.Errorf("W6: unknown system %q (streamer, kstreams)", name)
		}
		var o outcome
		t0 := time.Now()
		lines, err := runChild(cmd, &o)
		if err != nil {
			return fmt.Errorf("%s fill: %w", name, err)
		}
		var secs float64
		if len(lines) != 1 {
			return fmt.Errorf("%s fill: want one result line, got %q", name, lines)
		}
		if _, err := fmt.Sscanf(lines[0].text, "filled seconds %g", &secs); err != nil {
			return fmt.Errorf("%s fill: %q: %w", name, lines[0].text, err)
		}
		size, records, err := topicSize(ctx, adm, s.changelog)
		if err != nil {
			return err
		}
		fmt.Printf("%-9s filled its state in %.1f s (%.0f events/s, untimed; process %.1f s): changelog %s, %d offsets, %.1f MB on the broker\n",
			name, secs, float64(keys)/secs, time.Since(t0).Seconds(), s.changelog, records, float64(size)/1e6)
	}

	sample := w6Sample(keys, c.probes)
	probeRounds := 0 // probe batches in the input so far
	var outs []w6Outcome
	for round := 1; round <= c.rounds; round++ {
		order := append([]*w6System(nil), systems...)
		if round%2 == 0 {
			for i, k := 0, len(order)-1; i < k; i, k = i+1, k-1 {
				order[i], order[k] = order[k], order[i]
			}
		}
		for _, s := range order {
			// The replica loses its disk.
			if err := os.RemoveAll(s.stateDir); err != nil {
				return err
			}
			if err := os.MkdirAll(s.stateDir, 0o755); err != nil {
				return err
			}
			output := fmt.Sprintf("%s-r%d-out", s.group, round)
			if err := benchkit.CreateTopic(ctx, adm, output, c.partitions); err != nil {
				return err
			}
			created = append(created, output)
			var cmd *exec.Cmd
			if s.name == "streamer" {
				cmd = exec.CommandContext(ctx, w6StreamerBin(self, round), w6WorkerArgs(c, s, input, output, "restore")...)
				cmd.Env = w6StreamerEnv(round)
			} else {
				cmd = exec.CommandContext(ctx, "java", "-cp", c.jar, "io.streamer.bench.Recover", strings.Join(c.brokers, ","),
					input, s.group, output, s.stateDir, "restore")
			}
			o := w6Outcome{system: s.name, round: round, load1: loadAvg()}
			probeRounds++
			if err := restoreOnce(ctx, c, adm, cmd, s.group, input, sample, &o); err != nil {
				return fmt.Errorf("%s round %d: %w", s.name, round, err)
			}
			o.load2 = loadAvg()
			if err := verifyW6(ctx, c, output, sample, probeRounds, &o); err != nil {
				return err
			}
			outs = append(outs, o)
			fmt.Printf("%-9s round %d  ready after %6.2f s (self-timed %.2f s, first restore began at %.2f s)  restore %6.2f s  %9.0f records/s (%d restored)  CPU %6.2f s  peak RSS at ready %5.0f MiB (run %5.0f)  %d probes processed %.2f s after ready  load %s -> %s  %s\n",
				o.system, o.round, o.ready, o.selfReady, o.began, o.restore, o.rate(), o.restored, o.cpu, float64(o.rssKB)/1024, float64(o.exitRSSKB)/1024, len(sample), o.probed, o.load1, o.load2, o.note)
		}
	}
	return reportW6(c, keys, outs)
}

// w6StreamerEnv is the environment of the streamer's restore in round:
// with PEERS_CPUPROFILE=<file>, its profile goes to <file>.r<round>; with
// PEERS_W6_ROUND_ENV="A=1;B=2;...", round N also gets the Nth assignment
// (an experiment, e.g. GOMAXPROCS=6 in round 2; empty: none).
func w6StreamerEnv(round int) []string {
	env := os.Environ()
	if p := os.Getenv("PEERS_CPUPROFILE"); p != "" {
		env = append(env, fmt.Sprintf("PEERS_CPUPROFILE=%s.r%d", p, round))
	}
	if list := strings.Split(os.Getenv("PEERS_W6_ROUND_ENV"), ";"); round <= len(list) && list[round-1] != "" {
		env = append(env, list[round-1])
		fmt.Fprintf(os.Stderr, "peers: streamer round %d with %s\n", round, list[round-1])
	}
	return env
}

// w6StreamerBin is the program of the streamer's restore in round: this
// one, or with PEERS_W6_ROUND_BIN="path1;path2;...", the Nth path in round N
// (empty: this one), a build of another commit with the same worker, so
// that two engines restore the same fill on one broker in turns.
func w6StreamerBin(self string, round int) string {
	if list := strings.Split(os.Getenv("PEERS_W6_ROUND_BIN"), ";"); round <= len(list) && list[round-1] != "" {
		fmt.Fprintf(os.Stderr, "peers: streamer round %d runs %s\n", round, list[round-1])
		return list[round-1]
	}
	return self
}

func w6WorkerArgs(c config, s *w6System, input, output, phase string) []string {
	return []string{"-workload", "W6", "-worker", "streamer", "-worker-input", input, "-worker-output", output,
		"-worker-group", s.group, "-worker-state", s.stateDir, "-worker-phase", phase,
		"-brokers", strings.Join(c.brokers, ","), "-records", fmt.Sprint(c.in.Records),
		"-partitions", fmt.Sprint(c.partitions), "-topology", c.topology, "-timeout", c.timeout.String()}
}

// restoreOnce starts cmd on an empty state directory, times it until its
// ready line, then sends the probes and waits until the system's group has
// committed the whole input, and stops it by closing its stdin.
func restoreOnce(ctx context.Context, c config, adm *kadm.Client, cmd *exec.Cmd, group, input string, sample []int, o *w6Outcome) error {
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		_, _ = io.Copy(io.Discard, stdout)
		close(lines)
		exited <- cmd.Wait()
	}()
	kill := func() {
		_ = cmd.Process.Kill()
		<-exited
	}
	deadline := time.NewTimer(c.timeout)
	defer deadline.Stop()
	select {
	case l, ok := <-lines:
		if !ok {
			return fmt.Errorf("exited before it was ready: %v", <-exited)
		}
		o.ready = time.Since(start).Seconds()
		if _, err := fmt.Sscanf(l, "ready seconds %g restore_seconds %g restored %d cpu_seconds %g rss_kb %d restore_began %g",
			&o.selfReady, &o.restore, &o.restored, &o.cpu, &o.rssKB, &o.began); err != nil {
			kill()
			return fmt.Errorf("%q: %w", l, err)
		}
	case <-deadline.C:
		kill()
		return fmt.Errorf("not ready after %v", c.timeout)
	}
	probing := time.Now()
	if err := produceProbes(ctx, c.brokers, input, sample); err != nil {
		kill()
		return err
	}
	for {
		end, committed, err := groupLag(ctx, adm, group, input)
		if err != nil {
			kill()
			return err
		}
		if committed >= end {
			o.probed = time.Since(probing).Seconds()
			break
		}
		select {
		case <-deadline.C:
			kill()
			return fmt.Errorf("committed %d of %d input offsets after %v", committed, end, c.timeout)
		case <-time.After(50 * time.Millisecond):
		}
	}
	stdin.Close()
	for range lines {
	}
	if err := <-exited; err != nil {
		return fmt.Errorf("stopping: %w", err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		o.exitRSSKB = ru.Maxrss
	}
	return nil
}

// groupLag returns the input's end offsets and the group's committed
// offsets on it, summed over the partitions.
func groupLag(ctx context.Context, adm *kadm.Client, group, topic string) (end, committed int64, err error) {
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, 0, err
	}
	ends.Each(func(o kadm.ListedOffset) { end += o.Offset })
	offs, err := adm.FetchOffsetsForTopics(ctx, group, topic)
	if err != nil {
		return 0, 0, err
	}
	offs.Each(func(o kadm.OffsetResponse) {
		if o.Err == nil && o.At > 0 {
			committed += o.At
		}
	})
	return end, committed, nil
}

// topicSize returns a topic's bytes on the broker and its offsets.
func topicSize(ctx context.Context, adm *kadm.Client, topic string) (size, offsets int64, err error) {
	dirs, err := adm.DescribeAllLogDirs(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	dirs.Each(func(d kadm.DescribedLogDir) {
		d.Topics.Each(func(p kadm.DescribedLogDirPartition) {
			if p.Topic == topic {
				size += p.Size
			}
		})
	})
	ends, err := adm.ListEndOffsets(ctx, topic)
	if err != nil {
		return 0, 0, err
	}
	ends.Each(func(o kadm.ListedOffset) { offsets += o.Offset })
	return size, offsets, nil
}

// verifyW6 reads the round's output back read_committed: for every probed
// key, the last output must hold the count and sum of all the key's events
// in the input (its fill event and probeRounds probes of amount 1).
func verifyW6(ctx context.Context, c config, output string, sample []int, probeRounds int, o *w6Outcome) error {
	type total struct {
		Key   string  `json:"key"`
		N     int64   `json:"n"`
		Total float64 `json:"total"`
	}
	last := map[string]total{}
	var bad []string
	vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	err := topicread.All(vctx, c.brokers, 1500*time.Millisecond, func(r *kgo.Record) {
		var t total
		if err := json.Unmarshal(r.Value, &t); err != nil || t.Key != string(r.Key) {
			bad = append(bad, fmt.Sprintf("record %s: %s", r.Key, r.Value))
			return
		}
		last[t.Key] = t
	}, output)
	if err != nil {
		return fmt.Errorf("reading %s back: %w", output, err)
	}
	wrong, missing := 0, 0
	for _, i := range sample {
		k, _ := w6Event(i)
		want := total{Key: string(k), N: int64(1 + probeRounds), Total: float64(i%1000) + 0.5 + float64(probeRounds)}
		got, ok := last[want.Key]
		switch {
		case !ok:
			missing++
		case got.N != want.N || math.Abs(got.Total-want.Total) > 1e-6:
			wrong++
			if wrong <= 3 {
				bad = append(bad, fmt.Sprintf("%s: got n %d total %g, want n %d total %g", want.Key, got.N, got.Total, want.N, want.Total))
			}
		}
	}
	extra := len(last) - (len(sample) - missing)
	o.ok = len(bad) == 0 && missing == 0 && wrong == 0 && extra == 0
	if o.ok {
		o.note = fmt.Sprintf("%d probed keys: counts and sums continue correctly", len(sample))
	} else {
		if len(bad) > 3 {
			bad = bad[:3]
		}
		o.note = fmt.Sprintf("MISMATCH: %d probed keys, %d missing, %d wrong, %d other keys; %s", len(sample), missing, wrong, extra, strings.Join(bad, "; "))
	}
	return nil
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

// runW6Streamer is the streamer child of W6. Phase fill: process the input
// until j.records are committed and print "filled seconds S". Phase
// restore: run on j.stateDir (emptied by the parent) until the replica is
// ready, print the ready line, and process until stdin closes.
func runW6Streamer(ctx context.Context, j job) error {
	began := time.Now()
	ctx, cancel := context.WithTimeout(ctx, j.timeout)
	defer cancel()
	top, log, err := loadStreamer(ctx, j)
	if err != nil {
		return err
	}
	for name, topic := range map[string]string{"events": j.input, "totals": j.output} {
		d := top.Datasets[name]
		if d == nil {
			return fmt.Errorf("%s: no dataset %s", j.topology, name)
		}
		d.Topic, d.Partitions = topic, j.parts
		if d.Create != nil {
			d.Create.Partitions = j.parts
		}
	}
	if j.stateDir == "" || !filepath.IsAbs(j.stateDir) {
		return fmt.Errorf("W6: -worker-state must be an absolute directory, got %q", j.stateDir)
	}
	var stopProfile func()
	if path := os.Getenv("PEERS_CPUPROFILE"); path != "" && j.phase == "restore" {
		f, err := os.Create(path)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			f.Close()
			return err
		}
		stopProfile = func() { pprof.StopCPUProfile(); f.Close() }
		defer func() {
			if stopProfile != nil {
				stopProfile()
			}
		}()
	}
	w := &benchkit.RestoreWatch{}
	if os.Getenv("PEERS_TIMELINE") != "" {
		// Each partition's restore, on stderr as it ends.
		w.OnEnd = func(p engine.RestoreProgress, ended time.Time) {
			if p.Records > 0 {
				fmt.Fprintf(os.Stderr, "restore %s[%d]: %d records, from %.2f s to %.2f s after start (%.2f s)\n", p.Store, p.Partition,
					p.Records, p.Started.Sub(began).Seconds(), ended.Sub(began).Seconds(), ended.Sub(p.Started).Seconds())
			}
		}
	}
	stats := engine.NewStats()
	e, err := engine.New(top, engine.Options{Brokers: j.brokers, ReplicaID: "peers", Logger: log, Stats: stats,
		StateDir: j.stateDir, Hooks: []engine.Hook{w}})
	if err != nil {
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- e.Run(runCtx) }()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	wait := func(cond func() bool) error {
		for !cond() {
			select {
			case err := <-done:
				return fmt.Errorf("engine stopped after %d committed records: %v", stats.CommittedIn.Load(), err)
			case <-ctx.Done():
				return ctx.Err()
			case <-tick.C:
			}
		}
		return nil
	}
	switch j.phase {
	case "fill":
		if err := wait(func() bool { return stats.CommittedIn.Load() >= int64(j.records) }); err != nil {
			return err
		}
		fmt.Printf("filled seconds %.4f\n", time.Since(began).Seconds())
	case "restore":
		if err := wait(e.Ready); err != nil {
			return err
		}
		cpu := benchkit.ProcessCPU()
		hwm, _, _ := vmHWM()
		if stopProfile != nil {
			stopProfile()
			stopProfile = nil
		}
		rt := w.Totals()
		if rt.Err != nil {
			return rt.Err
		}
		fmt.Printf("ready seconds %.4f restore_seconds %.4f restored %d cpu_seconds %.4f rss_kb %d restore_began %.4f\n",
			time.Since(began).Seconds(), rt.Last.Sub(rt.First).Seconds(), rt.Records, cpu.Seconds(), hwm, rt.First.Sub(began).Seconds())
		closed := make(chan struct{})
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(closed)
		}()
		select {
		case <-closed:
		case err := <-done:
			return fmt.Errorf("engine stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		}
	default:
		return fmt.Errorf("W6: unknown phase %q", j.phase)
	}
	stop()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("engine: %w", err)
	}
	return nil
}

// vmHWM reads this process's peak resident set size in KiB.
func vmHWM() (int64, int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0, err
	}
	var hwm, rss int64
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch f[0] {
		case "VmHWM:":
			fmt.Sscan(f[1], &hwm)
		case "VmRSS:":
			fmt.Sscan(f[1], &rss)
		}
	}
	return hwm, rss, nil
}
