package topology_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/streamerio/streamer/topology"
)

// TestRepartition checks where the compiler inserts repartition topics, and
// how it splits the plan: a pipe that changes keys feeding keyed state or a
// partitioned-table join, through in-memory datasets, gets one; a key change
// feeding only stateless pipes or sinks, or keyed state without a key
// change, gets none.
func TestRepartition(t *testing.T) {
	const head = `
name: r
datasets:
  in: {topic: in}
  mid: {}
  mid2: {}
  out: {topic: out}
  side: {topic: side}
  customers: {topic: customers, table: partitioned}
  countries: {topic: countries, table: global}
pipes:
`
	const rekey = `
  rekey:
    from: in
    to: mid
    map: {key: country}
`
	const count = `
    aggregate: {fields: {n: {op: count}}}
`
	cases := []struct {
		name, pipes string
		// want lists re-keyed dataset → repartition source, readers.
		want []string
		// subs lists each sub-topology as "sources → pipes → sinks".
		subs []string
	}{
		{
			name:  "rekey then aggregate",
			pipes: rekey + "  count:\n    from: mid\n    to: out" + count,
			want:  []string{"mid → mid-repartition (streamer-r-mid-repartition) read by count"},
			subs:  []string{"in → rekey → mid", "mid-repartition → count → out"},
		},
		{
			name: "through a filter, repartitioned where the state is",
			pipes: rekey + "  keep:\n    from: mid\n    to: mid2\n    filter: {when: 'true'}\n" +
				"  count:\n    from: mid2\n    to: out" + count,
			want: []string{"mid2 → mid2-repartition (streamer-r-mid2-repartition) read by count"},
			subs: []string{"in → rekey, keep → mid2", "mid2-repartition → count → out"},
		},
		{
			name:  "a key change feeding a sink only",
			pipes: rekey + "  keep:\n    from: mid\n    to: out\n    filter: {when: 'true'}\n",
			subs:  []string{"in → rekey, keep → out"},
		},
		{
			name:  "keyed state without a key change",
			pipes: "  shape:\n    from: in\n    to: mid\n    map: {set: {a: 1}}\n  count:\n    from: mid\n    to: out" + count,
			subs:  []string{"in → shape, count → out"},
		},
		{
			name:  "rekey then a partitioned-table join",
			pipes: rekey + "  join:\n    from: mid\n    to: out\n    join: {table: customers, fields: {name: name}}\n",
			want:  []string{"mid → mid-repartition (streamer-r-mid-repartition) read by join"},
			subs:  []string{"in → rekey → mid", "mid-repartition → join → out"},
		},
		{
			name:  "rekey then a global-table join",
			pipes: rekey + "  join:\n    from: mid\n    to: out\n    join: {table: countries, on: country, into: c}\n",
			subs:  []string{"in → rekey, join → out"},
		},
		{
			name: "one re-keyed dataset read by keyed state and a stateless pipe",
			pipes: rekey + "  count:\n    from: mid\n    to: out" + count +
				"  copy:\n    from: mid\n    to: side\n    filter: {when: 'true'}\n",
			want: []string{"mid → mid-repartition (streamer-r-mid-repartition) read by count, copy"},
			subs: []string{"in → rekey → mid", "mid-repartition → count, copy → out, side"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			src := head + c.pipes
			top, err := topology.Compile("r.yaml", []byte(src), fstest.MapFS{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range top.Repartitions() {
				var readers []string
				for _, p := range r.Readers {
					readers = append(readers, p.Name)
				}
				got = append(got, r.RepartitionOf.Name+" → "+r.Name+" ("+r.Topic+") read by "+strings.Join(readers, ", "))
				if r.RepartitionOf.Topic != r.Topic || !r.IsSource() || !r.RepartitionOf.IsSink() || len(r.RepartitionOf.Readers) != 0 {
					t.Errorf("%s: the re-keyed dataset must write the topic that the new source reads", r.Name)
				}
			}
			if strings.Join(got, "; ") != strings.Join(c.want, "; ") {
				t.Errorf("repartitions\n got %q\nwant %q", got, c.want)
			}
			var subs []string
			for i, st := range top.SubTopologies {
				if st.ID != i+1 {
					t.Errorf("sub-topology %d numbered %d", i+1, st.ID)
				}
				subs = append(subs, names(st.Sources)+" → "+pipeNames(st.Pipes)+" → "+names(st.Sinks))
			}
			if c.subs != nil && strings.Join(subs, "; ") != strings.Join(c.subs, "; ") {
				t.Errorf("sub-topologies\n got %q\nwant %q", subs, c.subs)
			}
		})
	}
}

// TestRepartitionErrors checks the re-keyed datasets a repartition topic
// cannot replace are reported where they are declared.
func TestRepartitionErrors(t *testing.T) {
	cases := []struct{ name, src, want string }{
		{
			name: "re-keyed records in a topic read in memory",
			src: `
name: r
datasets:
  in: {topic: in}
  mid: {topic: mid}
  out: {topic: out}
pipes:
  rekey:
    from: in
    to: mid
    map: {key: country}
  count:
    from: mid
    to: out
    aggregate: {fields: {n: {op: count}}}
`,
			want: `r.yaml:5:3: pipe "count" needs records partitioned by key, but dataset "mid", which it reads in memory, carries keys changed by pipe "rekey"`,
		},
		{
			name: "a dataset named like the repartition source",
			src: `
name: r
datasets:
  in: {topic: in}
  mid: {}
  mid-repartition: {topic: other}
  out: {topic: out}
pipes:
  rekey:
    from: in
    to: mid
    map: {key: country}
  count:
    from: mid
    to: out
    aggregate: {fields: {n: {op: count}}}
`,
			want: `r.yaml:6:3: dataset "mid-repartition" has the name of the repartition dataset`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := topology.Compile("r.yaml", []byte(c.src), fstest.MapFS{})
			var te *topology.Error
			if !errors.As(err, &te) {
				t.Fatalf("Compile = %v, want a *topology.Error", err)
			}
			if !strings.Contains(te.Error(), c.want) {
				t.Errorf("got\n%s\nwant it to contain\n%s", te.Error(), c.want)
			}
		})
	}
}

// TestRepartitionPartitions checks that partitions: on the re-keyed dataset
// reaches the repartition source, for the engine to create the topic with,
// and that a partitioned table's count is the default for a join after a
// repartition.
func TestRepartitionPartitions(t *testing.T) {
	joined := `
name: r
datasets:
  in: {topic: in, partitions: 3}
  mid: {}
  out: {topic: out}
  customers: {topic: customers, table: partitioned, partitions: 8}
pipes:
  rekey:
    from: in
    to: mid
    map: {key: customer}
  join:
    from: mid
    to: out
    join: {table: customers, fields: {name: name}}
`
	jt, err := topology.Compile("r.yaml", []byte(joined), fstest.MapFS{})
	if err != nil {
		t.Fatalf("a join after a repartition need not be co-partitioned with the first source: %v", err)
	}
	if rs := jt.Repartitions(); len(rs) != 1 || rs[0].Partitions != 8 {
		t.Errorf("repartitions %v, want one with the table's 8 partitions", rs)
	}
	// The same for a merge topic, whose count cannot be declared, with the
	// table joined further down in the merge's task; and for a repartition
	// topic so.
	for name, pipes := range map[string]string{
		"merge": `
  count:
    from: [in, other]
    to: mid
    aggregate: {fields: {n: {op: count}}}
  join:
    from: mid
    to: out
    join: {table: customers, fields: {name: name}}
`,
		"repartition": `
  rekey:
    from: in
    to: mid
    map: {key: customer}
  keep:
    from: mid
    to: mid2
    filter: {when: 'true'}
  join:
    from: mid2
    to: out
    join: {table: customers, fields: {name: name}}
`,
	} {
		src := strings.Replace(strings.SplitAfter(joined, "pipes:\n")[0], "  mid: {}\n", "  mid: {}\n  mid2: {}\n  other: {topic: other, partitions: 5}\n", 1) + pipes
		top, err := topology.Compile("r.yaml", []byte(src), fstest.MapFS{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if in := top.Internal(); len(in) != 1 || in[0].Partitions != 8 {
			t.Errorf("%s: internal sources %v, want one with the table's 8 partitions", name, names(in))
		}
	}
	src := `
name: r
datasets:
  in: {topic: in}
  mid: {partitions: 6}
  out: {topic: out}
pipes:
  rekey:
    from: in
    to: mid
    map: {key: country}
  count:
    from: mid
    to: out
    aggregate: {fields: {n: {op: count}}}
`
	top, err := topology.Compile("r.yaml", []byte(src), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	rs := top.Repartitions()
	if len(rs) != 1 || rs[0].Partitions != 6 {
		t.Fatalf("repartitions %v, want one with 6 partitions", rs)
	}
	if got := strings.Join(top.TopicsRead(), ","); got != "in,streamer-r-mid-repartition" {
		t.Errorf("topics read %s", got)
	}
}

func names(ds []*topology.Dataset) string {
	var out []string
	for _, d := range ds {
		out = append(out, d.Name)
	}
	return strings.Join(out, ", ")
}

func pipeNames(ps []*topology.Pipe) string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return strings.Join(out, ", ")
}

// TestMerge checks where the compiler inserts merge topics: a keyed pipe
// whose inputs come from several tasks (two sources, or two inputs one of
// which was re-keyed) reads them from one topic, each input written to it
// under its side number; inputs from one task need none.
func TestMerge(t *testing.T) {
	const head = `
name: m
datasets:
  a: {topic: a}
  b: {topic: b}
  x: {}
  y: {}
  out: {topic: out}
  copy: {topic: copy}
pipes:
`
	const count = "    aggregate: {fields: {n: {op: count}}}\n"
	cases := []struct {
		name, pipes string
		// want is "fed datasets → merge source (topic) → sides", or "".
		want string
		subs []string
	}{
		{
			name:  "a keyed pipe reading two sources",
			pipes: "  count:\n    from: [a, b]\n    to: out\n" + count,
			want:  "a, b → count-merge (streamer-m-count-merge) → count-merge-0-a, count-merge-1-b",
			subs:  []string{"count-merge → count → out", "a →  → count-merge", "b →  → count-merge"},
		},
		{
			name:  "a keyed pipe after a stateless pipe reading two sources",
			pipes: "  shape:\n    from: [a, b]\n    to: x\n    map: {set: {s: 1}}\n  count:\n    from: x\n    to: out\n" + count,
			want:  "x → count-merge (streamer-m-count-merge) → count-merge-0-x",
			subs:  []string{"a, b → shape → count-merge", "count-merge → count → out"},
		},
		{
			name:  "two inputs from one source",
			pipes: "  split:\n    from: a\n    to: [x, y]\n    route: {routes: [{when: 'true', to: x}], default: y}\n  count:\n    from: [x, y]\n    to: out\n" + count,
			subs:  []string{"a → split, count → out"},
		},
		{
			name:  "two inputs from one source, one re-keyed",
			pipes: "  rekey:\n    from: a\n    to: x\n    map: {key: country}\n  shape:\n    from: a\n    to: y\n    map: {set: {s: 1}}\n  count:\n    from: [x, y]\n    to: out\n" + count,
			want:  "x, y → count-merge (streamer-m-count-merge) → count-merge-0-x, count-merge-1-y",
			subs:  []string{"a → rekey, shape → count-merge", "count-merge → count → out"},
		},
		{
			name:  "a source also read by a stateless pipe",
			pipes: "  count:\n    from: [a, b]\n    to: out\n" + count + "  keep:\n    from: a\n    to: copy\n    filter: {when: 'true'}\n",
			want:  "a, b → count-merge (streamer-m-count-merge) → count-merge-0-a, count-merge-1-b",
			subs:  []string{"count-merge → count → out", "a → keep → count-merge, copy", "b →  → count-merge"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			top, err := topology.Compile("m.yaml", []byte(head+c.pipes), fstest.MapFS{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, m := range top.Merges() {
				got = append(got, names(top.Feeding(m))+" → "+m.Name+" ("+m.Topic+") → "+names(m.Sides))
				if !m.IsSource() || m.Codec != nil {
					t.Errorf("%s: a merge source is read from Kafka, and decoded by side", m.Name)
				}
				for i, s := range m.Sides {
					fed := top.Feeding(m)[i]
					if s.MergeOf != m || s.Codec != fed.Codec || s.Topic != "" || slices.Contains(fed.Readers, m.Readers[0]) {
						t.Errorf("side %s: must decode %s's records off the merge topic, in place of reading it", s.Name, fed.Name)
					}
				}
				for i, port := range m.Readers[0].Env(0).Inputs {
					if !port.Consumed || port.Codec == nil {
						t.Errorf("input %d of the merged pipe: its records come decoded from the merge topic by its codec (Port.Consumed)", i)
					}
				}
				if srcs := top.UpstreamSources(m.Readers[0]); len(srcs) != 1 || srcs[0] != m {
					t.Errorf("the merged pipe's sources are %v, want the merge source alone", names(srcs))
				}
				if !slices.Contains(top.TopicsRead(), m.Topic) || !slices.Contains(top.TopicsWritten(), m.Topic) {
					t.Errorf("merge topic %s is read and written by the job", m.Topic)
				}
			}
			if strings.Join(got, "; ") != c.want {
				t.Errorf("merges\n got %q\nwant %q", strings.Join(got, "; "), c.want)
			}
			var subs []string
			for _, st := range top.SubTopologies {
				subs = append(subs, names(st.Sources)+" → "+pipeNames(st.Pipes)+" → "+names(st.Sinks))
			}
			if strings.Join(subs, "; ") != strings.Join(c.subs, "; ") {
				t.Errorf("sub-topologies\n got %q\nwant %q", subs, c.subs)
			}
		})
	}
}

// TestMergePartitions: partitions: on an in-memory input of a merge sets
// the merge topic's partition count, as on a re-keyed dataset for its
// repartition topic; the largest wins.
func TestMergePartitions(t *testing.T) {
	src := "name: m\ndatasets:\n  a: {topic: a, partitions: 3}\n  b: {topic: b, partitions: 2}\n  x: {partitions: 8}\n  out: {topic: out}\npipes:\n" +
		"  shape:\n    from: a\n    to: x\n    map: {set: {s: 1}}\n" +
		"  count:\n    from: [x, b]\n    to: out\n    aggregate: {fields: {n: {op: count}}}\n"
	top, err := topology.Compile("m.yaml", []byte(src), fstest.MapFS{})
	if err != nil {
		t.Fatal(err)
	}
	if m := top.Merges(); len(m) != 1 || m[0].Partitions != 8 {
		t.Errorf("merges %v, want one of 8 partitions", names(m))
	}
}

// TestWithGroup: a run under another group (a benchmark round, a backfill)
// gets topics of its own for everything the job makes for itself.
func TestWithGroup(t *testing.T) {
	src := "name: m\ndatasets:\n  a: {topic: a}\n  b: {topic: b}\n  out: {topic: out}\npipes:\n  count:\n    from: [a, b]\n    to: out\n    aggregate: {fields: {n: {op: count}}}\n"
	top, err := topology.Compile("m.yaml", []byte(src), fstest.MapFS{}, topology.WithGroup("other"))
	if err != nil {
		t.Fatal(err)
	}
	if top.Group != "other" || top.Datasets["count-merge"].Topic != "other-count-merge" || top.ChangelogTopic("count") != "other-count-changelog" || top.TransactionalID("r1") != "other-r1" {
		t.Errorf("group %s, merge topic %s, changelog %s", top.Group, top.Datasets["count-merge"].Topic, top.ChangelogTopic("count"))
	}
}

// TestGraceAfterInternalTopic: an event-time pipe with no grace that reads
// a repartition or merge topic gets a warning (the records of several
// partitions interleave there); one with a grace, or reading its source
// directly, does not.
func TestGraceAfterInternalTopic(t *testing.T) {
	const head = "name: g\ndatasets:\n  a: {topic: a}\n  b: {topic: b}\n  mid: {}\n  out: {topic: out}\npipes:\n"
	join := "  match:\n    from: [a, b]\n    to: out\n    stream_join: {window: 1m, GRACE into: other}\n"
	win := "  rekey:\n    from: a\n    to: mid\n    map: {key: k}\n  w:\n    from: mid\n    to: out\n    window: {type: tumbling, size: 1m, GRACE fields: {n: {op: count}}}\n"
	direct := "  w:\n    from: a\n    to: out\n    window: {type: tumbling, size: 1m, GRACE fields: {n: {op: count}}}\n"
	for _, c := range []struct {
		name, pipes, grace string
		warn               bool
	}{
		{"stream join through its merge, no grace", join, "", true},
		{"stream join through its merge, with grace", join, "grace: 5s,", false},
		{"window after a repartition, no grace", win, "", true},
		{"window after a repartition, with grace", win, "grace: 5s,", false},
		{"window on its source, no grace", direct, "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			src := head + strings.ReplaceAll(c.pipes, "GRACE ", c.grace+" ")
			top, err := topology.Compile("g.yaml", []byte(src), fstest.MapFS{})
			if err != nil {
				t.Fatal(err)
			}
			warned := false
			for _, w := range top.Warnings {
				warned = warned || strings.Contains(w.String(), "has no grace: records a little behind the others will be late")
			}
			if warned != c.warn {
				t.Errorf("warned %v, want %v: %v", warned, c.warn, top.Warnings)
			}
		})
	}
}
