package benchkit

import (
	"errors"
	"testing"
	"time"

	"github.com/streamerio/streamer/engine"
)

func TestRestoreWatch(t *testing.T) {
	t0 := time.Now().Add(-time.Minute)
	reports := []engine.RestoreProgress{
		{Partition: 0, From: 0, End: 10, Position: 5, Records: 5, Started: t0},                   // not done: ignored
		{Partition: 0, From: 0, End: 10, Position: 10, Records: 10, Started: t0, Done: true},     // counts
		{Partition: 1, From: 0, End: 0, Started: t0.Add(-time.Second), Done: true},               // empty
		{Partition: 2, From: 0, End: 0, Started: t0, Done: true, Err: errors.New("empty, lost")}, // empty, failed
		{Partition: 3, From: 0, End: 4, Position: 4, Records: 4, Started: t0.Add(time.Second), Done: true},
	}
	for _, tc := range []struct {
		skip        bool
		done        int
		first       time.Time
		err, onEnds int
	}{
		{skip: true, done: 2, first: t0, onEnds: 2},
		{skip: false, done: 3, first: t0.Add(-time.Second), err: 1, onEnds: 3},
	} {
		onEnds := 0
		w := &RestoreWatch{SkipEmpty: tc.skip, OnEnd: func(engine.RestoreProgress, time.Time) { onEnds++ }}
		for _, p := range reports {
			w.OnRestoreProgress(p)
		}
		rt := w.Totals()
		if rt.Done != tc.done || rt.Records != 14 || !rt.First.Equal(tc.first) || onEnds != tc.onEnds {
			t.Errorf("SkipEmpty %v: done %d records %d first %v, OnEnd %d times; want %d, 14, %v, %d",
				tc.skip, rt.Done, rt.Records, rt.First, onEnds, tc.done, tc.first, tc.onEnds)
		}
		if (rt.Err != nil) != (tc.err > 0) {
			t.Errorf("SkipEmpty %v: err %v", tc.skip, rt.Err)
		}
		if rt.Last.Before(rt.First) || time.Since(rt.Last) > time.Minute {
			t.Errorf("SkipEmpty %v: last %v, first %v", tc.skip, rt.Last, rt.First)
		}
	}
}
