package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/console"
	"github.com/streamerio/streamer/metrics"
	"github.com/streamerio/streamer/topology"
)

type backfillFlags struct {
	brokers, from, to, id, cleanup, replica, stateDir, suffix, compare, metricsAddr string
	sinks                                                                           []string
	allowLive, dryRun                                                               bool
	rate                                                                            float64
	commit, progressEvery, checkEvery                                               time.Duration
	http                                                                            httpFlags
	kafka                                                                           kafkaFlags
}

func backfillCmd(g *globals) *cobra.Command {
	var f backfillFlags
	c := &cobra.Command{
		Use:   "backfill FILE --from X --to Y",
		Short: "Process a past range of the sources again, as an isolated bounded job",
		Long: `Run a topology over a range of its source topics, beside the live job and
without disturbing it, and stop by itself at the end of the range.

X and Y are earliest, latest (or now), an RFC 3339 time (the first record at
or after it), a duration ago such as 24h, or topic:partition:offset,...
lists (then only the partitions listed in both are processed). The plan
(per source partition: start and end offsets, offsets to process) is
printed before the run starts; --dry-run prints only the plan.

A backfill has its own consumer group, <group>-backfill-<id>, and with it
its own transactional ids, repartition, merge and changelog topics and
state directory. Its sinks are redirected with --sink name=topic or
--sink-suffix; writing into a sink topic of the live job is refused unless
--allow-live-sinks. Tables are joined as they are now, not as they were at
the time of the records.

Several replicas may share a backfill (the same --id, distinct
--replica-id); each ends once the whole range is processed and committed,
and prints a summary. A backfill stopped or killed goes on from its
committed offsets when run again with the same --id, exactly once.
'streamer backfill FILE --cleanup ID' then deletes its group, internal
topics and state directory.

A shadow run, 'streamer backfill NEW.yaml --compare OLD.yaml --from X --to Y',
runs both versions as isolated backfills over the same range (ids <id>-old
and <id>-new, sinks written to <topic>-<id>-old and -new) and compares their
sinks dataset by dataset: records only in one, records whose value changed
(paired by key, with the fields that changed and by how much), counts, and a
few samples of each. It exits 1 when they differ.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.cleanup != "" {
				return backfillCleanup(g, args[0], f)
			}
			if f.compare != "" {
				return shadowRun(g, args[0], f)
			}
			return backfill(g, args[0], f)
		},
	}
	fl := c.Flags()
	brokersFlag(c, &f.brokers)
	fl.StringVar(&f.from, "from", "", "start of the range: earliest, now, an RFC 3339 time, a duration ago (24h), or topic:partition:offset,...")
	fl.StringVar(&f.to, "to", "now", "end of the range (excluded), as --from")
	fl.StringVar(&f.id, "id", "", "the backfill's id, to resume it or run it on several replicas (default: derived from the range's offsets)")
	fl.BoolVar(&f.dryRun, "dry-run", false, "print the plan, and do nothing")
	fl.StringArrayVar(&f.sinks, "sink", nil, "write sink dataset NAME to TOPIC instead: NAME=TOPIC (repeatable)")
	fl.StringVar(&f.suffix, "sink-suffix", "", "append this to the topic of every sink (and the dead letters) not given by --sink, e.g. -backfill")
	fl.BoolVar(&f.allowLive, "allow-live-sinks", false, "allow writing into sink topics of the live job")
	fl.Float64Var(&f.rate, "rate", 0, "most records per second this replica processes (0: no limit)")
	fl.StringVar(&f.replica, "replica-id", env("STREAMER_REPLICA_ID", ""), "this replica's stable id (default <hostname>-<pid>)")
	fl.StringVar(&f.stateDir, "state-dir", env("STREAMER_STATE_DIR", "streamer-state"), "where stateful pipes keep local stores; the backfill's are under its own group (env STREAMER_STATE_DIR)")
	fl.DurationVar(&f.commit, "commit-interval", 0, "longest a transaction stays open (default the topology's)")
	fl.StringVar(&f.metricsAddr, "metrics-addr", "off", "serve the topology page, /metrics (with streamer_backfill_* progress), /healthz and /readyz here; off disables")
	f.http.register(fl)
	f.kafka.register(fl)
	fl.DurationVar(&f.progressEvery, "progress-interval", 10*time.Second, "how often to log the progress")
	fl.DurationVar(&f.checkEvery, "done-check-interval", time.Second, "how often to read the group's offsets to learn whether the backfill is done")
	_ = fl.MarkHidden("done-check-interval")
	fl.StringVar(&f.compare, "compare", "", "a shadow run: run OLD.yaml too, over the same range, and compare the two versions' sinks; exit 1 if they differ")
	fl.StringVar(&f.cleanup, "cleanup", "", "delete the group, internal topics and state directory of finished backfill ID, and do nothing else")
	return c
}

func backfillCleanup(g *globals, file string, f backfillFlags) error {
	live, err := g.load(file)
	if err != nil {
		return err
	}
	group, err := engine.BackfillGroup(live.Group, f.cleanup)
	if err != nil {
		return usageError{fmt.Errorf("--cleanup: %w", err)}
	}
	bt, err := g.load(file, topology.WithGroup(group))
	if err != nil {
		return err
	}
	ctx, cancel := cmdContext(2 * time.Minute)
	defer cancel()
	log, err := g.logger(slog.LevelWarn)
	if err != nil {
		return err
	}
	o := engine.ResetOptions{Brokers: splitList(f.brokers), StateDir: f.stateDir, DryRun: f.dryRun}
	if o.ClientOpts, err = f.kafka.connect(ctx, o.Brokers, log); err != nil {
		return err
	}
	rep, err := engine.CleanupBackfill(ctx, bt, o)
	if rep != nil {
		verb := map[bool]string{false: "", true: "would be "}[f.dryRun]
		fmt.Fprintf(g.stdout, "backfill %s: group %s %sdeleted\n", f.cleanup, group, verb)
		if len(rep.Deleted) > 0 {
			fmt.Fprintf(g.stdout, "topics %sdeleted: %s\n", verb, strings.Join(rep.Deleted, ", "))
		}
		if rep.StateDir != "" {
			fmt.Fprintf(g.stdout, "state directory %sremoved: %s\n", verb, rep.StateDir)
		}
	}
	if err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	return nil
}

// parseSinks parses --sink NAME=TOPIC flags.
func parseSinks(flags []string) (map[string]string, error) {
	out := map[string]string{}
	for _, s := range flags {
		name, topic, ok := strings.Cut(s, "=")
		if !ok || name == "" || topic == "" {
			return nil, fmt.Errorf("--sink %q: want NAME=TOPIC", s)
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("--sink: %s given twice", name)
		}
		out[name] = topic
	}
	return out, nil
}

// planID derives a backfill id from its ranges: the same range gets the
// same id, and so resumes.
func planID(p *engine.BackfillPlan) string {
	h := sha256.New()
	for _, r := range p.Ranges {
		fmt.Fprintf(h, "%s/%d/%d/%d\n", r.Topic, r.Partition, r.Start, r.End)
	}
	return hex.EncodeToString(h.Sum(nil))[:10]
}

func backfill(g *globals, file string, f backfillFlags) error {
	// First, so that a SIGTERM during start-up stops it cleanly too.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.from == "" {
		return usageError{fmt.Errorf("--from is required (or --cleanup ID)")}
	}
	now := time.Now()
	from, err := engine.ParseTarget(f.from, now)
	if err != nil {
		return usageError{fmt.Errorf("--from: %w", err)}
	}
	to, err := engine.ParseTarget(f.to, now)
	if err != nil {
		return usageError{fmt.Errorf("--to: %w", err)}
	}
	sinks, err := parseSinks(f.sinks)
	if err != nil {
		return usageError{err}
	}
	if f.rate < 0 {
		return usageError{fmt.Errorf("--rate must be ≥ 0, got %v", f.rate)}
	}
	if f.replica == "" {
		f.replica = engine.DefaultReplicaID()
	}
	// On a terminal the progress shows as a bar, and log lines go
	// through it so that they do not mix.
	var bar *progressBar
	if g.logFormat == "text" && isTerminal(g.stderr) {
		bar = newProgressBar(g.stderr)
		g.stderr = bar
	}
	log, err := g.logger(slog.LevelInfo)
	if err != nil {
		return err
	}
	live, err := g.load(file)
	if err != nil {
		return err
	}
	o := engine.BackfillOptions{Brokers: splitList(f.brokers), From: from, To: to}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if o.ClientOpts, err = f.kafka.connect(pctx, o.Brokers, log); err != nil {
		return err
	}
	plan, err := engine.PlanBackfill(pctx, live, o)
	if err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	id := f.id
	if id == "" {
		id = planID(plan)
	}
	group, err := engine.BackfillGroup(live.Group, id)
	if err != nil {
		return usageError{fmt.Errorf("--id: %w", err)}
	}
	bt, err := g.load(file, topology.WithGroup(group))
	if err != nil {
		return err
	}
	liveSinks, err := engine.RedirectSinks(pctx, bt, live, sinks, f.suffix, o.Brokers, o.ClientOpts)
	if err != nil {
		return usageError{err}
	}
	if len(liveSinks) > 0 && !f.allowLive {
		return usageError{fmt.Errorf("the backfill would write into sink topics of the live job: %s; redirect them with --sink NAME=TOPIC or --sink-suffix, or give --allow-live-sinks", strings.Join(liveSinks, ", "))}
	}
	if err := engine.StartBackfill(pctx, bt, plan, o, f.dryRun); err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	printPlan(g.stdout, id, bt, plan, f, true)
	if f.dryRun {
		return nil
	}
	cancel()

	var m *metrics.Metrics
	var hooks []engine.Hook
	var clientHooks []kgo.Hook
	if f.metricsAddr != "off" {
		m = metrics.New(bt, f.replica, version())
		hooks, clientHooks = []engine.Hook{m}, []kgo.Hook{m.ClientHook()}
	}
	e, outs, err := newBoundedEngine(bt, plan, f, log.With("backfill", id), o.Brokers, o.ClientOpts, hooks, clientHooks)
	if err != nil {
		return usageError{err}
	}
	if err := lockState(e); err != nil {
		return err
	}
	if m != nil {
		registerProgress(m.Registry(), e)
		m.SetReadiness(e.Ready)
		page := console.New(bt, f.replica, e.Stats(), e.Ready)
		ops, err := serveOps(f.metricsAddr, f.http, m.Handler(), e, page, log)
		if err != nil {
			return &exitError{code: ExitFailure, err: err}
		}
		defer func() {
			if err := ops.stop(); err != nil {
				log.Warn("stopping the metrics server", "err", err)
			}
		}()
	}
	start := time.Now()
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		showProgress(log, bar, e, f.progressEvery, start, done)
	}()
	err = e.Run(ctx)
	close(done)
	wg.Wait()
	bar.finish()
	printSummary(g.stdout, e, outs, time.Since(start))
	if err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	if !e.Finished() {
		return &exitError{code: ExitFailure, err: fmt.Errorf("backfill %s stopped before the end of its range; run it again with --id %s to go on from its committed offsets", id, id)}
	}
	fmt.Fprintf(g.stdout, "backfill %s finished; delete its group, internal topics and state with: streamer backfill %s --cleanup %s\n", id, file, id)
	return nil
}

// newBoundedEngine returns an engine running bt over plan's ranges, and
// the counter of its outputs per sink.
func newBoundedEngine(bt *topology.Topology, plan *engine.BackfillPlan, f backfillFlags, log *slog.Logger, brokers []string, clientOpts []kgo.Opt, hooks []engine.Hook, clientHooks []kgo.Hook) (*engine.Engine, *sinkCounts, error) {
	outs := &sinkCounts{n: map[string]int64{}}
	bounds := plan.Bounds()
	bounds.Rate, bounds.CheckInterval = f.rate, f.checkEvery
	if f.rate > 0 {
		// The wait for the rate's tokens follows a poll, perhaps inside an
		// open transaction: a poll of rate/10 records keeps it to 100 ms.
		bt.MaxPollRecords = max(1, min(bt.MaxPollRecords, int(f.rate/10)))
	}
	e, err := engine.New(bt, engine.Options{
		Brokers:        brokers,
		ClientOpts:     clientOpts,
		ReplicaID:      f.replica,
		CommitInterval: f.commit,
		Logger:         log,
		StateDir:       f.stateDir,
		Hooks:          append(hooks, outs),
		ClientHooks:    clientHooks,
		Stats:          engine.NewStats(),
		Bounds:         bounds,
	})
	return e, outs, err
}

func printPlan(w io.Writer, id string, bt *topology.Topology, plan *engine.BackfillPlan, f backfillFlags, resumable bool) {
	fmt.Fprintf(w, "backfill %s: group %s, from %s to %s\n", id, bt.Group, f.from, f.to)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TOPIC\tPARTITION\tSTART\tEND\tOFFSETS\tCOMMITTED")
	for _, r := range plan.Ranges {
		committed := "-"
		if r.Committed >= 0 {
			committed = fmt.Sprint(r.Committed)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", r.Topic, r.Partition, r.Start, r.End, r.End-r.Start, committed)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d offsets in all (records, and the transaction markers among them)\n", plan.Offsets)
	var sinks []string
	for _, d := range bt.Sinks() {
		if d.Repartition == nil {
			sinks = append(sinks, d.Name+" → "+d.Topic)
		}
	}
	if bt.DeadLetter != nil {
		sinks = append(sinks, bt.DeadLetter.Name+" (dead letters) → "+bt.DeadLetter.Topic)
	}
	slices.Sort(sinks)
	fmt.Fprintf(w, "sinks: %s\n", strings.Join(sinks, ", "))
	if len(bt.Tables()) > 0 {
		var names []string
		for _, d := range bt.Tables() {
			names = append(names, d.Name)
		}
		fmt.Fprintf(w, "tables %s are joined as they are now, not as they were at the time of the records\n", strings.Join(names, ", "))
	}
	if plan.Fixed {
		fmt.Fprintf(w, "the ranges are those fixed by the backfill's first start (in %s), not those --from and --to resolve to now\n", engine.PlanTopic(bt.Group))
	}
	switch {
	case plan.Resumed && f.dryRun:
		fmt.Fprintln(w, "a run would resume: the group has committed offsets past the start (COMMITTED)")
	case plan.Resumed:
		fmt.Fprintln(w, "resuming: the group has committed offsets past the start (COMMITTED); it goes on from them")
	case f.dryRun:
		fmt.Fprintln(w, "a run would start at START: nothing of the range is committed yet")
	default:
		fmt.Fprintln(w, "starting at START: nothing of the range is committed yet")
		if resumable {
			fmt.Fprintf(w, "to resume it after a stop, run it again with --id %s\n", id)
		}
	}
}

// sinkCounts counts the records written to each sink (an engine.OutputHook).
type sinkCounts struct {
	mu sync.Mutex
	n  map[string]int64
}

var _ engine.OutputHook = (*sinkCounts)(nil)

func (s *sinkCounts) OnOutput(dataset string, _ time.Duration) {
	s.mu.Lock()
	s.n[dataset]++
	s.mu.Unlock()
}

func printSummary(w io.Writer, e *engine.Engine, outs *sinkCounts, took time.Duration) {
	in := e.BoundedProgress().RecordsIn
	fmt.Fprintf(w, "this replica: %d records in, %d dead letters, in %s (%.0f records/s)\n", in, e.Stats().DeadLettered.Load(), took.Round(time.Millisecond), float64(in)/max(took.Seconds(), 1e-9))
	outs.mu.Lock()
	defer outs.mu.Unlock()
	for _, name := range slices.Sorted(maps.Keys(outs.n)) {
		fmt.Fprintf(w, "  %s: %d records out\n", name, outs.n[name])
	}
}
