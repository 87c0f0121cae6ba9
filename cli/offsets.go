package cli

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/streamerio/streamer/engine"
)

func offsetsCmd(g *globals) *cobra.Command {
	c := &cobra.Command{
		Use:   "offsets",
		Short: "Show or move the consumer group's offsets on its source topics",
	}
	c.AddCommand(offsetsShowCmd(g), offsetsResetCmd(g))
	return c
}

// cmdContext is the context of a one-off command: canceled by SIGINT or
// SIGTERM, and after timeout.
func cmdContext(timeout time.Duration) (context.Context, func()) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	return ctx, func() { cancel(); stop() }
}

func offsetsShowCmd(g *globals) *cobra.Command {
	var brokers string
	var kf kafkaFlags
	c := &cobra.Command{
		Use:   "show FILE",
		Short: "Per source partition: the group's committed offset, the end offset, the lag and the time of the next record",
		Long: `Show where a topology's consumer group stands in each partition of its
source topics: the committed offset (the next record it reads; - when it has
none), the end offset, the lag (offsets still to read, transaction markers
included) and the timestamp of the record at the committed offset, which says
how far in time the group has come.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			t, err := g.load(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := cmdContext(time.Minute)
			defer cancel()
			log, err := g.logger(slog.LevelWarn)
			if err != nil {
				return err
			}
			bs := splitList(brokers)
			opts, err := kf.connect(ctx, bs, log)
			if err != nil {
				return err
			}
			offs, err := engine.ShowOffsets(ctx, t, bs, opts)
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			fmt.Fprintf(g.stdout, "group %s\n", t.Group)
			w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(w, "TOPIC\tPARTITION\tCOMMITTED\tEND\tLAG\tNEXT RECORD TIME")
			for _, o := range offs {
				committed, next := "-", "-"
				if o.Committed >= 0 {
					committed = fmt.Sprint(o.Committed)
				}
				if !o.Next.IsZero() {
					next = o.Next.UTC().Format(time.RFC3339Nano)
				}
				fmt.Fprintf(w, "%s\t%d\t%s\t%d\t%d\t%s\n", o.Topic, o.Partition, committed, o.End, o.Lag, next)
			}
			return w.Flush()
		},
	}
	brokersFlag(c, &brokers)
	kf.register(c.Flags())
	return c
}

func offsetsResetCmd(g *globals) *cobra.Command {
	var brokers, to string
	var execute bool
	var memberWait time.Duration
	var kf kafkaFlags
	c := &cobra.Command{
		Use:   "reset FILE --to POSITION",
		Short: "Move the group's offsets on its source topics (a dry run unless --execute)",
		Long: `Move a topology's consumer group to another position in its source topics,
keeping its state, internal topics and state directories (unlike 'streamer
reset', which starts over from empty state).

POSITION is earliest, latest (or now), an RFC 3339 time (the first record at
or after it), a duration ago such as 24h, or a list
topic:partition:offset,... (partitions not listed keep their offsets).

Without --execute it prints the moves and changes nothing. With it, every
replica must be stopped: the group coordinator refuses the new offsets while
the group has members. A replica stopped a moment ago stays a member until
its session times out (static membership): it waits up to --wait for such
members to expire.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, err := engine.ParseTarget(to, time.Now())
			if err != nil {
				return usageError{fmt.Errorf("--to: %w", err)}
			}
			t, err := g.load(args[0])
			if err != nil {
				return err
			}
			ctx, cancel := cmdContext(time.Minute)
			defer cancel()
			log, err := g.logger(slog.LevelWarn)
			if err != nil {
				return err
			}
			o := engine.OffsetsResetOptions{Brokers: splitList(brokers), To: target, Execute: execute}
			if o.ClientOpts, err = kf.connect(ctx, o.Brokers, log); err != nil {
				return err
			}
			if execute {
				// As reset: a replica stopped a moment ago stays a member
				// (static membership) until its session times out.
				if err := waitMembersGone(ctx, g, engine.ResetOptions{Brokers: o.Brokers, ClientOpts: o.ClientOpts}, t.Group, memberWait); err != nil {
					return &exitError{code: ExitFailure, err: err}
				}
			}
			rep, err := engine.ResetOffsets(ctx, t, o)
			if rep != nil {
				verb := "would move"
				if rep.Executed {
					verb = "moved"
				}
				fmt.Fprintf(g.stdout, "group %s: offsets %s to %s\n", rep.Group, verb, to)
				w := tabwriter.NewWriter(g.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(w, "TOPIC\tPARTITION\tFROM\tTO")
				for _, ch := range rep.Changes {
					from := "-"
					if ch.From >= 0 {
						from = fmt.Sprint(ch.From)
					}
					fmt.Fprintf(w, "%s\t%d\t%s\t%d\n", ch.Topic, ch.Partition, from, ch.To)
				}
				w.Flush()
				if !execute {
					if rep.Members > 0 {
						fmt.Fprintf(g.stdout, "%d replicas are running: stop them before --execute\n", rep.Members)
					}
					fmt.Fprintln(g.stdout, "dry run: nothing changed; add --execute to move the offsets")
				}
			}
			if err != nil {
				return &exitError{code: ExitFailure, err: err}
			}
			return nil
		},
	}
	brokersFlag(c, &brokers)
	kf.register(c.Flags())
	c.Flags().StringVar(&to, "to", "", "where the group is to start: earliest, latest, now, an RFC 3339 time, a duration ago (24h), or topic:partition:offset,...")
	c.Flags().BoolVar(&execute, "execute", false, "commit the new offsets (default: print them only)")
	c.Flags().DurationVar(&memberWait, "wait", 15*time.Second, "with --execute, how long to wait for the members of replicas just stopped to expire (their --session-timeout, 10s by default) before refusing")
	_ = c.MarkFlagRequired("to")
	return c
}

// brokersFlag adds --brokers as run and reset have it; kafkaFlags adds the
// client settings (TLS, SASL) next to it.
func brokersFlag(c *cobra.Command, brokers *string) {
	c.Flags().StringVar(brokers, "brokers", env("STREAMER_BROKERS", "127.0.0.1:9092"), "seed brokers, host:port,... (env STREAMER_BROKERS)")
}
