package cli

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/examples"
	"github.com/streamerio/streamer/internal/console"
	"github.com/streamerio/streamer/internal/gen"
	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/metrics"
	"github.com/streamerio/streamer/topology"
)

func demoCmd(g *globals) *cobra.Command {
	var duration time.Duration
	var rate int
	var metricsAddr string
	c := &cobra.Command{
		Use:   "demo",
		Short: "Run the example enrichment topology on an in-process Kafka, with nothing to install",
		Long: `Start an in-process Kafka-compatible broker (franz-go's kfake), a generator
of synthetic orders (a few of them malformed on purpose), and the example
topology examples/enrichment/topology.yaml, exactly once.

A live line shows records in and out per second and the consumer lag. At the
end the output topics are read back with read_committed and their counts are
checked against what the generator says a correct run must produce.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if rate <= 0 {
				return usageError{errors.New("--rate must be positive")}
			}
			log, err := g.logger(slog.LevelWarn)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return runDemo(ctx, g, log, duration, rate, metricsAddr)
		},
	}
	c.Flags().DurationVar(&duration, "duration", 10*time.Second, "how long to generate orders; 0 runs until interrupted")
	c.Flags().IntVar(&rate, "rate", 5000, "orders generated per second")
	c.Flags().StringVar(&metricsAddr, "metrics-addr", "127.0.0.1:0", "serve the live topology page and /metrics here (port 0: any free port); off disables")
	return c
}

func runDemo(ctx context.Context, g *globals, log *slog.Logger, duration time.Duration, rate int, metricsAddr string) (err error) {
	const file = "examples/enrichment/topology.yaml"
	fsys := examples.Enrichment()
	src, err := fs.ReadFile(fsys, "topology.yaml")
	if err != nil {
		return err
	}
	top, err := topology.Compile(file, src, fsys)
	if err != nil {
		return err
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"))
	if err != nil {
		return fmt.Errorf("starting the in-process broker: %w", err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	fmt.Fprintf(g.stdout, "streamer demo: in-process Kafka at %s, topology %q (%d pipes), %d orders/s\n",
		brokers[0], top.Name, len(top.Pipes), rate)
	if err := top.WritePlan(g.stdout, "text", "demo"); err != nil {
		return err
	}
	fmt.Fprintln(g.stdout)

	stats := engine.NewStats()
	m := metrics.New(top, "demo", version())
	var e *engine.Engine
	page := console.New(top, "demo", stats, func() bool { return e.Ready() })
	e, err = engine.New(top, engine.Options{Brokers: brokers, ReplicaID: "demo", Logger: log, Stats: stats,
		Hooks: []engine.Hook{m, page}, ClientHooks: []kgo.Hook{m.ClientHook()}})
	if err != nil {
		return err
	}
	if metricsAddr != "off" {
		ops, err := serveOps(metricsAddr, httpFlags{}, m.Handler(), e, page, log)
		if err != nil {
			return err
		}
		defer func() { _ = ops.stop() }()
		fmt.Fprintf(g.stdout, "live topology page: http://%s/  (metrics: /metrics)\n\n", ops.addr)
	}
	runCtx, stopEngine := context.WithCancel(context.WithoutCancel(ctx))
	defer stopEngine()
	engineDone := make(chan error, 1)
	go func() { engineDone <- e.Run(runCtx) }()

	genCtx, stopGen := context.WithCancel(ctx)
	if duration > 0 {
		genCtx, stopGen = context.WithTimeout(ctx, duration)
	}
	defer stopGen()
	var tally gen.Tally
	var tallyMu sync.Mutex
	generated := func() int64 {
		tallyMu.Lock()
		defer tallyMu.Unlock()
		return tally.Orders
	}
	genDone := make(chan error, 1)
	go func() { genDone <- generate(genCtx, brokers, rate, &tally, &tallyMu) }()

	ticker := time.NewTicker(time.Second)
	defer ticker.Stop()
	var lastIn, lastOut int64
	live := func() {
		in, out := stats.RecordsIn.Load(), stats.RecordsOut.Load()
		fmt.Fprintf(g.stdout, "in %6d/s  out %6d/s  lag %6d  dead letters %5d  commits %5d  total in %d\n",
			in-lastIn, out-lastOut, stats.TotalLag(), stats.DeadLettered.Load(), stats.Commits.Load(), in)
		lastIn, lastOut = in, out
	}
	generating := true
	for generating {
		select {
		case err := <-engineDone:
			return fmt.Errorf("engine stopped: %w", err)
		case err := <-genDone:
			if err != nil {
				return fmt.Errorf("generator: %w", err)
			}
			generating = false
		case <-ticker.C:
			live()
		}
	}
	// Let the replica drain what was generated, then stop it cleanly.
	drainBy := time.Now().Add(15 * time.Second)
	for stats.CommittedIn.Load() < generated() && time.Now().Before(drainBy) && ctx.Err() == nil {
		select {
		case <-ticker.C:
			live()
		case <-time.After(50 * time.Millisecond):
		}
	}
	live()
	stopEngine()
	if err := <-engineDone; err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	return demoReport(g, brokers, top, &tally)
}

// generate produces orders at a steady rate until ctx ends, counting in
// tally what a correct run must make of the orders the broker acknowledged.
func generate(ctx context.Context, brokers []string, rate int, tally *gen.Tally, mu *sync.Mutex) error {
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		return err
	}
	defer cl.Close()
	g := gen.NewOrders(1)
	g.BadEvery = 200
	var firstErr error
	const tick = 10 * time.Millisecond
	perTick := max(1, rate/int(time.Second/tick))
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// Records already handed to the client are not canceled: they
			// are flushed and counted once acknowledged.
			if err := cl.Flush(context.Background()); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			return firstErr
		case <-t.C:
			for i := 0; i < perTick; i++ {
				o := g.Next()
				cl.Produce(context.Background(), &kgo.Record{Topic: "orders", Key: o.Key, Value: o.Value}, func(_ *kgo.Record, err error) {
					mu.Lock()
					defer mu.Unlock()
					if err != nil {
						firstErr = cmp.Or(firstErr, err)
						return
					}
					tally.Add(o)
				})
			}
		}
	}
}

func demoReport(g *globals, brokers []string, top *topology.Topology, want *gen.Tally) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	topic := func(ds string) string { return top.Datasets[ds].Topic }
	counts, err := topicread.Count(ctx, brokers, topic("enriched"), topic("gold"), topic("lines"), topic("dead-letters"))
	if err != nil {
		return fmt.Errorf("reading the outputs back: %w", err)
	}
	rows := []struct {
		name      string
		got, want int64
	}{
		{topic("enriched"), counts[topic("enriched")], want.Enriched},
		{topic("gold"), counts[topic("gold")], want.Gold},
		{topic("lines"), counts[topic("lines")], want.Lines},
		{topic("dead-letters"), counts[topic("dead-letters")], want.DeadLetters},
	}
	fmt.Fprintf(g.stdout, "\ngenerated %d orders; read back with read_committed:\n", want.Orders)
	ok := true
	for _, r := range rows {
		mark := "ok"
		if r.got != r.want {
			mark, ok = "MISMATCH", false
		}
		fmt.Fprintf(g.stdout, "  %-16s %8d records, expected %8d  %s\n", r.name, r.got, r.want, mark)
	}
	if !ok {
		return &exitError{code: ExitFailure, err: errors.New("the outputs do not match the expected counts")}
	}
	fmt.Fprintln(g.stdout, "every order accounted for, exactly once.")
	return nil
}
