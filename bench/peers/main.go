// Command peers runs streamer side by side with what users would pick
// instead (issue 16), on the same broker, the same deterministic input
// topic and the same machine, one system at a time:
//
//	go run ./bench/peers -workload W1 -brokers 127.0.0.1:9092 -records 200000
//
// W1 is bench/topology.yaml: a stateless filter + map of ~1 KB JSON orders,
// exactly once. W2 (w2.go) is bench/peers/w2.yaml, a table join and a
// 1-minute tumbling count and sum per key, for streamer and Kafka Streams
// (and, named in -systems, Quix Streams, bench/peers/quix/enrich.py, and
// Goka, bench/peers/goka/w2.go, at least once).
// W5 (w5.go) is bench/join.yaml, a stream–stream join within a window of
// W1's input, for streamer, the passthrough and Kafka Streams (Join.java).
// W3 (w3.go) scores events with a GBDT model (the predict pipe), W4 (w4.go)
// detects the language of Debian's translated fortunes (the language
// pipe); both for streamer, naive and careful, checked per record
// (records.go); W4 also, named in -systems, for Quix Streams
// (bench/peers/quix/detect.py) and Ray Data (bench/peers/ray/detect.py,
// at least once), both on lingua-py (w4py.go).
// W6 (w6.go) is recovery: bench/peers/w6.yaml, a count and sum per key over
// -records distinct keys, restored from its changelog onto an empty state
// directory, streamer against Kafka Streams (time to ready).
// The systems of W1:
//
//   - streamer: the topology through the engine, as `streamer run` runs it;
//   - passthrough: bench's raw franz-go consume-and-produce loop (no
//     transactions, no work): the limit;
//   - naive: hand-written franz-go, one record at a time with a synchronous
//     produce, a transaction per poll (handwritten.go);
//   - careful: hand-written franz-go, a transaction per poll, asynchronous
//     produce (handwritten.go);
//   - kstreams: Kafka Streams 4.4 with exactly_once_v2 (bench/peers/kstreams,
//     built with Maven), several rounds in one JVM;
//   - goka: a Goka processor, at least once
//     (bench/peers/goka, a module of its own, built by this command);
//   - quix (only when named in -systems): Quix Streams, exactly once
//     (bench/peers/quix/filtermap.py; W3 with the prod model: score.py),
//     a fresh Python process per round.
//
// Every Go system runs as a child process of this command (the same binary
// with -worker), so that each one's peak RSS is its own. A child times itself
// from the first record it consumes until its last output is committed and
// reports wall and process CPU time (getrusage) over that interval; the
// parent takes peak RSS from the child's rusage. Each system's output is then
// read back with read_committed and compared with the oracle (shape.go,
// from the generator's own fields); a system whose output differs is
// reported as MISMATCH and left out of the figures.
//
// After the throughput runs, each system of -latency-systems runs again at a
// fixed offered load, by default half of streamer's median rate, for the
// end-to-end latency from a record's timestamp until its output is
// committed and readable (latency.go).
//
// PEERS_CPUPROFILE=<file> makes the streamer child write a CPU profile of
// its run there (each streamer child overwrites it: run one round).
//
// PEERS_TIMELINE=1 makes the streamer child print its counters (records in,
// out, committed, commits) to stderr every 250 ms (W6: each partition's
// restore as it ends). W6 also takes PEERS_W6_ROUND_ENV (w6StreamerEnv).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/internal/topicread"
	_ "github.com/streamerio/streamer/pipes/language" // W4's language pipe
)

type config struct {
	brokers    []string
	workload   string
	in         benchkit.Input
	partitions int
	rounds     int
	ksRounds   int
	systems    []string
	topology   string
	jar        string
	python     string
	rayPython  string
	chart      string
	markdown   string
	timeout    time.Duration
	latSystems []string      // systems of the latency runs (latency.go); none: no latency runs
	latRate    float64       // offered load; 0: half of streamer's median rate of this run
	latMeasure time.Duration // the measured interval of each latency run
	latWarmup  time.Duration // paced, before the measured interval
	w3Model    string        // W3: small or prod
	w3Dir      string        // W3: where the prod model is
	w4Text     string        // W4: where the Debian fortunes are unpacked
	probes     int           // W6: keys probed after each restore
}

