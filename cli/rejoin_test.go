package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/streamerio/streamer/engine"
)

type fakeRun struct {
	err    error
	cancel context.CancelFunc // called during Run, if set
}

func (f *fakeRun) Run(context.Context) error {
	if f.cancel != nil {
		f.cancel()
	}
	return f.err
}

func TestRunRejoining(t *testing.T) {
	rejoinBackoff, rejoinBackoffMax = time.Millisecond, 2*time.Millisecond
	t.Cleanup(func() { rejoinBackoff, rejoinBackoffMax = 2*time.Second, 30*time.Second })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	outage := fmt.Errorf("%w: ending transaction: context deadline exceeded", engine.ErrBrokersUnavailable)
	other := errors.New("engine: a pipe failed")

	t.Run("outages, then a clean stop", func(t *testing.T) {
		runs := []*fakeRun{{err: outage}, {err: outage}, {err: nil}}
		i := 0
		err := runRejoining(context.Background(), runs[0], func() (*fakeRun, error) { i++; return runs[i], nil }, log)
		if err != nil || i != 2 {
			t.Fatalf("err %v after %d new engines; want nil after 2", err, i)
		}
	})
	t.Run("another error is returned at once", func(t *testing.T) {
		news := 0
		err := runRejoining(context.Background(), &fakeRun{err: other}, func() (*fakeRun, error) { news++; return &fakeRun{}, nil }, log)
		if !errors.Is(err, other) || news != 0 {
			t.Fatalf("err %v, %d new engines; want the pipe's error and none", err, news)
		}
	})
	t.Run("a stop signal ends it", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		news := 0
		err := runRejoining(ctx, &fakeRun{err: outage, cancel: cancel}, func() (*fakeRun, error) { news++; return &fakeRun{}, nil }, log)
		if !errors.Is(err, engine.ErrBrokersUnavailable) || news != 0 {
			t.Fatalf("err %v, %d new engines; want the outage returned as it was, and no new engine", err, news)
		}
	})
	t.Run("a new engine that cannot start ends it", func(t *testing.T) {
		locked := errors.New("state directory in use")
		err := runRejoining(context.Background(), &fakeRun{err: outage}, func() (*fakeRun, error) { return nil, locked }, log)
		if !errors.Is(err, locked) {
			t.Fatalf("err %v; want %v", err, locked)
		}
	})
}
