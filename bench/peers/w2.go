package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/bench/internal/benchkit"
	"github.com/streamerio/streamer/internal/topicread"
)

// W2, continuous enrichment (bench/peers/w2.yaml and the Kafka Streams app's
// Enrich): orders join their customer in a partitioned table (inner), then a
// 1-minute tumbling window per customer counts them and sums their amounts,
// emitted once when the window closes, exactly once.
//
// The input: w2Customers customers c-0 … c-4999 are what the generator keys
// orders by; the table holds the first w2Known of them (each with a segment),
// so a tenth of the orders are dropped by the join. The orders are the
// generator's, with record timestamps base + i ms (base: a whole minute
// before the fill), the table's records base - 1 min. After the orders, one
// tick per partition (a known customer that hashes there, with the default
// partitioner of franz-go and the Java client alike) at two minutes past the
// last order advances each partition's stream time so that every window of
// the orders closes; the ticks' own windows stay open and are never emitted.
//
// The oracle is built from the generator's fields: per customer and window
// start, the count, the sum of amounts in cents and the segment. An output
// is parsed back into the same and compared; a window emitted twice is a
// mismatch.

const (
	w2Customers = 5000 // the generator's key space (internal/gen)
	w2Known     = 4500 // customers in the table
)

var w2Segments = []string{"gold", "silver", "bronze"}

func w2Customer(n int) []byte {
	return fmt.Appendf(nil, `{"name":"customer %d","segment":%q,"since":"2020-01-%02d"}`, n, w2Segments[n%3], 1+n%28)
}

type w2Window struct {
	key   string
	start int64 // ms
}

type w2Agg struct {
	n       int64
	cents   int64
	segment string
}

// w2Input is W2's input: orders (the generator's first n, as W1's) on base.
type w2Input struct {
	in         benchkit.Input
	base       int64 // ms, the first order's timestamp
	partitions int
}

func (w w2Input) ticks() []*kgo.Record {
	part := kgo.StickyKeyPartitioner(nil).ForTopic("")
	last := w.base + int64(w.in.Records) - 1
	var out []*kgo.Record
	for p := 0; p < w.partitions; p++ {
		for n := 0; n < w2Known; n++ {
			r := &kgo.Record{Key: []byte("c-" + strconv.Itoa(n))}
			if part.Partition(r, w.partitions) == p {
				r.Value = fmt.Appendf(nil, `{"order_id":"tick-%d","customer_id":"c-%d","amount":0,"currency":"EUR","items":[]}`, p, n)
				r.Timestamp = time.UnixMilli(last + 2*60_000)
				out = append(out, r)
				break
			}
		}
	}
	return out
}

