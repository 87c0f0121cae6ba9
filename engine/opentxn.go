package engine

import (
	"context"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// txnWatcher finds hanging transactions on the topics the replica reads
// (sources, internal topics, tables). Every interval it lists each
// partition's high watermark and last stable offset; records between them
// belong to open transactions. A partition whose last stable offset has not
// moved while records wait above it has a transaction that hangs: a paused
// producer, or a zombie not yet fenced. Consumer lag, measured to the last
// stable offset, cannot show it, and a stuck partition returns no records
// to the poll, so it is asked for, not inferred from fetches.
//
// It runs on its own goroutine, from start until its context ends.
type txnWatcher struct {
	adm      *kadm.Client
	topics   []string
	interval time.Duration
	hooks    []OpenTxnHook
	last     map[partitionKey]openTxn // owned by run
}

// openTxn is what is known of one partition's open transactions.
type openTxn struct {
	stable int64     // the last stable offset last seen
	since  time.Time // since when it has not moved with records above it
}

func (w *txnWatcher) run(ctx context.Context) {
	if len(w.hooks) == 0 || len(w.topics) == 0 {
		return
	}
	w.last = map[partitionKey]openTxn{}
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		w.check(ctx, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *txnWatcher) check(ctx context.Context, now time.Time) {
	lctx, cancel := context.WithTimeout(ctx, w.interval)
	defer cancel()
	high, err := w.adm.ListEndOffsets(lctx, w.topics...)
	if err != nil {
		return // the next round asks again; the loop reports broker trouble
	}
	stable, err := w.adm.ListCommittedOffsets(lctx, w.topics...)
	if err != nil {
		return
	}
	high.Each(func(h kadm.ListedOffset) {
		s, ok := stable.Lookup(h.Topic, h.Partition)
		if h.Err != nil || !ok || s.Err != nil {
			return
		}
		k := partitionKey{h.Topic, h.Partition}
		open := max(0, h.Offset-s.Offset)
		prev, seen := w.last[k]
		cur := openTxn{stable: s.Offset, since: now}
		if open > 0 && seen && prev.stable == s.Offset {
			cur.since = prev.since
		}
		w.last[k] = cur
		age := time.Duration(0)
		if open > 0 {
			age = now.Sub(cur.since)
		}
		for _, hk := range w.hooks {
			hk.OnOpenTxn(OpenTxn{Topic: h.Topic, Partition: h.Partition, Records: open, Age: age})
		}
	})
}
