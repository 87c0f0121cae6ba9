package streamertest_test

import (
	"fmt"
	"strconv"
	"testing"
	"testing/fstest"

	"github.com/streamerio/streamer/streamertest"
	"github.com/streamerio/streamer/topology"
)

const regroup = `
name: regroup
datasets:
  in: {topic: in, partitions: 4}
  by-group: {}
  out: {topic: out}
pipes:
  rekey:
    from: in
    to: by-group
    map:
      key: g
  count:
    from: by-group
    to: out
    aggregate:
      fields:
        n: {op: count}
`

// TestDriverRepartition pipes records keyed by id, spread over four
// partitions, through a re-key by group and a count per group: the driver
// must route them through the repartition topic, or a group's records are
// counted in the state of each partition they came from and the counts
// restart per partition.
func TestDriverRepartition(t *testing.T) {
	top, err := topology.Compile("regroup.yaml", []byte(regroup), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	const groups, n = 5, 200
	var recs []streamertest.Record
	want := map[string]int{}
	for i := range n {
		g := "g" + strconv.Itoa(i*i%groups) // uneven groups
		want[g]++
		recs = append(recs, streamertest.Record{Key: streamertest.Key(fmt.Sprint("id-", i)), Value: map[string]any{"g": g}})
	}
	// Two inputs: the second continues the counts of the first.
	if err := d.Input("in", recs[:n/2]...); err != nil {
		t.Fatal(err)
	}
	if err := d.Input("in", recs[n/2:]...); err != nil {
		t.Fatal(err)
	}
	checkCountsRun(t, d, "out", want)
	// The re-keyed records went through the repartition topic once each.
	rep, err := d.Output("by-group")
	if err != nil {
		t.Fatal(err)
	}
	if len(rep) != n {
		t.Errorf("%d records in the repartition topic, want %d", len(rep), n)
	}
}

const twoSources = `
name: two
datasets:
  web: {topic: web, partitions: 4}
  app: {topic: app, partitions: 3}
  out: {topic: out}
pipes:
  count:
    from: [web, app]
    to: out
    aggregate:
      fields:
        n: {op: count}
`

// TestDriverMerge counts per user over two streams with different
// partition counts: the driver must route both through the count's merge
// topic, so that each user's records of both streams meet in one state and
// the counts run 1, 2, 3, ... in the order the records were input.
func TestDriverMerge(t *testing.T) {
	top, err := topology.Compile("two.yaml", []byte(twoSources), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	want := map[string]int{}
	for round := range 3 {
		for _, src := range []string{"web", "app"} {
			var recs []streamertest.Record
			for i := range 40 {
				u := "u" + strconv.Itoa((i*7+round)%9)
				want[u]++
				recs = append(recs, streamertest.Record{Key: streamertest.Key(u), Value: map[string]any{"src": src}})
			}
			if err := d.Input(src, recs...); err != nil {
				t.Fatal(err)
			}
		}
	}
	checkCountsRun(t, d, "out", want)
}

// checkCountsRun checks that dataset out holds, for each key, the counts
// 1, 2, ... up to want[key], in order: a key counted in two states (two
// partitions' tasks) would start again at 1.
func checkCountsRun(t *testing.T, d *streamertest.Driver, dataset string, want map[string]int) {
	t.Helper()
	out, err := d.Output(dataset)
	if err != nil {
		t.Fatal(err)
	}
	seq := map[string][]int{}
	for _, r := range out {
		c, err := strconv.Atoi(fmt.Sprint(r.Value.(map[string]any)["n"]))
		if err != nil {
			t.Fatalf("output %v: n is not a count", r.Value)
		}
		seq[*r.Key] = append(seq[*r.Key], c)
	}
	if len(seq) != len(want) {
		t.Fatalf("keys out %v, want %v", seq, want)
	}
	for k, w := range want {
		s := seq[k]
		if len(s) != w {
			t.Errorf("key %s: %d outputs, want %d", k, len(s), w)
		}
		for i, c := range s {
			if c != i+1 {
				t.Errorf("key %s: count %d at position %d, want %d: the key was counted in more than one state", k, c, i, i+1)
				break
			}
		}
	}
}
