package engine

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Options configures an Engine. The zero value of every field but Brokers is
// a working default.
type Options struct {
	// Brokers are the seed brokers, host:port. Required.
	Brokers []string

	// ReplicaID names this replica; the transactional id is
	// <group>-<ReplicaID>. Every live replica needs a distinct id, and a
	// restarted replica should reuse its old one so that its predecessor's
	// open transaction is fenced at once instead of timing out. streamer
	// run also makes it the group instance id (static membership,
	// kgo.InstanceID in ClientOpts). In Kubernetes a StatefulSet pod name
	// is a good choice. Default: the hostname.
	ReplicaID string

	// CommitInterval bounds how long a transaction stays open.
	// Default: the topology's processing.commit_interval (100ms).
	CommitInterval time.Duration

	// MinCommitInterval is how long a transaction stays open at least
	// when the replica has caught up with its inputs (a poll returned
	// less than max_poll_records and the client holds nothing more): it
	// then commits without waiting for CommitInterval, so that at low
	// load outputs are readable sooner; under a backlog polls are full
	// and transactions last CommitInterval. It caps the commits of an
	// idle-ish replica at 1/MinCommitInterval a second. Equal to
	// CommitInterval or more: commit only at CommitInterval. Default:
	// the topology's processing.min_commit_interval (20ms).
	MinCommitInterval time.Duration

	// TransactionTimeout is how long the broker lets a transaction stay
	// open before aborting it; it bounds how long a crashed replica's
	// transaction can block readers, until the replica restarts under its
	// id and fences it. It must exceed SessionTimeout: a commit can wait
	// for a rebalance, which waits for a crashed replica's session to
	// expire; were the transaction timed out meanwhile, the replica would
	// fail instead of aborting and going on. Default: SessionTimeout +
	// 10s (20s).
	TransactionTimeout time.Duration

	// SessionTimeout is how long the group waits for a silent replica
	// before moving its partitions. Default: 10s.
	SessionTimeout time.Duration

	// ShutdownTimeout bounds the final commit and group leave after the
	// context is canceled. Default: 5s.
	ShutdownTimeout time.Duration

	// RetryBackoff is the first wait after a batch failed because a
	// dependency was unavailable (pipes.ErrUnavailable); the transaction
	// is aborted and the records are processed again after the wait, which
	// doubles up to MaxRetryBackoff and resets on the next commit.
	// Defaults: 250ms and 10s.
	RetryBackoff, MaxRetryBackoff time.Duration

	// PurgeInterval is how often the replica deletes the records of the
	// topics the compiler inserted (repartition and merge topics) below
	// the offsets it has committed for them: only the job reads them, and
	// each holds a copy of what flows through it. Default: 30s. Negative:
	// never. The engine makes the topics with retention.ms -1, so that no
	// record is deleted before the job has read it: without the purge they
	// keep every record until they are deleted.
	PurgeInterval time.Duration

	// Logger receives the engine's logs. Default: slog.Default().
	Logger *slog.Logger

	// Stats, when set, is updated as the engine runs; the demo's live line
	// and the metrics read it. Default: a fresh Stats, see Engine.Stats.
	Stats *Stats

	// StateDir is where stateful pipes keep their local stores:
	// <StateDir>/<group>/<store>/<partition>. Give each replica its own.
	// Default: ./streamer-state.
	StateDir string

	// Hooks observe the engine: pipes, outputs, transactions, rebalances
	// and lag (see Hook). Package metrics provides Prometheus hooks.
	Hooks []Hook

	// ClientHooks are franz-go hooks, such as kprom's metrics, attached to
	// the replica's main client only (not to the short-lived admin and
	// restore clients, which would register their metrics twice).
	ClientHooks []kgo.Hook

	// ClientOpts are appended to the options of every Kafka client, for TLS, SASL or
	// client metrics (kprom). They must not change the group, topics,
	// transactional id or isolation level.
	ClientOpts []kgo.Opt

	// LivenessTimeout is how long the processing loop may stay busy with
	// one poll's records or one commit before Live reports it stuck
	// (/healthz fails). Default: 2 × TransactionTimeout (40s).
	LivenessTimeout time.Duration

	// StateCleanupDelay is how long a store directory under
	// <StateDir>/<group> that this replica does not use (its partition
	// went to another replica, or an earlier run left it) is kept before
	// it is deleted, as Kafka Streams' state.cleanup.delay.ms. Default:
	// 10m. Negative: never.
	StateCleanupDelay time.Duration

	// BulkRestoreOffsets is how far behind its changelog a store must be
	// to be restored in bulk mode (no write-ahead log, larger memtables,
	// one compaction at the end). Below it, reopening the store costs more
	// than the log it saves. Default: 100,000 offsets.
	BulkRestoreOffsets int64

	// StateSync makes every commit of a local store wait for the disk.
	// Default false: a commit returns once Pebble has its batch, and the
	// changelog is the source of truth. A crash (of the process: Pebble
	// buffers small log writes; or of the machine) may lose the last
	// commits, checkpoint and all, so the store reopens as a prefix of its
	// commits at that prefix's checkpoint (state's
	// TestNoSyncCrashKeepsAConsistentPrefix), and the restore reads on
	// from the changelog. The fault-injection tests (docs/RELIABILITY.md)
	// run with it off. A synced commit of 1 key costs 0.35-0.64 ms per
	// store, an unsynced one 3.5-7.8 µs (bench/RESULTS.md).
	StateSync bool

	// Bounds, when set, make the run bounded (a backfill): each source
	// partition is processed from the group's committed offset up to its
	// end in Bounds, and Run returns nil once every replica of the group
	// has committed everything (engine/bounded.go; Engine.Finished says
	// so). Default: nil, an unbounded run.
	Bounds *Bounds

	// Faults, when set, is told each time the engine reaches a phase
	// that exactly-once depends on (see Phase): the seam of the fault
	// injection tests and of STREAMER_FAULT. Default: nil.
	Faults Faults
}