func main() {
	var c config
	var j job
	defBrokers := os.Getenv("STREAMER_BROKERS")
	if defBrokers == "" {
		defBrokers = "127.0.0.1:9092"
	}
	brokers := flag.String("brokers", defBrokers, "seed brokers, comma separated (default $STREAMER_BROKERS or 127.0.0.1:9092)")
	flag.StringVar(&c.workload, "workload", "W1", "workload: W1 (bench/topology.yaml), W2 (bench/peers/w2.yaml, w2.go), W3 (GBDT scoring, w3.go), W4 (language detection, bench/peers/w4.yaml, w4.go), W5 (bench/join.yaml, w5.go) or W6 (recovery, bench/peers/w6.yaml, w6.go)")
	flag.IntVar(&c.in.Records, "records", 200000, "records in the input topic (W6: distinct keys of the state)")
	flag.IntVar(&c.probes, "probes", 2000, "W6: keys probed after each restore to check the restored state")
	flag.IntVar(&c.in.Size, "size", 1024, "approximate record value size in bytes (internal/gen Pad)")
	flag.IntVar(&c.partitions, "partitions", 6, "partitions of the input and output topics")
	flag.IntVar(&c.rounds, "rounds", 2, "rounds of each Go system (a fresh process each), alternating the order (W6: restores of each system)")
	flag.IntVar(&c.ksRounds, "kstreams-rounds", 3, "rounds of Kafka Streams in one JVM (the first warms the JIT up)")
	systems := flag.String("systems", "passthrough,streamer,careful,naive,kstreams,goka", "systems to run, comma separated (W2: streamer,kstreams,goka, quix too when named; W5: passthrough,streamer,kstreams)")
	flag.StringVar(&c.topology, "topology", "bench/topology.yaml", "topology of the streamer run (W2: bench/peers/w2.yaml; W5: bench/join.yaml)")
	flag.StringVar(&c.jar, "kstreams-jar", "bench/peers/kstreams/target/peers-kstreams.jar", "the Kafka Streams app (mvn -q -B -f bench/peers/kstreams package)")
	flag.StringVar(&c.python, "quix-python", "bin/quixvenv/bin/python", "Python with quixstreams installed, for the system quix (bench/peers/quix/filtermap.py; W2: enrich.py; W3: score.py, which needs lightgbm too)")
	flag.StringVar(&c.rayPython, "ray-python", "bin/rayvenv/bin/python", "Python with ray[data], lingua-language-detector and confluent-kafka installed, for the system ray (W4: bench/peers/ray/detect.py)")
	flag.StringVar(&c.chart, "chart", "", "write the chart (PNG) here (default: bench/peers/<workload>.png)")
	flag.StringVar(&c.markdown, "markdown", "", "also write the table as Markdown here")
	latSystems := flag.String("latency-systems", "streamer,careful,kstreams", "systems of the end-to-end latency runs at a fixed offered load, after the throughput runs (empty: none; W1 only)")
	flag.Float64Var(&c.latRate, "latency-rate", 0, "offered load of the latency runs in records/s (0: half of streamer's median records/s in this run)")
	flag.DurationVar(&c.latMeasure, "latency-seconds", 20*time.Second, "how long each latency run produces at the offered load")
	flag.DurationVar(&c.latWarmup, "latency-warmup", 5*time.Second, "how long each latency run produces at the offered load before the measured interval")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Minute, "give up on a system's run after this long")
	flag.StringVar(&c.w3Model, "w3-model", "prod", "W3: the model, small (ml/testdata/xgb-binary.json) or prod (lgb-prod.txt in -w3-dir)")
	flag.StringVar(&c.w3Dir, "w3-dir", filepath.Join("bin", "peers-w3"), "W3: the directory of the prod model (make bench-peers-w3-model)")
	flag.StringVar(&c.w4Text, "w4-text", filepath.Join("bin", "peers-w4"), "W4: the unpacked Debian fortunes (scripts/bench/fortunes.sh)")
	// Worker mode: the parent runs each Go system as a child with these.
	flag.StringVar(&j.system, "worker", "", "internal: run this system in this process")
	flag.StringVar(&j.input, "worker-input", "", "internal")
	flag.StringVar(&j.output, "worker-output", "", "internal")
	flag.StringVar(&j.group, "worker-group", "", "internal")
	flag.StringVar(&j.table, "worker-table", "", "internal")
	flag.StringVar(&j.model, "worker-model", "", "internal")
	flag.StringVar(&j.stateDir, "worker-state", "", "internal")
	flag.StringVar(&j.phase, "worker-phase", "", "internal")
	flag.Parse()
	for _, b := range strings.Split(*brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			c.brokers = append(c.brokers, b)
		}
	}
	if j.system != "" {
		j.brokers, j.records, j.parts, j.topology, j.timeout = c.brokers, c.in.Records, c.partitions, c.topology, c.timeout
		j.workload = c.workload
		run := runWorker
		if c.workload == "W6" {
			run = runW6Streamer
		}
		if err := run(context.Background(), j); err != nil {
			fmt.Fprintln(os.Stderr, "peers worker:", err)
			os.Exit(1)
		}
		return
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch c.workload {
	case "W1":
	case "W2":
		if !set["systems"] {
			*systems = "streamer,kstreams,goka"
		}
		if !set["topology"] {
			c.topology = filepath.Join("bench", "peers", "w2.yaml")
		}
	case "W5":
		if !set["systems"] {
			*systems = "passthrough,streamer,kstreams"
		}
		if !set["topology"] {
			c.topology = filepath.Join("bench", "join.yaml")
		}
		if set["latency-systems"] && *latSystems != "" {
			fmt.Fprintln(os.Stderr, "peers: W5 has no latency runs (-latency-systems is W1's)")
			os.Exit(2)
		}
		*latSystems = ""
	case "W3", "W4":
		if !set["systems"] {
			*systems = "streamer,careful,naive"
		}
		if !set["latency-systems"] {
			*latSystems = ""
		}
		if c.workload == "W4" && !set["topology"] {
			c.topology = filepath.Join("bench", "peers", "w4.yaml")
		}
	case "W6":
		if !set["systems"] {
			*systems = "streamer,kstreams"
		}
		if !set["topology"] {
			c.topology = filepath.Join("bench", "peers", "w6.yaml")
		}
		if !set["latency-systems"] {
			*latSystems = ""
		}
	default:
		fmt.Fprintf(os.Stderr, "peers: workload %s is not written yet (W1 to W6; see issue 16)\n", c.workload)
		os.Exit(2)
	}
	for _, s := range strings.Split(*systems, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.systems = append(c.systems, s)
		}
	}
	for _, s := range strings.Split(*latSystems, ",") {
		if s = strings.TrimSpace(s); s != "" {
			c.latSystems = append(c.latSystems, s)
		}
	}
	if c.chart == "" {
		c.chart = filepath.Join("bench", "peers", c.workload+".png")
	}
	if err := run(context.Background(), c); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

