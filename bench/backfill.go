package main

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/streamerio/streamer/engine"
)

// inputBounds returns the bounds of a backfill of the whole input: from
// the start (a new group starts there) to its end offsets.
func inputBounds(ctx context.Context, adm *kadm.Client, input string) (*engine.Bounds, error) {
	ends, err := adm.ListEndOffsets(ctx, input)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("listing the end offsets of %s: %w", input, err)
	}
	b := &engine.Bounds{End: map[string]map[int32]int64{input: {}}}
	ends.Each(func(o kadm.ListedOffset) { b.End[input][o.Partition] = o.Offset })
	return b, nil
}

// awaitBounded waits for a bounded run, timed until every record was
// committed, to stop by itself, and notes how long that took.
func awaitBounded(e *engine.Engine, done <-chan error, deadline <-chan time.Time, res *result) error {
	start := time.Now()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("engine: %w", err)
		}
	case <-deadline:
		return fmt.Errorf("the bounded run did not stop by itself")
	}
	if !e.Finished() {
		return fmt.Errorf("the bounded run stopped without finishing")
	}
	res.note += fmt.Sprintf(" (stopped by itself %.2f s after the last commit counted)", time.Since(start).Seconds())
	return nil
}