// DefaultReplicaID is the replica id used when none is given: the
// hostname, which in a StatefulSet is the pod name, stable across
// restarts (a pid is not, and every restart would then cost a rebalance
// and leave the predecessor's transaction to time out).
func DefaultReplicaID() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		return "replica"
	}
	return host
}

func (o *Options) setDefaults(commitInterval time.Duration) error {
	var errs []error
	if len(o.Brokers) == 0 {
		errs = append(errs, errors.New("engine: no brokers given"))
	}
	if o.ReplicaID == "" {
		o.ReplicaID = DefaultReplicaID()
	}
	if o.CommitInterval == 0 {
		o.CommitInterval = commitInterval
	}
	if o.CommitInterval <= 0 {
		errs = append(errs, fmt.Errorf("engine: commit interval must be positive, got %v", o.CommitInterval))
	}
	if o.MinCommitInterval == 0 {
		o.MinCommitInterval = 20 * time.Millisecond
	}
	if o.MinCommitInterval < 0 {
		errs = append(errs, fmt.Errorf("engine: minimum commit interval must be positive, got %v", o.MinCommitInterval))
	}
	if o.SessionTimeout == 0 {
		o.SessionTimeout = 10 * time.Second
	}
	if o.TransactionTimeout == 0 {
		o.TransactionTimeout = o.SessionTimeout + 10*time.Second
	}
	if o.TransactionTimeout <= o.CommitInterval {
		errs = append(errs, fmt.Errorf("engine: transaction timeout %v must exceed the commit interval %v", o.TransactionTimeout, o.CommitInterval))
	}
	if o.TransactionTimeout <= o.SessionTimeout {
		errs = append(errs, fmt.Errorf("engine: transaction timeout %v must exceed the session timeout %v: a commit may wait for a rebalance that waits for a crashed replica's session to expire", o.TransactionTimeout, o.SessionTimeout))
	}
	if o.BulkRestoreOffsets <= 0 {
		o.BulkRestoreOffsets = 100_000
	}
	if o.LivenessTimeout <= 0 {
		o.LivenessTimeout = 2 * o.TransactionTimeout
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 5 * time.Second
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 250 * time.Millisecond
	}
	if o.MaxRetryBackoff < o.RetryBackoff {
		o.MaxRetryBackoff = max(o.RetryBackoff, 10*time.Second)
	}
	if o.PurgeInterval == 0 {
		o.PurgeInterval = 30 * time.Second
	}
	if o.StateCleanupDelay == 0 {
		o.StateCleanupDelay = 10 * time.Minute
	}
	if o.StateDir == "" {
		o.StateDir = "streamer-state"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Stats == nil {
		o.Stats = NewStats()
	}
	return errors.Join(errs...)
}