// outcome is one run of one system.
type outcome struct {
	system  string
	round   int
	n       int64 // input records
	seconds float64
	cpu     float64 // process CPU seconds over the timed interval
	rssKB   int64   // peak RSS of the process (for kstreams: of the JVM over all its rounds)
	load    string  // /proc/loadavg (1, 5, 15 min) when its result line arrived
	ok      bool
	note    string
}

func (o outcome) rate() float64      { return float64(o.n) / o.seconds }
func (o outcome) cpuMicros() float64 { return o.cpu * 1e6 / float64(o.n) }

func run(ctx context.Context, c config) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.brokers...))
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	switch c.workload {
	case "W2":
		return runW2(ctx, c, adm)
	case "W3":
		m, err := loadW3Model(c.w3Model, c.w3Dir)
		if err != nil {
			return err
		}
		if c.topology, err = writeW3Topology(m); err != nil {
			return err
		}
		defer os.RemoveAll(filepath.Dir(c.topology))
		return runRecords(ctx, c, adm, m.workload())
	case "W4":
		corpus, err := loadW4Corpus(c.w4Text)
		if err != nil {
			return err
		}
		t0 := time.Now()
		o := newW4Oracle(corpus, c.in.Records, w4Detector())
		fmt.Printf("peers: W4 oracle: lingua on %d distinct texts in %v\n", len(o.answers), time.Since(t0).Round(time.Millisecond))
		w := o.workload(c.w4Text)
		if slices.ContainsFunc(c.systems, isPython) {
			t0 = time.Now()
			if err := o.addLinguaPy(ctx, c.python); err != nil {
				return err
			}
			fmt.Printf("peers: W4 oracle of the Python systems: lingua-py (%s) on the same texts in %v; %s\n",
				c.python, time.Since(t0).Round(time.Millisecond), o.pyAgreement())
			w.python = o.pyOracle()
		}
		return runRecords(ctx, c, adm, w)
	case "W6":
		return runW6(ctx, c, adm)
	}
	stamp := time.Now().Format("150405")
	input := "peers-in-" + stamp
	if err := benchkit.CreateTopic(ctx, adm, input, c.partitions); err != nil {
		return err
	}
	created := []string{input}
	defer func() {
		// The internal topics of the runs too: streamer's merge and
		// changelog topics, Kafka Streams' repartition and changelogs.
		if ts, err := adm.ListTopics(context.Background()); err == nil {
			for _, t := range ts.Names() {
				if strings.HasPrefix(t, "peers-") && strings.Contains(t, "-"+stamp+"-") && !contains(created, t) {
					created = append(created, t)
				}
			}
		}
		benchkit.DeleteTopics(adm, "peers", created...)
	}()
	t0 := time.Now()
	bytes, err := benchkit.Fill(ctx, c.brokers, input, c.in)
	if err != nil {
		return fmt.Errorf("filling %s: %w", input, err)
	}
	want, identity := expected(c.in), inputDigest(c.in)
	if c.workload == "W5" {
		want = expectedW5(c.in)
	}
	fmt.Printf("peers: %s on %v: %d records (%.1f MB of values) in %s, %d partitions, filled in %v; expected output: %v\n",
		c.workload, c.brokers, c.in.Records, float64(bytes)/1e6, input, c.partitions, time.Since(t0).Round(time.Millisecond), want)

	self, err := os.Executable()
	if err != nil {
		return err
	}
	gokaBin := ""
	if contains(c.systems, "goka") {
		dir, err := os.MkdirTemp("", "peers-goka-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		gokaBin = filepath.Join(dir, "goka")
		build := exec.CommandContext(ctx, "go", "build", "-C", filepath.Join("bench", "peers", "goka"), "-o", gokaBin, ".")
		build.Stdout, build.Stderr = os.Stderr, os.Stderr
		if err := build.Run(); err != nil {
			return fmt.Errorf("building bench/peers/goka: %w", err)
		}
	}
	var outs []outcome
	var goSystems []string
	for _, s := range c.systems {
		if s != "kstreams" {
			goSystems = append(goSystems, s)
		}
	}
	for round := 1; round <= c.rounds; round++ {
		order := append([]string(nil), goSystems...)
		if round%2 == 0 {
			for i, k := 0, len(order)-1; i < k; i, k = i+1, k-1 {
				order[i], order[k] = order[k], order[i]
			}
		}
		for _, sys := range order {
			name := fmt.Sprintf("peers-%s-%s-r%d", sys, stamp, round)
			output := name + "-out"
			if err := benchkit.CreateTopic(ctx, adm, output, c.partitions); err != nil {
				return err
			}
			created = append(created, output)
			args := []string{"-worker", sys, "-worker-input", input, "-worker-output", output, "-worker-group", name,
				"-brokers", strings.Join(c.brokers, ","), "-records", fmt.Sprint(c.in.Records),
				"-partitions", fmt.Sprint(c.partitions), "-topology", c.topology, "-timeout", c.timeout.String(),
				"-workload", c.workload}
			cmd := exec.CommandContext(ctx, self, args...)
			if sys == "goka" {
				cmd = exec.CommandContext(ctx, gokaBin, "-brokers", strings.Join(c.brokers, ","), "-input", input,
					"-output", output, "-group", name, "-records", fmt.Sprint(c.in.Records))
			}
			if sys == "quix" {
				cmd = exec.CommandContext(ctx, c.python, "-u", filepath.Join("bench", "peers", "quix", "filtermap.py"),
					strings.Join(c.brokers, ","), input, output, name, fmt.Sprint(c.in.Records))
			}
			o, err := runTimed(cmd, sys, round, int64(c.in.Records))
			if err != nil {
				return err
			}
			w := want
			if sys == "passthrough" {
				w = identity // it copies the input: its check is that nothing is lost or doubled
			}
			if err := verify(ctx, c, output, w, &o); err != nil {
				return err
			}
			outs = append(outs, o)
			printOutcome(o)
		}
	}
	if contains(c.systems, "kstreams") {
		prefix := "peers-kstreams-" + stamp
		class := "io.streamer.bench.FilterMap"
		if c.workload == "W5" {
			class = "io.streamer.bench.Join"
		}
		cmd := exec.CommandContext(ctx, "java", "-cp", c.jar, class, strings.Join(c.brokers, ","), input, prefix,
			fmt.Sprint(c.ksRounds), fmt.Sprint(c.partitions))
		ks, err := runKStreams(c, cmd, prefix, &created, func(output string, ko *outcome) error {
			return verify(ctx, c, output, want, ko)
		})
		outs = append(outs, ks...)
		if err != nil {
			return err
		}
	}
	var lats []latOutcome
	if len(c.latSystems) > 0 {
		rate := c.latRate
		if rate == 0 {
			for _, s := range summarize(c, outs) {
				if s.system == "streamer" {
					rate = s.rate / 2
				}
			}
		}
		if rate == 0 {
			return fmt.Errorf("latency: no -latency-rate and no streamer rate in this run to halve")
		}
		if lats, err = runLatency(ctx, c, adm, stamp, rate, &created); err != nil {
			return err
		}
	}
	return report(c, outs, lats)
}

