package engine_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/streamerio/streamer/engine"
)

// TestCommitsEarlyWhenCaughtUp: a replica that has read all there is does
// not hold its outputs back for the whole commit interval; it commits once
// the transaction is MinCommitInterval old. With MinCommitInterval at the
// commit interval, it waits for the interval. The interval here (4 s) is
// long so that the two cases are far apart on a loaded machine.
func TestCommitsEarlyWhenCaughtUp(t *testing.T) {
	for _, tc := range []struct {
		name  string
		min   time.Duration
		early bool
	}{
		{"default minimum", 0, true},
		{"minimum at the interval", 4 * time.Second, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			brokers := cluster(t, map[string]int32{"in": 2})
			top := compile(t, passthrough)
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: "r", Logger: log,
				CommitInterval: 4 * time.Second, MinCommitInterval: tc.min})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- e.Run(ctx) }()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					t.Errorf("run: %v", err)
				}
			}()
			committed := func() int64 { return e.Stats().CommittedIn.Load() }
			waitUntil := func(d time.Duration, want int64) bool {
				for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
					if committed() >= want {
						return true
					}
				}
				return false
			}
			// The first record: the replica joins and commits it.
			if err := produce(brokers, 0, 1); err != nil {
				t.Fatal(err)
			}
			if !waitUntil(30*time.Second, 1) {
				t.Fatal("the first record was never committed")
			}
			// Ten more, to a replica with nothing else to read.
			if err := produce(brokers, 1, 11); err != nil {
				t.Fatal(err)
			}
			got := waitUntil(2*time.Second, 11)
			if got != tc.early {
				t.Errorf("committed within 2 s of a 4 s interval: %v, want %v (committed %d of 11)", got, tc.early, committed())
			}
			if !waitUntil(30*time.Second, 11) {
				t.Fatalf("committed %d of 11", committed())
			}
		})
	}
}
