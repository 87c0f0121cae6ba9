package cli

import (
	"context"
	"errors"
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
	"time"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/shadow"
	"github.com/streamerio/streamer/topology"
)

// side is one version of a shadow run.
type side struct {
	name, file string
	live, bt   *topology.Topology
	plan       *engine.BackfillPlan
	e          *engine.Engine
	err        error
}

// userSinks returns a topology's sinks and dead letters by dataset name,
// without the sinks of repartition topics.
func userSinks(t *topology.Topology) map[string]*topology.Dataset {
	out := map[string]*topology.Dataset{}
	for _, d := range t.Sinks() {
		if d.Repartition == nil {
			out[d.Name] = d
		}
	}
	if t.DeadLetter != nil {
		out[t.DeadLetter.Name] = t.DeadLetter
	}
	return out
}

// shadowRun runs the topology in newFile and the one in f.compare as two
// isolated backfills over the same range, then compares their sinks.
func shadowRun(g *globals, newFile string, f backfillFlags) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if f.from == "" {
		return usageError{errors.New("--from is required")}
	}
	if len(f.sinks) > 0 || f.suffix != "" || f.allowLive {
		return usageError{errors.New("--compare chooses its own sink topics (<topic>-<id>-old and -new): drop --sink, --sink-suffix and --allow-live-sinks")}
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
	if f.rate < 0 {
		return usageError{fmt.Errorf("--rate must be ≥ 0, got %v", f.rate)}
	}
	if f.replica == "" {
		f.replica = engine.DefaultReplicaID()
	}
	log, err := g.logger(slog.LevelInfo)
	if err != nil {
		return err
	}
	vs := []*side{{name: "old", file: f.compare}, {name: "new", file: newFile}}
	for _, v := range vs {
		if v.live, err = g.load(v.file); err != nil {
			return err
		}
	}
	if a, b := vs[0].live.ExternalTopicsRead(), vs[1].live.ExternalTopicsRead(); !slices.Equal(a, b) {
		return usageError{fmt.Errorf("--compare: the versions read different topics (%s: %s; %s: %s)", f.compare, strings.Join(a, ", "), newFile, strings.Join(b, ", "))}
	}
	o := engine.BackfillOptions{Brokers: splitList(f.brokers), From: from, To: to}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	if o.ClientOpts, err = f.kafka.connect(pctx, o.Brokers, log); err != nil {
		return err
	}
	plan, err := engine.PlanBackfill(pctx, vs[1].live, o)
	if err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	id := f.id
	if id == "" {
		id = planID(plan)
	}
	for _, v := range vs {
		group, err := engine.BackfillGroup(v.live.Group, id+"-"+v.name)
		if err != nil {
			return usageError{fmt.Errorf("--id: %w", err)}
		}
		if v.bt, err = g.load(v.file, topology.WithGroup(group)); err != nil {
			return err
		}
		live, err := engine.RedirectSinks(pctx, v.bt, v.live, nil, "-"+id+"-"+v.name, o.Brokers, o.ClientOpts)
		if err != nil {
			return usageError{err}
		}
		// The other version's live sinks count too: two files may
		// differ in their topics.
		other, err := engine.RedirectSinks(pctx, v.bt, vs[0].live, nil, "", o.Brokers, o.ClientOpts)
		if err != nil {
			return usageError{err}
		}
		if len(live)+len(other) > 0 {
			return usageError{fmt.Errorf("the %s version would write into live sink topics: %s", v.name, strings.Join(append(live, other...), ", "))}
		}
		v.plan = &engine.BackfillPlan{Ranges: slices.Clone(plan.Ranges), Offsets: plan.Offsets}
		if err := engine.StartBackfill(pctx, v.bt, v.plan, o, f.dryRun); err != nil {
			return &exitError{code: ExitFailure, err: err}
		}
	}
	fmt.Fprintf(g.stdout, "shadow run %s: %s (old) against %s (new); to resume it after a stop, give the same --id\n", id, f.compare, newFile)
	for _, v := range vs {
		printPlan(g.stdout, id+"-"+v.name, v.bt, v.plan, f, false)
	}
	if f.dryRun {
		return nil
	}
	cancel()

	start := time.Now()
	for _, v := range vs {
		if v.e, _, err = newBoundedEngine(v.bt, v.plan, f, log.With("backfill", id+"-"+v.name), o.Brokers, o.ClientOpts, nil, nil); err != nil {
			return usageError{err}
		}
		if err := lockState(v.e); err != nil {
			return err
		}
	}
	var wg sync.WaitGroup
	for _, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.err = v.e.Run(ctx)
		}()
	}
	wg.Wait()
	for _, v := range vs {
		if v.err != nil {
			return &exitError{code: ExitFailure, err: fmt.Errorf("the %s version: %w", v.name, v.err)}
		}
		if !v.e.Finished() {
			return &exitError{code: ExitFailure, err: fmt.Errorf("shadow run %s stopped before the end of its range; run it again with --id %s to go on", id, id)}
		}
	}
	fmt.Fprintf(g.stdout, "both versions processed the range in %s\n", time.Since(start).Round(time.Millisecond))

	oldSinks, newSinks := userSinks(vs[0].bt), userSinks(vs[1].bt)
	var pairs []shadow.Pair
	var onlyOld, onlyNew []string
	for _, name := range slices.Sorted(maps.Keys(oldSinks)) {
		od, nd := oldSinks[name], newSinks[name]
		if nd == nil {
			onlyOld = append(onlyOld, name)
			continue
		}
		p := shadow.Pair{Dataset: name, OldTopic: od.Topic, NewTopic: nd.Topic}
		if od.Codec != nil && nd.Codec != nil {
			p.OldDecode, p.NewDecode = od.Codec.Decode, nd.Codec.Decode
		}
		pairs = append(pairs, p)
	}
	for _, name := range slices.Sorted(maps.Keys(newSinks)) {
		if oldSinks[name] == nil {
			onlyNew = append(onlyNew, name)
		}
	}
	rctx, rcancel := context.WithTimeout(ctx, 10*time.Minute)
	defer rcancel()
	diffs, err := shadow.Compare(rctx, o.Brokers, o.ClientOpts, pairs, 3*time.Second)
	if err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	differ := printComparison(g.stdout, diffs, onlyOld, onlyNew)
	if differ {
		return &exitError{code: ExitFailure, err: fmt.Errorf("shadow run %s: the versions differ", id)}
	}
	fmt.Fprintf(g.stdout, "shadow run %s: no differences\n", id)
	return nil
}

