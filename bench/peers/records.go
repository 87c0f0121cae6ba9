package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/internal/topicread"
)

// W3 and W4 map each input record to one output record (a score, a
// language), so their oracle is per record: the input record with id i must
// come out exactly once, with the answer the oracle computed for i. This file
// holds what the two share: filling the input, the per-record check and the
// rounds of the Go systems.

// recordWorkload is W3 or W4.
type recordWorkload struct {
	// records returns the i-th input record (key and JSON value).
	record func(i int) (key, value []byte)
	// check parses one output record and returns its input id, or an error
	// saying why it is not the oracle's answer.
	check func(key, value []byte) (int, error)
	// describe says what the input and the oracle are, for the first line.
	describe string
	// workerArgs are the extra arguments of a Go worker.
	workerArgs []string
	// quix is the Quix Streams script and its arguments after BROKERS
	// INPUT OUTPUT GROUP RECORDS; empty when the workload has none.
	quix []string
	// ray is the Ray Data script (W4) and its arguments after BROKERS
	// INPUT OUTPUT GROUP RECORDS; empty when the workload has none.
	ray []string
	// python, when not nil, is the oracle of the Python systems (quix,
	// ray) in place of check: W4's is lingua-py, whose answers are not
	// always lingua-go's (w4py.go).
	python *pyOracle
}

// pyOracle checks the Python systems' output against their own library,
// and compares it with the Go systems' oracle.
type pyOracle struct {
	// check is as recordWorkload's, against the Python library's answers.
	check func(key, value []byte) (int, error)
	// vsGo reports whether an output has the Go oracle's language and
	// its confidence.
	vsGo func(key, value []byte) (lang, conf bool)
}

func isPython(system string) bool { return system == "quix" || system == "ray" }

// fillRecords produces the workload's n records to topic.
func fillRecords(ctx context.Context, brokers []string, topic string, n int, w recordWorkload) (int64, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(1<<16))
	if err != nil {
		return 0, err
	}
	defer cl.Close()
	var first benchkit.FirstErr
	var bytes int64
	for i := 0; i < n; i++ {
		k, v := w.record(i)
		bytes += int64(len(v))
		cl.Produce(ctx, &kgo.Record{Topic: topic, Key: k, Value: v}, first.Promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return 0, err
	}
	return bytes, first.Err()
}

// perRecord tallies a system's output against the per-record oracle.
type perRecord struct {
	n                      int // input records
	seen                   []bool
	read, dup, wrong, junk int
	examples               []string

	vsGo           func(key, value []byte) (lang, conf bool) // a Python system's: also compared with the Go oracle
	goLang, goConf int                                       // of the records vsGo saw: with the Go oracle's language, confidence
}

func newPerRecord(n int) *perRecord { return &perRecord{n: n, seen: make([]bool, n)} }

func (p *perRecord) add(w recordWorkload, key, value []byte) { p.addWith(w.check, key, value) }

