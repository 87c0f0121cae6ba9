package benchkit

import (
	"errors"
	"sync"
	"time"

	"github.com/streamerio/streamer/engine"
)

// RestoreWatch collects an engine's restore reports: when the first restore
// began, when the last one ended, the records they applied, how many ended
// and their errors. bench's restore figure and W6 (bench/peers) both time
// restores with it. The zero value is ready to use; set the fields before
// the engine runs.
type RestoreWatch struct {
	// SkipEmpty leaves out the restores that had nothing to read
	// (RestoreProgress.Total 0), their errors included. Default false:
	// every restore counts.
	SkipEmpty bool
	// OnEnd, when not nil, is called with the last report of each restore
	// that counts and ended without error, and the time it ended. It is
	// called under the watch's lock and must not call Totals.
	OnEnd func(p engine.RestoreProgress, ended time.Time)

	mu      sync.Mutex
	first   time.Time
	last    time.Time
	records int64
	done    int
	errs    []error
}

var _ engine.RestoreHook = (*RestoreWatch)(nil)

// RestoreTotals is what a RestoreWatch has collected.
type RestoreTotals struct {
	First   time.Time // when the first restore began
	Last    time.Time // when the last one ended
	Records int64     // records applied by the restores that ended
	Done    int       // restores that ended without error
	Err     error     // the failed restores' errors, joined; nil if none
}

// OnRestoreProgress implements engine.RestoreHook.
func (w *RestoreWatch) OnRestoreProgress(p engine.RestoreProgress) {
	if !p.Done || (w.SkipEmpty && p.Total() == 0) {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.Err != nil {
		w.errs = append(w.errs, p.Err)
		return
	}
	if w.first.IsZero() || p.Started.Before(w.first) {
		w.first = p.Started
	}
	w.last = time.Now()
	w.records += p.Records
	w.done++
	if w.OnEnd != nil {
		w.OnEnd(p, w.last)
	}
}

// Totals returns what the watch has collected so far.
func (w *RestoreWatch) Totals() RestoreTotals {
	w.mu.Lock()
	defer w.mu.Unlock()
	return RestoreTotals{First: w.first, Last: w.last, Records: w.records, Done: w.done, Err: errors.Join(w.errs...)}
}
