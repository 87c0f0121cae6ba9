package engine

import "time"

// Table freshness (TableHook): each catch-up that records need (tableSyncer.
// catchUp, from a poll's sync or a load on assignment) ends by noting, per
// table partition, whether it reached its topic's last stable offset. The
// hooks hear of a partition when it opens, when records start or stop
// waiting for it, and when it closes: a few calls, not one per poll.

// noteFreshness reports the table partitions of need whose state changed
// in the catch-up begun at started: caught up in it, or still behind.
// Called by catchUp, under catchUpMu.
func (s *tableSyncer) noteFreshness(need map[*tablePart]bool, started time.Time) {
	if len(s.hooks) == 0 {
		return
	}
	for tp := range need {
		tp.mu.Lock()
		caught := !tp.caughtUpAt.Before(started)
		since := tp.caughtUpAt
		if since.IsZero() {
			since = tp.openedAt
		}
		changed := caught == tp.behind
		tp.behind = !caught
		tp.mu.Unlock()
		if !changed {
			continue
		}
		if caught {
			since = time.Time{}
		}
		s.report(tp, since, false)
	}
}

// report tells the hooks about tp.
func (s *tableSyncer) report(tp *tablePart, behindSince time.Time, closed bool) {
	f := TableFreshness{Table: tp.ds.Name, Partition: tp.key.partition, BehindSince: behindSince, Closed: closed}
	for _, h := range s.hooks {
		h.OnTableFreshness(f)
	}
}