// printComparison prints a shadow run's report and says whether the
// versions differ.
func printComparison(w io.Writer, diffs []*shadow.Diff, onlyOld, onlyNew []string) bool {
	differ := len(onlyOld)+len(onlyNew) > 0
	if len(onlyOld) > 0 {
		fmt.Fprintf(w, "sinks only in the old version: %s\n", strings.Join(onlyOld, ", "))
	}
	if len(onlyNew) > 0 {
		fmt.Fprintf(w, "sinks only in the new version: %s\n", strings.Join(onlyNew, ", "))
	}
	for _, d := range diffs {
		differ = differ || d.Differs()
		fmt.Fprintf(w, "\n%s: %d records old, %d new: %d equal, %d changed, %d only old, %d only new\n", d.Dataset, d.Old, d.New, d.Same, d.Changed, d.OnlyOld, d.OnlyNew)
		for _, fd := range d.Fields {
			line := fmt.Sprintf("  field %s: changed in %d records", fd.Name, fd.Changed)
			if fd.Numeric > 0 {
				line += fmt.Sprintf(" (%d numbers: mean |Δ| %.6g, max |Δ| %.6g)", fd.Numeric, fd.MeanAbs, fd.MaxAbs)
			}
			fmt.Fprintln(w, line)
		}
		for _, s := range d.Samples {
			switch s.Kind {
			case "changed":
				fmt.Fprintf(w, "  changed, key %q: %s\n", s.Key, strings.Join(s.Fields, "; "))
			case "only old":
				fmt.Fprintf(w, "  only old, key %q: %s\n", s.Key, s.Old)
			default:
				fmt.Fprintf(w, "  only new, key %q: %s\n", s.Key, s.New)
			}
		}
	}
	return differ
}