// fillW2 produces the table and then the orders and the ticks.
func fillW2(ctx context.Context, brokers []string, customers, orders string, w w2Input) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(20*time.Millisecond),
		kgo.ProducerBatchMaxBytes(1<<20), kgo.MaxBufferedRecords(1<<16))
	if err != nil {
		return err
	}
	defer cl.Close()
	var first benchkit.FirstErr
	promise := first.Promise
	for n := 0; n < w2Known; n++ {
		cl.Produce(ctx, &kgo.Record{Topic: customers, Key: []byte("c-" + strconv.Itoa(n)), Value: w2Customer(n),
			Timestamp: time.UnixMilli(w.base - 60_000)}, promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	g := w.in.Orders()
	for i := 0; i < w.in.Records; i++ {
		o := g.Next()
		cl.Produce(ctx, &kgo.Record{Topic: orders, Key: o.Key, Value: o.Value, Timestamp: time.UnixMilli(w.base + int64(i))}, promise)
	}
	for _, r := range w.ticks() {
		r.Topic = orders
		cl.Produce(ctx, r, promise)
	}
	if err := cl.Flush(ctx); err != nil {
		return err
	}
	return first.Err()
}

// expectedW2 is the oracle: every window of a known customer's orders.
func expectedW2(w w2Input) map[w2Window]w2Agg {
	want := map[w2Window]w2Agg{}
	g := w.in.Orders()
	for i := 0; i < w.in.Records; i++ {
		o := g.Next()
		n, err := strconv.Atoi(strings.TrimPrefix(string(o.Key), "c-"))
		if err != nil {
			panic(err) // the generator's keys are c-<n>
		}
		if n >= w2Known {
			continue
		}
		ts := w.base + int64(i)
		k := w2Window{key: string(o.Key), start: ts - ts%60_000}
		a := want[k]
		a.n++
		a.cents += int64(math.Round(o.Amount * 100))
		a.segment = w2Segments[n%3]
		want[k] = a
	}
	return want
}

// verifyW2 reads output back read_committed and compares it with want.
func verifyW2(ctx context.Context, c config, output string, want map[w2Window]w2Agg, o *outcome) error {
	got := map[w2Window]w2Agg{}
	var bad []string
	vctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	err := topicread.All(vctx, c.brokers, 1500*time.Millisecond, func(r *kgo.Record) {
		var v struct {
			Key         string  `json:"key"`
			WindowStart string  `json:"window_start"`
			Orders      int64   `json:"orders"`
			Revenue     float64 `json:"revenue"`
			Segment     string  `json:"segment"`
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			bad = append(bad, err.Error())
			return
		}
		start, err := time.Parse(time.RFC3339Nano, v.WindowStart)
		if err != nil || v.Key != string(r.Key) {
			bad = append(bad, fmt.Sprintf("record %s: %s", r.Key, r.Value))
			return
		}
		k := w2Window{key: v.Key, start: start.UnixMilli()}
		if _, dup := got[k]; dup {
			bad = append(bad, fmt.Sprintf("window %s %s emitted twice", k.key, v.WindowStart))
		}
		got[k] = w2Agg{n: v.Orders, cents: int64(math.Round(v.Revenue * 100)), segment: v.Segment}
	}, output)
	if err != nil {
		return fmt.Errorf("reading %s back: %w", output, err)
	}
	missing, wrong := 0, 0
	for k, a := range want {
		g, ok := got[k]
		switch {
		case !ok:
			missing++
		case g != a:
			wrong++
			if wrong <= 3 {
				bad = append(bad, fmt.Sprintf("window %s %d: got %+v, want %+v", k.key, k.start, g, a))
			}
		}
	}
	extra := len(got) - (len(want) - missing)
	o.ok = len(bad) == 0 && missing == 0 && extra == 0
	if o.ok {
		o.note = fmt.Sprintf("read back read_committed: %d windows, match the oracle", len(got))
	} else {
		if len(bad) > 3 {
			bad = bad[:3]
		}
		o.note = fmt.Sprintf("MISMATCH: %d windows read, %d expected, %d missing, %d extra, %d wrong; %s",
			len(got), len(want), missing, extra, wrong, strings.Join(bad, "; "))
	}
	return nil
}

// runW2 fills W2's input and runs its systems (streamer, kstreams, quix, goka).
func runW2(ctx context.Context, c config, adm *kadm.Client) error {
	stamp := time.Now().Format("150405")
	orders, customers := "peers-w2-orders-"+stamp, "peers-w2-customers-"+stamp
	if err := benchkit.CreateTopic(ctx, adm, orders, c.partitions); err != nil {
		return err
	}
	created := []string{orders}
	defer func() {
		// Kafka Streams' internal topics (changelogs) too.
		if ts, err := adm.ListTopics(context.Background()); err == nil {
			for _, t := range ts.Names() {
				// and Quix's changelogs (changelog__<group>--...) and Goka's group tables (<group>-table).
				if strings.Contains(t, "peers-w2-") && strings.Contains(t, "-"+stamp+"-") && !contains(created, t) {
					created = append(created, t)
				}
			}
		}
		benchkit.DeleteTopics(adm, "peers", created...)
	}()
	compact := "compact"
	resp, err := adm.CreateTopic(ctx, int32(c.partitions), 1, map[string]*string{"cleanup.policy": &compact}, customers)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("creating topic %s: %w", customers, err)
	}
	created = append(created, customers)
	now := time.Now().UnixMilli()
	w := w2Input{in: c.in, base: now - now%60_000 - 60_000, partitions: c.partitions}
	t0 := time.Now()
	if err := fillW2(ctx, c.brokers, customers, orders, w); err != nil {
		return fmt.Errorf("filling W2: %w", err)
	}
	want := expectedW2(w)
	ticks := len(w.ticks())
	fmt.Printf("peers: W2 on %v: %d orders (+%d ticks) in %s, %d customers in %s (compacted), %d partitions, filled in %v; expected output: %d windows\n",
		c.brokers, c.in.Records, ticks, orders, w2Known, customers, c.partitions, time.Since(t0).Round(time.Millisecond), len(want))

	self, err := os.Executable()
	if err != nil {
		return err
	}
	var outs []outcome
	var children []string // the systems run as a child process per round
	for _, s := range c.systems {
		if s != "kstreams" {
			children = append(children, s)
		}
	}
	gokaBin := ""
	if contains(children, "goka") {
		dir, err := os.MkdirTemp("", "peers-goka-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if gokaBin, err = buildGoka(ctx, dir); err != nil {
			return err
		}
	}
	for round := 1; round <= c.rounds; round++ {
		order := slices.Clone(children)
		if round%2 == 0 {
			slices.Reverse(order)
		}
		for _, sys := range order {
			name := fmt.Sprintf("peers-w2-%s-%s-r%d", sys, stamp, round)
			output := name + "-out"
			if err := benchkit.CreateTopic(ctx, adm, output, c.partitions); err != nil {
				return err
			}
			created = append(created, output)
			var cmd *exec.Cmd
			switch sys {
			case "streamer":
				cmd = exec.CommandContext(ctx, self, "-workload", "W2", "-worker", "streamer", "-worker-input", orders,
					"-worker-table", customers, "-worker-output", output, "-worker-group", name,
					"-brokers", strings.Join(c.brokers, ","), "-records", fmt.Sprint(c.in.Records+ticks),
					"-partitions", fmt.Sprint(c.partitions), "-topology", c.topology, "-timeout", c.timeout.String())
			case "quix":
				cmd = exec.CommandContext(ctx, c.python, "-u", filepath.Join("bench", "peers", "quix", "enrich.py"),
					strings.Join(c.brokers, ","), orders, customers, output, name)
			case "goka":
				cmd = exec.CommandContext(ctx, gokaBin, "-workload", "W2", "-brokers", strings.Join(c.brokers, ","),
					"-input", orders, "-table", customers, "-output", output, "-group", name, "-records", fmt.Sprint(c.in.Records+ticks))
			default:
				return fmt.Errorf("W2 has no system %q (streamer, kstreams, quix, goka)", sys)
			}
			o, err := runTimed(cmd, sys, round, int64(c.in.Records))
			if err != nil {
				return err
			}
			if err := verifyW2(ctx, c, output, want, &o); err != nil {
				return err
			}
			outs = append(outs, o)
			printOutcome(o)
		}
	}
	if contains(c.systems, "kstreams") {
		prefix := "peers-w2-kstreams-" + stamp
		cmd := exec.CommandContext(ctx, "java", "-cp", c.jar, "io.streamer.bench.Enrich", strings.Join(c.brokers, ","),
			orders, customers, prefix, fmt.Sprint(c.ksRounds), fmt.Sprint(c.partitions))
		ks, err := runKStreams(c, cmd, prefix, &created, func(output string, ko *outcome) error {
			ko.n -= int64(ticks) // the rate is of orders, as streamer's
			return verifyW2(ctx, c, output, want, ko)
		})
		outs = append(outs, ks...)
		if err != nil {
			return err
		}
	}
	return report(c, outs, nil)
}

// freshStateDir is a fresh state directory for a streamer run with state (W2, W5).
func freshStateDir(group string) (string, error) {
	return os.MkdirTemp("", filepath.Base(group)+"-state-")
}

// buildGoka builds the Goka peer (bench/peers/goka, a module of its own)
// into dir and returns the binary's path.
func buildGoka(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "goka")
	build := exec.CommandContext(ctx, "go", "build", "-C", filepath.Join("bench", "peers", "goka"), "-o", bin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("building bench/peers/goka: %w", err)
	}
	return bin, nil
}
