package engine_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
)

// TestReset runs the regrouping topology (a repartition topic and a
// changelog), resets it, and runs it again: the reset refuses a group with
// a replica running, a dry run changes nothing, and after the real one the
// next run processes every record again from empty state. Its counts
// start again at 1; a reset that left the state, the changelog or the
// offsets would have them go on from the first run's.
func TestReset(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 3})
	top := compile(t, regrouping)
	cl := client(t, brokers)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	const n, groups = 300, 7
	var recs []*kgo.Record
	for i := range n {
		recs = append(recs, &kgo.Record{Topic: "in", Key: []byte("k" + strconv.Itoa(i)), Value: fmt.Appendf(nil, `{"id":%d,"g":"g%d"}`, i, i%groups)})
	}
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	runReplica(t, top, brokers, "a", root, 2*n) // from in, then from the repartition topic
	internal := []string{"streamer-regroup-by-group-repartition", top.ChangelogTopic("count")}
	groupDir := filepath.Join(root, top.Group)
	if _, err := os.Stat(groupDir); err != nil {
		t.Fatal(err)
	}

	t.Run("refused while a replica runs", func(t *testing.T) {
		e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: "r", StateDir: t.TempDir(), Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Run(runCtx) }()
		defer func() {
			cancel()
			if err := <-done; err != nil {
				t.Error(err)
			}
		}()
		for deadline := time.Now().Add(20 * time.Second); !e.Ready(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the replica never became ready")
			}
		}
		_, err = engine.Reset(ctx, top, engine.ResetOptions{Brokers: brokers, StateDir: root})
		if !errors.Is(err, engine.ErrGroupActive) {
			t.Fatalf("Reset = %v, want ErrGroupActive", err)
		}
		// A dry run works while replicas run, and counts them.
		rep, err := engine.Reset(ctx, top, engine.ResetOptions{Brokers: brokers, StateDir: root, DryRun: true})
		if err != nil || rep.Members != 1 {
			t.Fatalf("dry run while running: %v, %d members (want 1)", err, rep.Members)
		}
	})

	rep, err := engine.Reset(ctx, top, engine.ResetOptions{Brokers: brokers, StateDir: root, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Deleted, internal) || rep.StateDir != groupDir {
		t.Errorf("dry run: would delete %v and %q, want %v and %q", rep.Deleted, rep.StateDir, internal, groupDir)
	}
	if _, err := os.Stat(groupDir); err != nil {
		t.Errorf("a dry run removed the state directory: %v", err)
	}
	if td, _ := adm.ListTopics(ctx, internal...); len(td) != 2 {
		t.Errorf("a dry run deleted topics: %d of 2 left", len(td))
	}
	latest, err := engine.Reset(ctx, top, engine.ResetOptions{Brokers: brokers, Latest: true, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	total := int64(0)
	latest.Offsets.Each(func(o kadm.Offset) { total += o.At })
	if total != n {
		t.Errorf("latest: offsets summing to %d, want the %d records' end", total, n)
	}

	rep, err = engine.Reset(ctx, top, engine.ResetOptions{Brokers: brokers, StateDir: root})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Deleted, internal) || rep.StateDir != groupDir {
		t.Errorf("deleted %v and %q, want %v and %q", rep.Deleted, rep.StateDir, internal, groupDir)
	}
	if _, err := os.Stat(groupDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state directory left: %v", err)
	}
	td, err := adm.ListTopics(ctx, internal...)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range internal {
		if d, ok := td[topic]; ok && d.Err == nil {
			t.Errorf("%s still exists", topic)
		}
	}
	committed, err := adm.FetchOffsets(ctx, top.Group)
	if err != nil {
		t.Fatal(err)
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic != "in" || o.At != 0 {
			t.Errorf("group offset %s[%d] = %d, want only in's, at 0", o.Topic, o.Partition, o.At)
		}
	})

	// A clean output, as a user might start with, shows the second run
	// alone.
	if resp, err := adm.DeleteTopic(ctx, "out"); err != nil || resp.Err != nil {
		t.Fatal(err, resp.Err)
	}
	runReplica(t, top, brokers, "b", root, 2*n)
	want, wantSum := map[string]int{}, map[string]int{}
	for i := range n {
		want["g"+strconv.Itoa(i%groups)]++
		wantSum["g"+strconv.Itoa(i%groups)] += i
	}
	checkCounts(t, brokers, "out", want, wantSum)
}

// TestResetRaceWithAJoiningReplica: a replica that joins the group while
// Reset deletes its topics and state would resume on what was deleted.
// Reset must fail then, not report success.
func TestResetRaceWithAJoiningReplica(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 3})
	top := compile(t, regrouping)
	ctx := context.Background()
	o := engine.ResetOptions{Brokers: brokers, StateDir: t.TempDir()}
	var stop func()
	engine.SetResetStep(&o, func(step string) {
		if step != "group emptied" {
			return
		}
		e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: "late", StateDir: t.TempDir(), Logger: discard})
		if err != nil {
			t.Fatal(err)
		}
		runCtx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Run(runCtx) }()
		stop = func() { cancel(); <-done }
		for deadline := time.Now().Add(20 * time.Second); !e.Ready(); time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the replica never became ready")
			}
		}
	})
	_, err := engine.Reset(ctx, top, o)
	if stop != nil {
		stop()
	}
	if !errors.Is(err, engine.ErrGroupActive) {
		t.Fatalf("Reset with a replica joining midway = %v, want ErrGroupActive", err)
	}
}

// TestResetCannotLeaveStateDir: a group name that would climb out of the
// state directory (the compiler refuses it; a hand-built topology need
// not) makes Reset fail before it acts, and removes nothing outside.
func TestResetCannotLeaveStateDir(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 1})
	top := compile(t, regrouping)
	base := t.TempDir()
	victim := filepath.Join(base, "victim")
	if err := os.MkdirAll(victim, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(victim, "precious"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(base, "a", "b", "state")
	if err := os.MkdirAll(stateDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, group := range []string{"../../../victim", filepath.Join(stateDir, "..", "..", "..", "victim"), "..", "."} {
		top.Group = group
		for _, dry := range []bool{true, false} {
			_, err := engine.Reset(context.Background(), top, engine.ResetOptions{Brokers: brokers, StateDir: stateDir, DryRun: dry})
			if err == nil || !strings.Contains(err.Error(), "state directory") {
				t.Errorf("group %q (dry run %v): %v, want an error naming the state directory", group, dry, err)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(victim, "precious")); err != nil {
		t.Fatalf("a directory outside the state directory was removed: %v", err)
	}
	if _, err := os.Stat(stateDir); err != nil {
		t.Fatalf("the state directory itself was removed: %v", err)
	}
}
