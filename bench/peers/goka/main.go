// Command goka is the Goka peer of the W1 benchmark (bench/peers, issue
// 16): the filter + map of bench/topology.yaml as a Goka processor, run as a
// child process by go run ./bench/peers when -systems names goka. It is a
// module of its own so that Goka's dependencies (sarama among them) stay
// out of streamer's go.mod.
//
// Goka is at least once: a processor commits the offset of an input record
// once the outputs it emitted are acknowledged, not atomically with them;
// outputs are not transactional. Its figures are therefore not of the same
// guarantee as the others'.
//
// Usage: goka -brokers B -input T -output T -group G -records N. It times
// itself from the first record its callback sees until the group's
// committed offsets reach N (polled every 10 ms with sarama's cluster
// admin), and prints "result seconds S cpu_seconds C peak_rss_kb K" as the
// bench's Go workers do.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/IBM/sarama"
	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
)

// shape is bench/peers/shape.go's shape (the hand-written programs' map),
// repeated here because this is another module; the parent checks the
// output against its oracle, so a difference shows as a mismatch.
func shape(value []byte) ([]byte, bool, error) {
	var o map[string]any
	if err := json.Unmarshal(value, &o); err != nil {
		return nil, false, err
	}
	amount, ok := o["amount"].(float64)
	if !ok {
		return nil, false, fmt.Errorf("amount is %T, not a number", o["amount"])
	}
	if !(amount > -1000000) {
		return nil, false, nil
	}
	if o["currency"] == "EUR" {
		o["amount_eur"] = amount
	} else {
		o["amount_eur"] = amount * 0.92
	}
	items, _ := o["items"].([]any)
	o["item_count"] = len(items)
	o["pipeline"] = "bench"
	if c, ok := o["customer_id"]; ok {
		o["customer"] = c
		delete(o, "customer_id")
	}
	delete(o, "debug")
	b, err := json.Marshal(o)
	return b, true, err
}

func cpu() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func main() {
	brokers := flag.String("brokers", "127.0.0.1:9092", "seed brokers, comma separated")
	input := flag.String("input", "", "input topic")
	output := flag.String("output", "", "output topic")
	group := flag.String("group", "", "consumer group")
	records := flag.Int64("records", 0, "input records: done when the group has committed them all")
	workload := flag.String("workload", "W1", "W1 (filter + map) or W2 (table join and 1-minute window, w2.go)")
	table := flag.String("table", "", "W2: the customers topic (co-partitioned with the input)")
	stateDir := flag.String("state-dir", "", "W2: where Goka keeps its local storage (default: a fresh temporary directory, removed at the end)")
	flag.Parse()
	var err error
	switch *workload {
	case "W1":
		err = run(strings.Split(*brokers, ","), *group, *records, w1Graph(*input, *output))
	case "W2":
		err = runW2(strings.Split(*brokers, ","), *input, *table, *output, *group, *records, *stateDir)
	default:
		err = fmt.Errorf("no workload %q (W1, W2)", *workload)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "goka peer:", err)
		os.Exit(1)
	}
}

// graph is a workload's processor: its group graph given the group name and
// a callback hook, on, that the graph's input callback calls first (it
// starts the timing), and the processor's options.
type graph func(group string, on func(), failed func(error)) (*goka.GroupGraph, []goka.ProcessorOption)

// w1Graph is W1's filter + map.
func w1Graph(input, output string) graph {
	return func(group string, on func(), failed func(error)) (*goka.GroupGraph, []goka.ProcessorOption) {
		cb := func(ctx goka.Context, msg any) {
			on()
			out, keep, err := shape(msg.([]byte))
			if err != nil {
				failed(err)
				ctx.Fail(err)
			}
			if keep {
				ctx.Emit(goka.Stream(output), ctx.Key(), out)
			}
		}
		return goka.DefineGroup(goka.Group(group),
			goka.Input(goka.Stream(input), new(codec.Bytes), cb),
			goka.Output(goka.Stream(output), new(codec.Bytes)),
		), nil
	}
}

// run runs the processor of build until the group's committed offsets
// reach records, and prints its timing line.
func run(brokers []string, group string, records int64, build graph) error {
	cfg := goka.DefaultConfig()
	cfg.Version = sarama.V3_6_0_0
	cfg.Consumer.Offsets.Initial = sarama.OffsetOldest
	cfg.Consumer.Offsets.AutoCommit.Interval = 100 * time.Millisecond // the others' commit interval
	goka.ReplaceGlobalConfig(cfg)

	var (
		started          atomic.Bool
		startAt, startCP atomic.Int64
		failed           atomic.Pointer[error]
	)
	on := func() {
		if !started.Load() && started.CompareAndSwap(false, true) {
			startCP.Store(int64(cpu()))
			startAt.Store(time.Now().UnixNano())
		}
	}
	g, opts := build(group, on, func(err error) { failed.CompareAndSwap(nil, &err) })
	p, err := goka.NewProcessor(brokers, g, opts...)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	admin, err := sarama.NewClusterAdmin(brokers, cfg)
	if err != nil {
		return err
	}
	defer admin.Close()
	for {
		select {
		case err := <-done:
			return fmt.Errorf("processor stopped: %v", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		offs, err := admin.ListConsumerGroupOffsets(group, nil)
		if err != nil {
			continue
		}
		var committed int64
		for _, ps := range offs.Blocks {
			for _, b := range ps {
				if b.Offset > 0 {
					committed += b.Offset
				}
			}
		}
		if committed >= records {
			break
		}
	}
	stopAt, stopCP := time.Now().UnixNano(), int64(cpu())
	cancel()
	if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("processor: %w", err)
	}
	if e := failed.Load(); e != nil {
		return *e
	}
	fmt.Printf("result seconds %.4f cpu_seconds %.4f peak_rss_kb %d\n", float64(stopAt-startAt.Load())/1e9, float64(stopCP-startCP.Load())/1e9, peakRSS())
	return nil
}

// peakRSS is this process's peak resident set in KiB (VmHWM), 0 when
// unknown: the parent's rusage of a child starts from the parent's own RSS.
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
