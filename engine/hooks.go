package engine

import "time"

// Hook is an observer of the engine: any value implementing one or more of
// the single-method interfaces below. The engine checks each hook for each
// interface once, at start, and calls only what it implements. Hooks are
// called from the processing goroutines: they must be fast and safe for
// concurrent use. Package metrics implements them all for Prometheus.
type Hook any

// PipeHook observes every batch a pipe processes.
type PipeHook interface {
	OnPipeBatch(PipeBatch)
}

// PipeBatch describes one Process call of one pipe.
type PipeBatch struct {
	Pipe string
	// In is the number of records handed to the pipe, Out the number it
	// emitted on all its outputs, Failed the number it reported failed.
	In, Out, Failed int
	// DeadLettered and Skipped split Failed by the pipe's on_error. Failed
	// records include those whose output failed to encode.
	DeadLettered, Skipped int
	Duration              time.Duration
}

// DecodeHook observes records of a source dataset that fail to decode:
// pipe is the first pipe reading it, whose on_error applies, and
// deadLettered says whether the record went to the dead-letter dataset.
type DecodeHook interface {
	OnDecodeError(dataset, pipe string, deadLettered bool)
}

// OutputHook observes every record produced to a sink, with its age: the
// time from the record's timestamp to now.
type OutputHook interface {
	OnOutput(dataset string, age time.Duration)
}

// TxnHook observes every transaction that ends.
type TxnHook interface {
	OnTxnEnd(TxnEnd)
}

// TxnEnd describes an ended transaction.
type TxnEnd struct {
	Committed bool
	// Duration is how long ending it took: flush, offset commit, EndTxn.
	Duration time.Duration
	// Records is the number of consumed records it covered.
	Records int64
}

// RebalanceHook observes changes to the replica's assignment.
type RebalanceHook interface {
	OnRebalance(Rebalance)
}

// Rebalance describes one change of assignment.
type Rebalance struct {
	Assigned, Revoked map[string][]int32
	// Lost is true when partitions were lost (session expired, fenced)
	// rather than revoked cleanly.
	Lost bool
}

// LagHook observes the consumer lag of a partition after each fetch, and
// its removal (lag -1) when the partition is no longer assigned.
type LagHook interface {
	OnLag(topic string, partition int32, lag int64)
}

// StateHook observes state stores: each restore when a task opens a
// store, and the stores' sizes, reported at most every 10 seconds.
type StateHook interface {
	OnStateRestored(StateRestore)
	OnStateSize(store string, partition int32, bytes int64)
}

// OpenTxnHook observes, every 15 s, the open transactions of every
// partition the replica reads (sources, internal topics, tables).
type OpenTxnHook interface {
	OnOpenTxn(OpenTxn)
}

// OpenTxn describes the open transactions of one partition.
type OpenTxn struct {
	Topic     string
	Partition int32
	// Records lie between the partition's last stable offset and its high
	// watermark: records of open transactions, which read_committed
	// readers (this job included) cannot see yet.
	Records int64
	// Age is how long the last stable offset has stood still with records
	// above it, 0 when there are none. Longer than the transaction
	// timeout, a transaction hangs (a paused producer, a zombie not yet
	// fenced); consumer lag, measured to the last stable offset, does not
	// show it.
	Age time.Duration
}

// TableHook observes how fresh each open table partition is: when the
// replica opens it (caught up, as far as anyone waits for it), each time a
// poll's records start or stop waiting for it to catch up, and when the
// replica closes it. See TableFreshness for what an idle stream reports.
type TableHook interface {
	OnTableFreshness(TableFreshness)
}

// TableFreshness describes one table partition's freshness.
type TableFreshness struct {
	Table     string
	Partition int32
	// BehindSince is zero while no records wait for the partition: it was
	// caught up to its topic's last stable offset at the last catch-up that
	// records needed (each poll with records that join it, and the load
	// on assignment). Otherwise records wait for it (a catch-up ran out of
	// its budget, or Kafka is away, and the engine pauses and retries),
	// and it is when the partition was last caught up, or opened if never:
	// the staleness is now minus it. A stream with no records makes no
	// catch-up, so an idle stream reports the state of its last one (zero,
	// usually): its table falls behind unseen, and is caught up before
	// the next record that needs it is processed.
	BehindSince time.Time
	// Closed: the replica closed the partition; it reports nothing more
	// until it opens it again.
	Closed bool
}

// PauseHook is told when a dependency (a model server, the schema
// registry) is unavailable: the engine aborted the transaction and waits
// before processing the same records again.
type PauseHook interface {
	OnPause(Pause)
}

// Pause describes one such wait.
type Pause struct {
	Err  error
	Wait time.Duration
}

// PurgeHook observes each deletion of the consumed records of repartition
// and merge topics (Options.PurgeInterval) when it ends. The topics keep
// their records until purged, so deletions that keep failing (the replica
// may lack the right to delete records) let them grow without bound.
type PurgeHook interface {
	OnPurge(Purge)
}

// Purge describes one deletion.
type Purge struct {
	// Partitions is the number of internal topic partitions it covered.
	Partitions int
	// Err is why it failed, nil when it succeeded.
	Err      error
	Duration time.Duration
}

// StateRestore describes one store's restore from its changelog.
type StateRestore struct {
	Store     string
	Partition int32
	// Records applied from the changelog, and how long it took.
	Records  int
	Duration time.Duration
}

// hooks holds the hooks sorted by interface.
type hooks struct {
	pipe      []PipeHook
	decode    []DecodeHook
	output    []OutputHook
	txn       []TxnHook
	rebalance []RebalanceHook
	lag       []LagHook
	openTxn   []OpenTxnHook
	state     []StateHook
	pause     []PauseHook
	purge     []PurgeHook
	table     []TableHook
	tableSkip []TableSkipHook
}

func sortHooks(hs []Hook) *hooks {
	out := &hooks{}
	for _, h := range hs {
		if x, ok := h.(PipeHook); ok {
			out.pipe = append(out.pipe, x)
		}
		if x, ok := h.(DecodeHook); ok {
			out.decode = append(out.decode, x)
		}
		if x, ok := h.(OutputHook); ok {
			out.output = append(out.output, x)
		}
		if x, ok := h.(TxnHook); ok {
			out.txn = append(out.txn, x)
		}
		if x, ok := h.(RebalanceHook); ok {
			out.rebalance = append(out.rebalance, x)
		}
		if x, ok := h.(LagHook); ok {
			out.lag = append(out.lag, x)
		}
		if x, ok := h.(OpenTxnHook); ok {
			out.openTxn = append(out.openTxn, x)
		}
		if x, ok := h.(StateHook); ok {
			out.state = append(out.state, x)
		}
		if x, ok := h.(PauseHook); ok {
			out.pause = append(out.pause, x)
		}
		if x, ok := h.(PurgeHook); ok {
			out.purge = append(out.purge, x)
		}
		if x, ok := h.(TableHook); ok {
			out.table = append(out.table, x)
		}
		if x, ok := h.(TableSkipHook); ok {
			out.tableSkip = append(out.tableSkip, x)
		}
	}
	return out
}
