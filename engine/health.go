package engine

import (
	"fmt"
	"sync/atomic"
	"time"
)

// liveness tracks whether the processing loop is making progress: it is
// busy from the moment a poll returns until it polls again (processing the
// records, ending the transaction), and idle while it polls or pauses on
// purpose. A loop busy for longer than a bound is stuck.
type liveness struct {
	busySince atomic.Int64 // unix nanoseconds; 0 while idle
}

// busy marks the loop at work, unless it already is.
func (l *liveness) busy() { l.busySince.CompareAndSwap(0, time.Now().UnixNano()) }

// idle marks the loop waiting on purpose: polling or pausing.
func (l *liveness) idle() { l.busySince.Store(0) }

// stuckFor returns how long the loop has been busy, 0 while idle.
func (l *liveness) stuckFor() time.Duration {
	since := l.busySince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(time.Unix(0, since))
}

// Live returns nil while the replica's processing loop makes progress, and
// an error saying for how long it has not when it has been busy with one
// poll's records or one commit for longer than Options.LivenessTimeout.
// A loop waiting for records, or pausing because a dependency is down, is
// live: restarting it would not help. /healthz answers with it. Live is
// safe for concurrent use.
func (e *Engine) Live() error {
	if d := e.live.stuckFor(); d > e.opts.LivenessTimeout {
		return fmt.Errorf("the processing loop has been stuck for %v (processing one poll's records or ending a transaction), more than the liveness timeout %v", d.Round(time.Second), e.opts.LivenessTimeout)
	}
	return nil
}