// childLine is a line of a child's stdout and the load average when it
// arrived.
type childLine struct{ text, load string }

// runTimed runs one timed round of a system as a child process (cmd) and
// returns its outcome: the one result line it prints ("result seconds S
// cpu_seconds C [peak_rss_kb K]"), its peak RSS and the load average when
// the line arrived. n is the records the round processes.
func runTimed(cmd *exec.Cmd, sys string, round int, n int64) (outcome, error) {
	o := outcome{system: sys, round: round, n: n}
	lines, err := runChild(cmd, &o)
	if err != nil {
		return o, fmt.Errorf("%s round %d: %w", sys, round, err)
	}
	if len(lines) != 1 {
		return o, fmt.Errorf("%s round %d: want one result line, got %q", sys, round, lines)
	}
	if err := parseResult(lines[0].text, &o); err != nil {
		return o, fmt.Errorf("%s round %d: %q: %w", sys, round, lines[0].text, err)
	}
	o.load = lines[0].load
	return o, nil
}

// runChild runs cmd with its stderr passed through, returns the lines of its
// stdout and sets o.rssKB from its rusage.
func runChild(cmd *exec.Cmd, o *outcome) ([]childLine, error) {
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	var lines []childLine
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		lines = append(lines, childLine{sc.Text(), loadavg()})
	}
	_, _ = io.Copy(io.Discard, out)
	err = cmd.Wait()
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		o.rssKB = ru.Maxrss // KiB on Linux
	}
	return lines, err
}