// addWith tallies one output record with check as the oracle.
func (p *perRecord) addWith(check func(key, value []byte) (int, error), key, value []byte) {
	p.read++
	id, err := check(key, value)
	switch {
	case id < 0 || id >= p.n:
		p.junk++
		p.example(fmt.Sprintf("record %q: %v", key, err))
	case p.seen[id]:
		p.dup++
		p.example(fmt.Sprintf("record %d twice", id))
	default:
		p.seen[id] = true
		if err != nil {
			p.wrong++
			p.example(fmt.Sprintf("record %d: %v", id, err))
		} else if p.vsGo != nil {
			lang, conf := p.vsGo(key, value)
			p.goLang += b2i(lang)
			p.goConf += b2i(conf)
		}
	}
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (p *perRecord) example(s string) {
	if len(p.examples) < 3 {
		p.examples = append(p.examples, s)
	}
}

func (p *perRecord) missing() int {
	m := 0
	for _, s := range p.seen {
		if !s {
			m++
		}
	}
	return m
}

// ok reports whether every input record came out once with the oracle's
// answer and nothing else came out.
func (p *perRecord) ok() bool {
	return p.dup == 0 && p.wrong == 0 && p.junk == 0 && p.missing() == 0
}

func (p *perRecord) String() string {
	if p.ok() && p.vsGo != nil {
		return fmt.Sprintf("read back read_committed: %d records, each once, match lingua-py's own answers; lingua-go's language on %.2f%%, its confidence (1e-9) on %.2f%%",
			p.read, 100*float64(p.goLang)/float64(p.n), 100*float64(p.goConf)/float64(p.n))
	}
	if p.ok() {
		return fmt.Sprintf("read back read_committed: %d records, each once, match the oracle", p.read)
	}
	return fmt.Sprintf("MISMATCH: %d records read, %d expected, %d missing, %d twice, %d wrong, %d unparsable; %s",
		p.read, p.n, p.missing(), p.dup, p.wrong, p.junk, strings.Join(p.examples, "; "))
}

// verifyRecords reads output back read_committed and checks it per record.
// A Python system's is checked against w.python when the workload has one.
func verifyRecords(ctx context.Context, c config, w recordWorkload, output string, o *outcome) error {
	p := newPerRecord(c.in.Records)
	check := w.check
	if w.python != nil && isPython(o.system) {
		check, p.vsGo = w.python.check, w.python.vsGo
	}
	vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	if err := topicread.All(vctx, c.brokers, 1500*time.Millisecond, func(r *kgo.Record) { p.addWith(check, r.Key, r.Value) }, output); err != nil {
		return fmt.Errorf("reading %s back: %w", output, err)
	}
	o.ok, o.note = p.ok(), p.String()
	return nil
}

// runRecords fills the input of W3 or W4 and runs the Go systems on it.
func runRecords(ctx context.Context, c config, adm *kadm.Client, w recordWorkload) error {
	stamp := time.Now().Format("150405")
	input := fmt.Sprintf("peers-%s-in-%s", strings.ToLower(c.workload), stamp)
	if err := benchkit.CreateTopic(ctx, adm, input, c.partitions); err != nil {
		return err
	}
	created := []string{input}
	defer func() { benchkit.DeleteTopics(adm, "peers", created...) }()
	t0 := time.Now()
	bytes, err := fillRecords(ctx, c.brokers, input, c.in.Records, w)
	if err != nil {
		return fmt.Errorf("filling %s: %w", input, err)
	}
	fmt.Printf("peers: %s on %v: %d records (%.1f MB of values) in %s, %d partitions, filled in %v; %s\n",
		c.workload, c.brokers, c.in.Records, float64(bytes)/1e6, input, c.partitions, time.Since(t0).Round(time.Millisecond), w.describe)
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var outs []outcome
	for round := 1; round <= c.rounds; round++ {
		order := append([]string(nil), c.systems...)
		if round%2 == 0 {
			for i, k := 0, len(order)-1; i < k; i, k = i+1, k-1 {
				order[i], order[k] = order[k], order[i]
			}
		}
		for _, sys := range order {
			name := fmt.Sprintf("peers-%s-%s-%s-r%d", strings.ToLower(c.workload), sys, stamp, round)
			output := name + "-out"
			if err := benchkit.CreateTopic(ctx, adm, output, c.partitions); err != nil {
				return err
			}
			created = append(created, output)
			args := append([]string{"-workload", c.workload, "-worker", sys, "-worker-input", input, "-worker-output", output,
				"-worker-group", name, "-brokers", strings.Join(c.brokers, ","), "-records", fmt.Sprint(c.in.Records),
				"-partitions", fmt.Sprint(c.partitions), "-topology", c.topology, "-timeout", c.timeout.String()}, w.workerArgs...)
			cmd := exec.CommandContext(ctx, self, args...)
			if sys == "quix" {
				if len(w.quix) == 0 {
					return fmt.Errorf("%s has no Quix Streams peer", c.workload)
				}
				cmd = exec.CommandContext(ctx, c.python, append([]string{"-u", w.quix[0], strings.Join(c.brokers, ","), input, output,
					name, fmt.Sprint(c.in.Records)}, w.quix[1:]...)...)
			}
			if sys == "ray" {
				if len(w.ray) == 0 {
					return fmt.Errorf("%s has no Ray Data peer", c.workload)
				}
				cmd = exec.CommandContext(ctx, c.rayPython, append([]string{"-u", w.ray[0], strings.Join(c.brokers, ","), input, output,
					name, fmt.Sprint(c.in.Records)}, w.ray[1:]...)...)
			}
			o, err := runTimed(cmd, sys, round, int64(c.in.Records))
			if err != nil {
				return err
			}
			if err := verifyRecords(ctx, c, w, output, &o); err != nil {
				return err
			}
			outs = append(outs, o)
			printOutcome(o)
		}
	}
	return report(c, outs, nil)
}
