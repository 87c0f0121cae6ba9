package engine

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// txn is the replica's Kafka transaction, one at a time: begun by the first
// records of a poll, it spans polls until it is due, then ends (commit or
// abort) and settles the local stores. It is owned by the loop goroutine:
// no method may be called concurrently with another.
//
// The phases, each reported to Options.Faults:
//
//	begin ─► process polls (records produced) ─► end: flush ─[after-produce]─►
//	TxnOffsetCommit ─[after-offsets]─► EndTxn ─[after-endtxn]─► settle stores
//
// Local stores commit only after EndTxn committed, so they are never ahead
// of Kafka; a crash between EndTxn and settle is repaired by the restore.
type txn struct {
	e    *Engine
	sess *kgo.GroupTransactSession
	log  *slog.Logger

	open    bool
	start   time.Time
	records int64 // consumed records the open transaction covers
	// caughtUp is set when the last poll found nothing more to read
	// (polled): the transaction may then end at MinCommitInterval.
	caughtUp bool
}

// begin opens a transaction unless one is open.
func (t *txn) begin() error {
	if t.open {
		return nil
	}
	if err := t.sess.Begin(); err != nil {
		return fmt.Errorf("engine: beginning transaction: %w", err)
	}
	t.open, t.start, t.caughtUp = true, time.Now(), false
	return nil
}

// add counts n consumed records into the open transaction.
func (t *txn) add(n int) { t.records += int64(n) }

// polled records what a poll of n records found, with max the most a
// poll takes and buffered the records the client holds besides. n is what
// the poll returned, before a bounded run's filter (Engine.take): a poll
// short of max with nothing buffered means the replica has read all there
// was (it is caught up with its inputs), and waiting for more before
// committing would only delay what is already processed.
func (t *txn) polled(n, max int, buffered int64) { t.caughtUp = n < max && buffered == 0 }

// age is how long the open transaction may stay open: CommitInterval,
// or MinCommitInterval while the replica is caught up.
func (t *txn) age() time.Duration {
	if t.caughtUp {
		return min(t.e.opts.MinCommitInterval, t.e.opts.CommitInterval)
	}
	return t.e.opts.CommitInterval
}

// due reports whether the open transaction has reached its commit
// interval, or its minimum one while the replica is caught up.
func (t *txn) due() bool { return t.open && time.Since(t.start) >= t.age() }

// pollDeadline is when a poll must return for the open transaction to end
// on time; ok is false with no transaction open.
func (t *txn) pollDeadline() (deadline time.Time, ok bool) {
	return t.start.Add(t.age()), t.open
}

// budget returns a context for work inside the open transaction (running a
// poll's records through the pipes, syncing tables): it ends well before
// the broker would time the transaction out, leaving the rest of the
// transaction timeout to end it. The run's cancellation does not reach it:
// once polled, a record is processed or the transaction aborts.
func (t *txn) budget(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithDeadline(context.WithoutCancel(ctx), t.start.Add(t.e.opts.TransactionTimeout/2))
}

// endBudget returns a context for ending the open transaction: the time
// left before the broker times it out, and at most limit. The run's
// cancellation (SIGTERM) does not cut it short at once, since a commit
// under way should finish, but leaves it Options.ShutdownTimeout from
// then: with the brokers down, a flush could otherwise wait out the whole
// transaction timeout after a SIGTERM.
func (t *txn) endBudget(ctx context.Context, limit time.Duration) (context.Context, context.CancelFunc) {
	deadline := time.Now().Add(limit)
	if t.open {
		deadline = minTime(deadline, t.start.Add(t.e.opts.TransactionTimeout))
	}
	ectx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	stop := context.AfterFunc(ctx, func() { time.AfterFunc(t.e.opts.ShutdownTimeout, cancel) })
	return ectx, func() { stop(); cancel() }
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// finish ends the open transaction, trying to commit or aborting, then
// settles the stores and the purge bookkeeping. A produce error turns a
// commit into an abort and is returned after it. It is a no-op with no
// transaction open.
func (t *txn) finish(ctx context.Context, try kgo.TransactionEndTry) error {
	if !t.open {
		return nil
	}
	e := t.e
	endStart := time.Now()
	if try == kgo.TryCommit {
		// Flush first so a failed produce turns the commit into an abort.
		if err := t.sess.Client().Flush(ctx); err != nil {
			t.open = false
			return outage(fmt.Errorf("engine: the brokers did not take the transaction's records in time (within the transaction timeout %v, or the shutdown timeout %v after a stop signal); the transaction is left to the broker to abort: %w", e.opts.TransactionTimeout, e.opts.ShutdownTimeout, err))
		}
		if p := e.produceErr.Load(); p != nil {
			try = kgo.TryAbort
		} else {
			e.opts.reach(PhaseAfterProduce)
		}
	}
	committed, err := t.sess.End(ctx, try)
	t.open = false
	if err != nil {
		return outage(fmt.Errorf("engine: ending transaction: %w", err))
	}
	if committed {
		e.opts.reach(PhaseAfterEndTxn)
	}
	for _, h := range e.hooks.txn {
		h.OnTxnEnd(TxnEnd{Committed: committed, Duration: time.Since(endStart), Records: t.records})
	}
	e.purge.ended(committed)
	e.bounds.ended(committed, t.sess.Client())
	if err := e.settleState(committed); err != nil {
		return err
	}
	stats := e.opts.Stats
	if committed {
		stats.Commits.Add(1)
		stats.CommittedIn.Add(t.records)
	} else {
		stats.Aborts.Add(1)
		t.log.Info("transaction aborted; resuming from the committed offsets", "records", t.records)
	}
	t.records = 0
	if p := e.produceErr.Swap(nil); p != nil {
		return fmt.Errorf("engine: producing failed, transaction aborted: %w", *p)
	}
	return nil
}
