package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/console"
	"github.com/streamerio/streamer/internal/tuning"
	"github.com/streamerio/streamer/metrics"
)

func runCmd(g *globals) *cobra.Command {
	var brokers, replica, metricsAddr, stateDir, gcHeadroom string
	var commit, txnTimeout, sessionTimeout time.Duration
	var purge string
	var bulkOffsets int64
	var kf kafkaFlags
	var hf httpFlags
	c := &cobra.Command{
		Use:   "run FILE",
		Short: "Join the consumer group as one replica and process exactly once",
		Long: `Run a topology as one replica of its consumer group. Start N copies (on
one machine or many) and they split the source partitions among themselves.
Connection settings for a secured cluster (TLS, SASL) come from
--kafka-config, flags and STREAMER_* variables: see docs/SECURITY.md.

Outputs and consumed offsets commit together in Kafka transactions, every
--commit-interval. Each replica needs its own --replica-id (default: the
hostname, the pod name in a StatefulSet). It is the replica's group instance
id: a replica restarted within --session-timeout gets its partitions back
without a rebalance, and fences its predecessor's open transaction at once.
Two live replicas with one id fence each other: the one fenced stops with an
error saying so.

On SIGTERM or SIGINT the replica commits its open transaction and exits 0,
within 10 seconds. It does not leave the group (static membership): its
partitions wait for it to come back, for --session-timeout, and then move.

Unless GOGC is set, run uses GOGC=400 (see bench/RESULTS.md), lowered after
each collection as needed so that the heap grows at most --gc-headroom above
what is live. Unless GOMEMLIMIT is set, in a container with a memory limit,
run keeps Go's memory limit at 90% of it, less what Pebble holds outside the
Go heap.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// First, so that a SIGTERM during start-up stops the replica
			// cleanly too, rather than killing it.
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			// On a terminal, state restores show as a progress bar, and
			// log lines go through it so that they do not mix.
			var bar *restoreBar
			if g.logFormat == "text" && isTerminal(g.stderr) {
				bar = newRestoreBar(g.stderr)
				g.stderr = bar
			}
			log, err := g.logger(slog.LevelInfo)
			if err != nil {
				return err
			}
			purgeEvery := time.Duration(-1)
			if purge != "off" {
				if purgeEvery, err = time.ParseDuration(purge); err != nil || purgeEvery <= 0 {
					return usageError{fmt.Errorf("--purge-interval: want a positive duration such as 30s, or off; got %q", purge)}
				}
			}
			headroom, err := tuning.ParseSize(gcHeadroom)
			if err != nil {
				return usageError{fmt.Errorf("--gc-headroom: %w", err)}
			}
			t, err := g.load(args[0])
			if err != nil {
				return err
			}
			// Encrypted datasets: a KMS that does not answer stops the
			// start, clearly; later outages pause the replica instead.
			kctx, kcancel := context.WithTimeout(ctx, 30*time.Second)
			err = t.StartEncryption(kctx)
			kcancel()
			if err != nil {
				return fmt.Errorf("encryption: %w", err)
			}
			if replica == "" {
				replica = engine.DefaultReplicaID()
			}
			bs := splitList(brokers)
			kc, clientOpts, err := kf.options(log)
			if err != nil {
				return err
			}
			// Static membership: the replica id is the group instance id,
			// so that a replica back under its id within the session
			// timeout gets its partitions again, with no rebalance. (The
			// engine's other clients are not group members: it is a no-op
			// there.)
			clientOpts = append(clientOpts, kgo.InstanceID(replica))
			m := metrics.New(t, replica, version())
			stats := engine.NewStats()
			var ready func() bool
			page := console.New(t, replica, stats, func() bool { return ready() })
			hooks := []engine.Hook{m, page}
			if bar != nil {
				hooks = append(hooks, bar)
			}
			faults, err := faultsFromEnv(log)
			if err != nil {
				return usageError{err}
			}
			// A replica fenced by another with its id stops: retrying
			// would only fence the other in turn.
			ctx, cancelRun := context.WithCancel(ctx)
			defer cancelRun()
			fence := &fenceHook{cancel: cancelRun}
			opts := engine.Options{
				Faults:             faults,
				Brokers:            bs,
				ReplicaID:          replica,
				CommitInterval:     commit,
				TransactionTimeout: txnTimeout,
				SessionTimeout:     sessionTimeout,
				ClientOpts:         clientOpts,
				PurgeInterval:      purgeEvery,
				BulkRestoreOffsets: bulkOffsets,
				Logger:             log,
				StateDir:           stateDir,
				Hooks:              hooks,
				Stats:              stats,
				ClientHooks:        []kgo.Hook{m.ClientHook(), fence},
			}
			e, err := engine.New(t, opts)
			if err != nil {
				return usageError{err}
			}
			if err := lockState(e); err != nil {
				return err
			}
			if err := kf.check(ctx, bs, kc, clientOpts); err != nil {
				if ctx.Err() != nil {
					return nil // stopped while connecting
				}
				return err
			}
			cur := &currentEngine{}
			cur.set(e)
			ready = cur.Ready
			m.SetReadiness(cur.Ready)
			if metricsAddr != "" && metricsAddr != "off" {
				ops, err := serveOps(metricsAddr, hf, m.Handler(), cur, page, log)
				var ue usageError
				if errors.As(err, &ue) {
					return err
				}
				if err != nil {
					return &exitError{code: ExitFailure, err: err}
				}
				defer func() {
					if err := ops.stop(); err != nil {
						log.Warn("stopping the metrics server", "err", err)
					}
				}()
			}
			gogc := tuning.GC()
			_, tuned := tuning.TuneGC(ctx, headroom, log)
			log.Debug("runtime", "gogc", gogc, "tuning", tuned)
			err = runRejoining(ctx, e, func() (*engine.Engine, error) {
				e, err := engine.New(t, opts)
				if err != nil {
					return nil, err
				}
				if err := lockState(e); err != nil {
					return nil, err
				}
				cur.set(e)
				return e, nil
			}, log)
			if ferr := fence.fenced(); ferr != nil {
				err = errors.Join(ferr, err)
			}
			if err != nil {
				return &exitError{code: ExitFailure, err: explainRunErr(err, replica)}
			}
			return nil
		},
	}
	c.Flags().StringVar(&brokers, "brokers", env("STREAMER_BROKERS", "127.0.0.1:9092"), "seed brokers, host:port,... (env STREAMER_BROKERS)")
	c.Flags().StringVar(&replica, "replica-id", env("STREAMER_REPLICA_ID", ""), "this replica's stable id, its group instance id (static membership) and the suffix of its transactional id; two live replicas must not share one (env STREAMER_REPLICA_ID; default the hostname, which is the pod name in a StatefulSet)")
	c.Flags().DurationVar(&commit, "commit-interval", envDuration("STREAMER_COMMIT_INTERVAL", 0), "longest a transaction stays open (env STREAMER_COMMIT_INTERVAL; default the topology's, 100ms)")
	c.Flags().DurationVar(&txnTimeout, "transaction-timeout", envDuration("STREAMER_TRANSACTION_TIMEOUT", 0), "broker-side timeout of an open transaction; above --session-timeout (env STREAMER_TRANSACTION_TIMEOUT; default --session-timeout + 10s)")
	c.Flags().DurationVar(&sessionTimeout, "session-timeout", envDuration("STREAMER_SESSION_TIMEOUT", 0), "how long the group waits for a silent replica before moving its partitions; a replica restarted within it gets its partitions back without a rebalance (env STREAMER_SESSION_TIMEOUT; default 10s; the broker bounds it with group.min/max.session.timeout.ms)")
	c.Flags().Int64Var(&bulkOffsets, "bulk-restore-offsets", 100_000, "a store at least this many changelog offsets behind is restored in bulk mode (no write-ahead log, one compaction at the end)")
	c.Flags().StringVar(&purge, "purge-interval", env("STREAMER_PURGE_INTERVAL", "30s"), "how often to delete the records of repartition and merge topics that the group has committed; off keeps them all (the topics have retention.ms -1) (env STREAMER_PURGE_INTERVAL)")
	c.Flags().StringVar(&stateDir, "state-dir", env("STREAMER_STATE_DIR", "streamer-state"), "where stateful pipes keep local stores; one per replica (env STREAMER_STATE_DIR)")
	c.Flags().StringVar(&gcHeadroom, "gc-headroom", env(tuning.HeadroomEnv, tuning.FormatSize(tuning.DefaultHeadroom)), "how far the heap may grow above the live heap before a collection, e.g. 192MiB: less uses less memory and more CPU; off leaves GOGC alone (env "+tuning.HeadroomEnv+"; ignored when GOGC is set)")
	c.Flags().StringVar(&metricsAddr, "metrics-addr", env("STREAMER_METRICS_ADDR", ":9464"), "serve the topology page (/), /metrics, /healthz and /readyz here; off disables (env STREAMER_METRICS_ADDR)")
	kf.register(c.Flags())
	hf.register(c.Flags())
	return c
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func envDuration(name string, def time.Duration) time.Duration {
	v := env(name, "")
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "streamer: ignoring %s=%q: %v\n", name, v, err)
		return def
	}
	return d
}

// explainRunErr says what a fencing error means for the operator: another
// live replica took this replica's id.
// lockState takes the engine's lock of the group's state directory before
// the connection check and the ops server, so that a second replica of the
// topology on this machine (by default both use ./streamer-state and the
// hostname as replica id) is refused at start with the flags to set,
// rather than fencing the first. Topologies of other groups share a state
// directory freely.
func lockState(e *engine.Engine) error {
	err := e.LockStateDir()
	if errors.Is(err, engine.ErrStateDirInUse) {
		err = fmt.Errorf("%w; give each replica on one machine its own --state-dir, --replica-id and --metrics-addr (env STREAMER_STATE_DIR, STREAMER_REPLICA_ID, STREAMER_METRICS_ADDR)", err)
	}
	if err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	return nil
}

func explainRunErr(err error, replica string) error {
	switch {
	case errors.Is(err, kerr.FencedInstanceID):
		return fmt.Errorf("another replica joined the group with this replica's id %q, and the broker fenced this one (FENCED_INSTANCE_ID): every live replica needs its own --replica-id (env STREAMER_REPLICA_ID; the default is the hostname, so two replicas on one machine need one each): %w", replica, err)
	case errors.Is(err, kerr.ProducerFenced), errors.Is(err, kerr.InvalidProducerEpoch):
		return fmt.Errorf("another replica started with this replica's id %q and fenced this one's transactions: every live replica needs its own --replica-id (env STREAMER_REPLICA_ID): %w", replica, err)
	}
	return err
}

// fenceHook stops the replica when the broker fences its group membership
// because another live replica joined with the same instance id.
type fenceHook struct {
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error
}

var _ kgo.HookGroupManageError = (*fenceHook)(nil)

func (h *fenceHook) OnGroupManageError(err error) {
	if !errors.Is(err, kerr.FencedInstanceID) {
		return
	}
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.mu.Unlock()
	h.cancel()
}

func (h *fenceHook) fenced() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err
}
