package engine

import (
	"log/slog"
	"time"
)

// pollSizer bounds the records of one poll so that processing them fits
// well inside a transaction. A transaction ends after the poll that
// passes CommitInterval has been processed, and the broker aborts one
// older than TransactionTimeout: a pipe slow enough (a remote model, a
// language detector on a loaded machine) would otherwise turn a full
// poll of max_poll_records into a transaction the broker times out, the
// same poll again after the restart, and a replica that never advances.
//
// The first poll takes at most firstPoll records, since nothing is known
// of the pipes' speed yet; after each poll, the limit is what fits in
// budget at the slowest recent speed per record, between 1 and
// max_poll_records. It reacts at once to a slowdown and by halves to a
// speed-up. It is owned by the loop goroutine.
type pollSizer struct {
	max    int           // max_poll_records
	budget time.Duration // the longest one poll's processing should take
	log    *slog.Logger

	perRecord time.Duration // the slowest recent processing time per record; 0: not measured
	capped    bool          // the limit was below max at the last poll (logged when it changes)
}

// firstPoll is the most records the first poll of a replica takes.
const firstPoll = 100

func newPollSizer(max int, txnTimeout time.Duration, log *slog.Logger) *pollSizer {
	return &pollSizer{max: max, budget: txnTimeout / 4, log: log}
}

// limit is the most records the next poll may take.
func (p *pollSizer) limit() int {
	if p.perRecord == 0 {
		return min(p.max, firstPoll)
	}
	n := int(p.budget / p.perRecord)
	return max(1, min(p.max, n))
}

// observe records that n records took d to process.
func (p *pollSizer) observe(n int, d time.Duration) {
	if n <= 0 {
		return
	}
	per := d / time.Duration(n)
	if per <= 0 {
		per = 1
	}
	if per >= p.perRecord || p.perRecord == 0 {
		p.perRecord = per
	} else {
		p.perRecord = (p.perRecord + per) / 2
	}
	if capped := p.limit() < p.max; capped != p.capped && p.perRecord > 0 {
		p.capped = capped
		if capped {
			p.log.Info("the pipes are slow enough that a full poll would not fit in a transaction: polling fewer records",
				"per_record", p.perRecord, "max_poll_records", p.max, "poll_limit", p.limit(), "budget", p.budget)
		} else {
			p.log.Info("polling up to max_poll_records again", "max_poll_records", p.max)
		}
	}
}
