package engine

import (
	"fmt"
	"sync"
	"time"
)

// RestoreProgress describes one store partition's restore from its
// changelog, as it runs.
type RestoreProgress struct {
	Store     string
	Partition int32
	// The restore reads the changelog partition from From (the store's
	// checkpoint) to End, its last stable offset when the restore began.
	// End is -1 until it is known.
	From, End int64
	// Position is the next changelog offset to read.
	Position int64
	// Records counts the records applied so far.
	Records int64
	// Started is when the restore began.
	Started time.Time
	// Done marks the last report of a restore. Err is nil if it finished,
	// and says why not if it failed or was stopped (partition revoked,
	// replica stopping).
	Done bool
	Err  error
}

// Remaining returns the changelog offsets left to read. It bounds the
// records left from above: compaction and transaction markers leave gaps
// in the offsets.
func (p RestoreProgress) Remaining() int64 {
	if p.End < 0 {
		return 0
	}
	return max(0, p.End-p.Position)
}

// Total returns the offsets the restore reads in all.
func (p RestoreProgress) Total() int64 {
	if p.End < 0 {
		return 0
	}
	return max(0, p.End-p.From)
}

// Rate returns the changelog offsets read per second so far.
func (p RestoreProgress) Rate(now time.Time) float64 {
	el := now.Sub(p.Started).Seconds()
	if el <= 0 || p.End < 0 {
		return 0
	}
	return float64(p.Position-p.From) / el
}

// ETA estimates the time left at the rate so far, and false while there
// is no rate to go by.
func (p RestoreProgress) ETA(now time.Time) (time.Duration, bool) {
	r := p.Rate(now)
	if r <= 0 {
		return 0, false
	}
	return time.Duration(float64(p.Remaining()) / r * float64(time.Second)), true
}

// String is one line for people: "store count partition 3: 120000 of
// 500000 (24%), 81000/s, about 5s left".
func (p RestoreProgress) String() string {
	now := time.Now()
	if p.End < 0 {
		return fmt.Sprintf("store %s partition %d: starting", p.Store, p.Partition)
	}
	done, total := p.Position-p.From, p.Total()
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	s := fmt.Sprintf("store %s partition %d: %d of %d changelog offsets (%.0f%%), %.0f/s", p.Store, p.Partition, done, total, pct, p.Rate(now))
	if eta, ok := p.ETA(now); ok {
		s += fmt.Sprintf(", about %v left", eta.Round(time.Second))
	}
	return s
}

// RestoreHook observes state restores as they run: one report when a
// restore knows its range, one about every second while it runs, and a
// last one (Done) when it ends. Package metrics turns them into a gauge of
// the offsets left per store partition.
type RestoreHook interface {
	OnRestoreProgress(RestoreProgress)
}

// RestoreDisplay is a RestoreHook that shows progress to a person itself,
// as a terminal progress bar does. With one among the hooks, the engine
// still logs each restore's start and end, but not its periodic progress
// lines.
type RestoreDisplay interface {
	RestoreHook
	DisplaysRestoreProgress()
}

// restoreRun is the progress of one restore, shared with readiness checks.
type restoreRun struct {
	mu       sync.Mutex
	p        RestoreProgress
	lastHook time.Time
	lastLog  time.Time
	logged   bool
}

func (r *restoreRun) snapshot() RestoreProgress {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}

// newRun registers a restore as under way; p.mu must be held.
func (p *pebbleState) newRun(store string, partition int32) *restoreRun {
	r := &restoreRun{p: RestoreProgress{Store: store, Partition: partition, End: -1, Started: time.Now()}}
	p.active[r] = struct{}{}
	return r
}

// finish reports the end of a restore and drops it from those under way.
// Only the first call for a run counts.
func (p *pebbleState) finish(r *restoreRun, err error) {
	p.mu.Lock()
	_, ok := p.active[r]
	delete(p.active, r)
	p.mu.Unlock()
	if !ok {
		return
	}
	r.mu.Lock()
	r.p.Done, r.p.Err = true, err
	pr := r.p
	r.mu.Unlock()
	for _, h := range p.progress {
		h.OnRestoreProgress(pr)
	}
	if err != nil || pr.End < 0 {
		return
	}
	took := time.Since(pr.Started)
	for _, h := range p.hooks {
		h.OnStateRestored(StateRestore{Store: pr.Store, Partition: pr.Partition, Records: int(pr.Records), Duration: took})
	}
	if r.logged {
		p.log.Info("state store restored", "store", pr.Store, "partition", pr.Partition, "from", pr.From, "to", pr.Position,
			"records", pr.Records, "took", took.Round(time.Millisecond), "records_per_s", int64(float64(pr.Records)/max(took.Seconds(), 1e-9)))
	}
}

// update records progress, and tells hooks and the log when it is time.
func (p *pebbleState) update(r *restoreRun, pos, records int64) {
	now := time.Now()
	r.mu.Lock()
	r.p.Position, r.p.Records = pos, records
	pr := r.p
	hook := now.Sub(r.lastHook) >= progressEvery
	if hook {
		r.lastHook = now
	}
	logLine := !p.display && r.logged && now.Sub(r.lastLog) >= logEvery
	if logLine {
		r.lastLog = now
	}
	r.mu.Unlock()
	if hook {
		for _, h := range p.progress {
			h.OnRestoreProgress(pr)
		}
	}
	if logLine {
		eta, _ := pr.ETA(now)
		p.log.Info("restoring state store", "store", pr.Store, "partition", pr.Partition, "records", pr.Records,
			"offsets_left", pr.Remaining(), "offsets_per_s", int64(pr.Rate(now)), "eta", eta.Round(time.Second))
	}
}
