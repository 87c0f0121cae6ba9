package engine

import (
	"context"
	"fmt"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

// TestProjectAutoRetrial: ProjectAuto does not keep its choice forever. Once
// retrialAfter has passed, it times both ways again, and then chooses
// afresh.
func TestProjectAutoRetrial(t *testing.T) {
	top, err := topology.Compile("t.yaml", []byte(`
name: t
datasets:
  in: {topic: in}
  out: {topic: out, create: {partitions: 1}}
pipes:
  keep: {from: in, to: out, filter: {when: 'n > 0'}}
`), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	k, err := NewTask(top, "in", 0, TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	batch := func() {
		t.Helper()
		var in []*kgo.Record
		for i := range 50 {
			in = append(in, &kgo.Record{Topic: "in", Offset: int64(i), Value: fmt.Appendf(nil, `{"n":%d,"pad":"%064d"}`, i%3, i)})
		}
		if err := k.Process(context.Background(), in, func(*kgo.Record) {}); err != nil {
			t.Fatal(err)
		}
	}
	for range 2 * trialBatches {
		batch()
	}
	if _, timing := k.useProjection(); timing || !k.decided {
		t.Fatalf("still timing after %d batches", 2*trialBatches)
	}
	batch()
	if _, timing := k.useProjection(); timing {
		t.Fatal("timing again before retrialAfter")
	}
	k.decidedAt = time.Now().Add(-retrialAfter)
	if _, timing := k.useProjection(); !timing {
		t.Fatalf("not timing again %v after the choice", retrialAfter)
	}
	for range 2 * trialBatches {
		batch()
	}
	if _, timing := k.useProjection(); timing || !k.decided || time.Since(k.decidedAt) > time.Minute {
		t.Fatalf("no new choice after the second trial (decided %v at %v)", k.decided, k.decidedAt)
	}
}
