package engine_test

import (
	"strconv"
	"strings"
	"testing"
)

const counting = `
name: counts
datasets:
  in:  {topic: in}
  out: {topic: out, create: {partitions: 4}}
pipes:
  count:
    from: in
    to: out
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: id}
`

// TestStateSurvivesReplicasAndLostDirs counts per key across three
// replicas in turn: the second starts with an empty state directory (it
// restores from the changelog), the third reuses the first's directory (it
// restores from its checkpoint on). Every key's counts must run 1, 2, 3, ...
// without a gap or a repeat, and end at the number of its records.
func TestStateSurvivesReplicasAndLostDirs(t *testing.T) {
	brokers := cluster(t, map[string]int32{"in": 3})
	top := compile(t, counting)
	dirA, dirB := t.TempDir(), t.TempDir()
	const batch = 3000
	if err := produce(brokers, 0, batch); err != nil {
		t.Fatal(err)
	}
	runReplica(t, top, brokers, "a", dirA, batch)
	if err := produce(brokers, batch, 2*batch); err != nil {
		t.Fatal(err)
	}
	runReplica(t, top, brokers, "b", dirB, batch)
	if err := produce(brokers, 2*batch, 3*batch); err != nil {
		t.Fatal(err)
	}
	runReplica(t, top, brokers, "c", dirA, batch)

	want, wantSum := produced(3 * batch)
	checkCounts(t, brokers, "out", want, wantSum)
}

func itoa(i int) string { return strconv.Itoa(i) }

type testWriter struct{ t *testing.T }

func (w *testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}
