package cli

import (
	"context"
	"errors"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/streamerio/streamer/engine"
)

// Rejoining after a broker outage.
//
// An outage longer than the transaction timeout (the only broker
// restarting, a network partition) leaves the open transaction unable to
// end, and the engine stops with engine.ErrBrokersUnavailable. Kafka
// Streams rides such outages out (task.timeout.ms); a replica that exits
// instead would crash-loop under its supervisor, or stay down without one.
// streamer run starts a new engine in the same process after a pause: the
// old transaction was aborted or settled by the broker, the stores never
// moved past what committed, and the new engine restores and goes on from
// the committed offsets, exactly once.

// rejoinBackoff is the first pause before a new engine; it doubles up to
// rejoinBackoffMax while the brokers stay away.
var rejoinBackoff, rejoinBackoffMax = 2 * time.Second, 30 * time.Second

// runRejoining runs e and, while it stops with engine.ErrBrokersUnavailable
// and ctx is live, another engine from next after a pause. It returns the
// last run's error, or nil when ctx ended during a pause.
func runRejoining[R runner](ctx context.Context, e R, next func() (R, error), log *slog.Logger) error {
	wait := rejoinBackoff
	for {
		start := time.Now()
		err := e.Run(ctx)
		if err == nil || ctx.Err() != nil || !errors.Is(err, engine.ErrBrokersUnavailable) {
			return err
		}
		if time.Since(start) > 5*rejoinBackoffMax {
			wait = rejoinBackoff // it ran a good while: a new outage
		}
		log.Warn("the brokers are unavailable; the replica starts again in this process after a pause (the transaction did not commit: its records are processed again, nothing is lost)", "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		wait = min(2*wait, rejoinBackoffMax)
		if e, err = next(); err != nil {
			return err
		}
	}
}

// runner is what runRejoining runs: an *engine.Engine.
type runner interface{ Run(context.Context) error }

// currentEngine is the engine running now, for the ops server and the
// metrics: runRejoining replaces it after an outage.
type currentEngine struct{ e atomic.Pointer[engine.Engine] }

func (c *currentEngine) set(e *engine.Engine) { c.e.Store(e) }

func (c *currentEngine) Ready() bool { return c.e.Load().Ready() }

func (c *currentEngine) Restoring() []engine.RestoreProgress { return c.e.Load().Restoring() }

func (c *currentEngine) LoadingTables() int { return c.e.Load().LoadingTables() }

func (c *currentEngine) Live() error { return c.e.Load().Live() }

var _ readiness = (*currentEngine)(nil)