// verify reads output back with read_committed and compares it with the
// oracle.
func verify(ctx context.Context, c config, output string, want fingerprint, o *outcome) error {
	var got fingerprint
	vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := topicread.All(vctx, c.brokers, 1500*time.Millisecond, func(r *kgo.Record) { got.add(r.Key, r.Value) }, output); err != nil {
		return fmt.Errorf("reading %s back: %w", output, err)
	}
	got.input = want.input
	o.ok = got == want
	if o.ok {
		o.note = "read back read_committed: matches the oracle"
		if want.input {
			o.note = "read back: a copy of the input (passthrough, no work)"
		}
	} else {
		o.note = fmt.Sprintf("MISMATCH: read back %v, want %v", got, want)
	}
	return nil
}

func printOutcome(o outcome) {
	fmt.Printf("%-11s round %d  %9.0f records/s  %7.2f s  %6.1f µs CPU/record  peak RSS %5.0f MiB  load %s  %s\n",
		o.system, o.round, o.rate(), o.seconds, o.cpuMicros(), float64(o.rssKB)/1024, o.load, o.note)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// runKStreams runs the Kafka Streams app cmd, whose rounds write to
// <prefix>-r<N>-out (added to created), and returns an outcome per round
// line ("round R records N seconds S cpu_seconds C output TOPIC"), each
// checked by check before it is printed.
func runKStreams(c config, cmd *exec.Cmd, prefix string, created *[]string, check func(output string, ko *outcome) error) ([]outcome, error) {
	var o outcome
	lines, err := runChild(cmd, &o)
	for r := 1; r <= c.ksRounds; r++ {
		*created = append(*created, fmt.Sprintf("%s-r%d-out", prefix, r))
	}
	if err != nil {
		return nil, fmt.Errorf("kstreams: %w", err)
	}
	var outs []outcome
	for _, l := range lines {
		ko := outcome{system: "kstreams", rssKB: o.rssKB, load: l.load}
		var output string
		if _, err := fmt.Sscanf(l.text, "round %d records %d seconds %g cpu_seconds %g output %s", &ko.round, &ko.n, &ko.seconds, &ko.cpu, &output); err != nil {
			return outs, fmt.Errorf("kstreams: %q: %w", l.text, err)
		}
		if err := check(output, &ko); err != nil {
			return outs, err
		}
		outs = append(outs, ko)
		printOutcome(ko)
	}
	return outs, nil
}
