package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
)

func resetCmd(g *globals) *cobra.Command {
	var brokers, from, stateDir string
	var dryRun bool
	var memberWait time.Duration
	var kf kafkaFlags
	c := &cobra.Command{
		Use:   "reset FILE",
		Short: "Make the next run process the sources again, from empty state",
		Long: `Reset a topology's consumer group so that its next run starts over: after
a change of its pipes, or to process the sources again.

Stop every replica first: reset refuses a group with members. A replica
stopped a moment ago stays a member until its session times out (static
membership, so that a restart within it costs no rebalance): reset waits
up to --wait for such members to expire. It deletes
the topics the job made for itself (repartition, merge and changelog
topics; the next run makes them again), sets the group's offsets on its
source topics to --from, and removes this machine's state directory for
the group. Other machines' state directories need no removing: a store
whose changelog was deleted is rebuilt when it is next restored.

Source and output topics are left alone: the next run writes its outputs
again, after those of earlier runs. --dry-run prints what reset would do.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			o := engine.ResetOptions{Brokers: splitList(brokers), StateDir: stateDir, DryRun: dryRun}
			switch from {
			case "earliest":
			case "latest":
				o.Latest = true
			default:
				t, err := time.Parse(time.RFC3339, from)
				if err != nil {
					return usageError{fmt.Errorf("--from: want earliest, latest or an RFC 3339 time such as 2026-11-01T00:00:00Z; got %q", from)}
				}
				o.From = t
			}
			t, err := g.load(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
			defer cancel()
			log, err := g.logger(slog.LevelWarn)
			if err != nil {
				return err
			}
			if o.ClientOpts, err = kf.connect(ctx, o.Brokers, log); err != nil {
				return err
			}
			if err := waitMembersGone(ctx, g, o, t.Group, memberWait); err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			rep, err := engine.Reset(ctx, t, o)
			if rep != nil {
				printReset(g, rep, from, dryRun)
			}
			if errors.Is(err, engine.ErrGroupActive) {
				err = fmt.Errorf("%w (waited %v: a replica stopped less than its --session-timeout ago is still a member, one that runs stays one)", err, memberWait)
			}
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			return nil
		},
	}
	c.Flags().StringVar(&brokers, "brokers", env("STREAMER_BROKERS", "127.0.0.1:9092"), "seed brokers, host:port,... (env STREAMER_BROKERS)")
	c.Flags().StringVar(&from, "from", "earliest", "where the group starts again in its source topics: earliest, latest, or the first record at or after an RFC 3339 time")
	c.Flags().StringVar(&stateDir, "state-dir", env("STREAMER_STATE_DIR", "streamer-state"), "this machine's state directory, as given to run (env STREAMER_STATE_DIR)")
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what reset would do, and do nothing")
	c.Flags().DurationVar(&memberWait, "wait", 15*time.Second, "how long to wait for the members of replicas just stopped to expire (their --session-timeout, 10s by default) before refusing")
	kf.register(c.Flags())
	return c
}

// printReset says what a reset did, or would do.
func printReset(g *globals, rep *engine.ResetReport, from string, dryRun bool) {
	verb := map[bool]string{false: "", true: "would be "}[dryRun]
	if len(rep.Offsets) > 0 {
		var parts []string
		for _, o := range rep.Offsets.Sorted() {
			parts = append(parts, fmt.Sprintf("%s[%d]@%d", o.Topic, o.Partition, o.At))
		}
		fmt.Fprintf(g.stdout, "group %s: offsets %sset to %s: %s\n", rep.Group, verb, from, strings.Join(parts, " "))
	}
	if len(rep.Deleted) > 0 {
		fmt.Fprintf(g.stdout, "topics %sdeleted: %s\n", verb, strings.Join(rep.Deleted, ", "))
	}
	if rep.StateDir != "" {
		fmt.Fprintf(g.stdout, "state directory %sremoved: %s\n", verb, rep.StateDir)
	}
}

// waitMembersGone waits up to wait for the group to have no members: the
// static members of replicas stopped a moment ago stay until their session
// times out. Replicas still running keep theirs, and Reset refuses them.
func waitMembersGone(ctx context.Context, g *globals, o engine.ResetOptions, group string, wait time.Duration) error {
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(o.Brokers...)}, o.ClientOpts...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	deadline := time.Now().Add(wait)
	said := false
	for {
		groups, err := adm.DescribeGroups(ctx, group)
		if err != nil {
			return fmt.Errorf("describing group %s: %w", group, err)
		}
		d, ok := groups[group]
		if !ok || d.Err != nil || len(d.Members) == 0 || time.Now().After(deadline) {
			return nil // Reset decides
		}
		if !said {
			fmt.Fprintf(g.stderr, "group %s has %d members; waiting up to %v for those of stopped replicas to expire\n", group, len(d.Members), wait.Round(time.Second))
			said = true
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}
