package builtin_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/state"
)

// Schemas of the two inputs of the stream joins below.
var (
	sjOrders = &pipes.Schema{Fields: []pipes.SchemaField{
		{Name: "id", Kind: pipes.String}, {Name: "at", Kind: pipes.Int64}, {Name: "total", Kind: pipes.Float64},
	}}
	sjPayments = &pipes.Schema{Fields: []pipes.SchemaField{
		{Name: "id", Kind: pipes.String}, {Name: "at", Kind: pipes.Int64}, {Name: "amount", Kind: pipes.Float64},
	}}
)

// buildStreamJoin makes a stream_join pipe from its config. st nil gives it
// an in-memory store of its own; ports nil gives it inputs orders and
// payments without schemas or codecs.
func buildStreamJoin(t testing.TB, conf string, st pipes.Store, ports []pipes.Port) (pipes.Pipe, error) {
	t.Helper()
	pt, ok := pipes.Lookup("stream_join")
	if !ok {
		t.Fatal("stream_join is not registered")
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := pt.Decode(n.Content[0])
	if len(errs) > 0 {
		return nil, errs[0]
	}
	if ports == nil {
		ports = []pipes.Port{{Dataset: "orders"}, {Dataset: "payments"}}
	}
	env := &pipes.Env{Pipe: "sj", Inputs: ports, Outputs: []pipes.Port{{Dataset: "out"}}}
	if st != nil {
		env.Stores = func(string) (pipes.Store, error) { return strictStore{st, t}, nil }
	}
	return cfg.New(env)
}

func mustStreamJoin(t testing.TB, conf string, st pipes.Store) pipes.Pipe {
	t.Helper()
	p, err := buildStreamJoin(t, conf, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sje is a record of a stream join test: its side (0 left, 1 right), key,
// event time and id. Its timestamp is its event time unless ts is set.
type sje struct {
	side int
	key  string
	at   int64 // ms after t0
	id   string
	ts   *int64 // ms after t0
}

func sjL(key string, at int64, id string) sje { return sje{side: 0, key: key, at: at, id: id} }
func sjR(key string, at int64, id string) sje { return sje{side: 1, key: key, at: at, id: id} }

func (e sje) record() *pipes.Record {
	ts := e.at
	if e.ts != nil {
		ts = *e.ts
	}
	return &pipes.Record{
		Key:       []byte(e.key),
		Timestamp: t0.Add(time.Duration(ts) * time.Millisecond),
		Value:     map[string]any{"id": e.id, "at": float64(e.at)},
	}
}

// sjOut writes an output as `key left-id+right-id@timestamp`, the
// timestamp in ms after t0 and "-" for a null id.
func sjOut(t testing.TB, r *pipes.Record) string {
	t.Helper()
	v, ok := r.Value.(map[string]any)
	if !ok {
		t.Fatalf("output value %T", r.Value)
	}
	lid, rid := "-", "-"
	if v["id"] != nil {
		lid = fmt.Sprint(v["id"])
	}
	if v["rid"] != nil {
		rid = v["rid"].(string)
	}
	return fmt.Sprintf("%s %s+%s@%d", r.Key, lid, rid, r.Timestamp.Sub(t0).Milliseconds())
}

// runStreamJoin runs batches of records through p, each as one interleaved
// batch or as runs of one input each, and returns the outputs and the
// failures (`id: error`).
func runStreamJoin(t testing.TB, p pipes.Pipe, interleaved bool, batches ...[]sje) (outs, fails []string) {
	t.Helper()
	for _, b := range batches {
		o, f := sjBatch(t, p, interleaved, b)
		outs, fails = append(outs, o...), append(fails, f...)
	}
	return outs, fails
}

func sjBatch(t testing.TB, p pipes.Pipe, interleaved bool, b []sje) (outs, fails []string) {
	t.Helper()
	var batches []*pipes.Batch
	if interleaved {
		batch := &pipes.Batch{Inputs: []int{}}
		for _, e := range b {
			batch.Records = append(batch.Records, e.record())
			batch.Inputs = append(batch.Inputs, e.side)
		}
		batches = append(batches, batch)
	} else {
		for i, e := range b {
			if i == 0 || b[i-1].side != e.side {
				batches = append(batches, &pipes.Batch{Input: e.side})
			}
			last := batches[len(batches)-1]
			last.Records = append(last.Records, e.record())
		}
	}
	for _, batch := range batches {
		out := pipes.NewOutput(1)
		if err := p.Process(context.Background(), batch, out); err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records(0) {
			outs = append(outs, sjOut(t, r))
		}
		for _, f := range out.Failures() {
			fails = append(fails, fmt.Sprintf("%v: %v", f.Record.Value.(map[string]any)["id"], f.Err))
		}
	}
	return outs, fails
}

func TestStreamJoinConfigErrors(t *testing.T) {
	both := []pipes.Port{{Dataset: "orders", Schema: sjOrders}, {Dataset: "payments", Schema: sjPayments}}
	cases := []struct {
		name, conf string
		ports      []pipes.Port
		want       []string
	}{
		{"one input", "window: 1m\nfields: {rid: id}", []pipes.Port{{Dataset: "orders"}}, []string{"1:1: stream_join reads two inputs, from: [left, right]; it has 1"}},
		{"three inputs", "window: 1m\nfields: {rid: id}", []pipes.Port{{Dataset: "a"}, {Dataset: "b"}, {Dataset: "c"}}, []string{"from: [left, right]; it has 3"}},
		{"no window", "fields: {rid: id}", nil, []string{"say how close in event time records join: window: such as 5m, or before: and after:"}},
		{"before without after", "before: 1s\nfields: {rid: id}", nil, []string{"window: such as 5m, or before: and after:"}},
		{"window and before", "window: 1s\nbefore: 1s\nafter: 1s\nfields: {rid: id}", nil, []string{"give window: (the same either way), or before: and after:, not both"}},
		{"before and after both 0", "before: 0s\nafter: 0s\nfields: {rid: id}", nil, []string{"before: and after: are both 0"}},
		{"after finer than ms", "before: 1s\nafter: 1500us\nfields: {rid: id}", nil, []string{"after: 1.5ms is not a whole number of milliseconds"}},
		{"zero window", "window: 0s\nfields: {rid: id}", nil, []string{"window: must be a positive duration"}},
		{"negative window", "window: -1s\nfields: {rid: id}", nil, []string{"1:9: window: a duration cannot be negative, got -1s"}},
		{"window finer than ms", "window: 1500us\nfields: {rid: id}", nil, []string{"window: 1.5ms is not a whole number of milliseconds"}},
		{"grace finer than ms", "window: 1s\ngrace: 1001us\nfields: {rid: id}", nil, []string{"grace: 1.001ms is not a whole number of milliseconds"}},
		{"fields and into", "window: 1s\nfields: {rid: id}\ninto: payment", nil, []string{"give fields: or into:, not both"}},
		{"neither fields nor into", "window: 1s", nil, []string{"say what the join adds: fields: (output field: right field) or into: (a field for the whole right value)"}},
		{"empty into", "window: 1s\ninto: ''", nil, []string{"2:7: want a field name"}},
		{"unknown right field", "window: 1s\nfields: {paid: amout}", both, []string{`2:16: right input "payments" has no field "amout" (did you mean "amount"?)`}},
		{"a left-only field is not a right field", "window: 1s\nfields: {t: total}", both, []string{`right input "payments" has no field "total"`}},
		{"bad type", "window: 1s\ntype: full\nfields: {rid: id}", nil, []string{`"full" is not one of inner, left, outer`}},
		{"bad late", "window: 1s\nlate: keep\nfields: {rid: id}", nil, []string{`"keep" is not one of dlq, drop`}},
		{"time does not compile", "window: 1s\ntime: at +\nfields: {rid: id}", nil, []string{`2:10: in expression "at +"`}},
		{"every error at once", "window: 0s\ngrace: 1500us\nfields: {paid: amout}\ntime: at +", both, []string{
			"window: must be a positive duration", "grace: 1.5ms", `3:16: right input "payments" has no field "amout"`, `4:10: in expression "at +"`,
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := buildStreamJoin(t, c.conf, nil, c.ports)
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q, want it to contain %q", err, w)
				}
			}
		})
	}
	// Field checks need the right schema only: an unknown one accepts any.
	if _, err := buildStreamJoin(t, "window: 1s\nfields: {paid: whatever}", nil, []pipes.Port{{Dataset: "orders", Schema: sjOrders}, {Dataset: "payments"}}); err != nil {
		t.Errorf("unknown right schema: %v", err)
	}
}

const sjFields = "fields: {rid: id}\n"

func TestStreamJoinInner(t *testing.T) {
	cases := []struct {
		name    string
		conf    string
		batches [][]sje
		want    []string
	}{
		{
			name:    "left then right, and right then left",
			conf:    "window: 10s\n" + sjFields,
			batches: [][]sje{{sjL("a", 1000, "o1"), sjR("a", 3000, "p1"), sjR("b", 5000, "p2"), sjL("b", 6000, "o2")}},
			want:    []string{"a o1+p1@3000", "b o2+p2@6000"},
		},
		{
			name: "exactly window apart joins, either way; 1ms more does not",
			conf: "window: 10s\ngrace: 1m\n" + sjFields,
			batches: [][]sje{
				{sjL("a", 20000, "o1"), sjR("a", 30000, "in+"), sjR("a", 10000, "in-"), sjR("a", 30001, "out+"), sjR("a", 9999, "out-")},
				{sjR("b", 20000, "p1"), sjL("b", 30000, "in+"), sjL("b", 10000, "in-"), sjL("b", 30001, "out+"), sjL("b", 9999, "out-")},
			},
			want: []string{"a o1+in+@30000", "a o1+in-@20000", "b in++p1@30000", "b in-+p1@20000"},
		},
		{
			name: "several matches per key, in event time order of the stored side",
			conf: "window: 10s\ngrace: 1m\n" + sjFields,
			batches: [][]sje{
				{sjR("a", 5000, "p5"), sjR("a", 2000, "p2"), sjR("a", 2000, "p2b"), sjR("a", 30000, "far")},
				{sjL("a", 4000, "o1"), sjR("a", 9000, "p9")},
			},
			want: []string{"a o1+p2@4000", "a o1+p2b@4000", "a o1+p5@5000", "a o1+p9@9000"},
		},
		{
			name:    "keys do not cross, and a side never matches itself",
			conf:    "window: 10s\n" + sjFields,
			batches: [][]sje{{sjL("a", 1000, "o1"), sjL("a", 1000, "o2"), sjR("b", 1000, "p1"), sjR("ab", 1000, "p2")}},
		},
		{
			name:    "the later timestamp wins",
			conf:    "window: 10s\ntime: at\n" + sjFields,
			batches: [][]sje{{{side: 0, key: "a", at: 1000, id: "o1", ts: ptr(int64(50000))}, {side: 1, key: "a", at: 2000, id: "p1", ts: ptr(int64(40000))}, {side: 1, key: "a", at: 3000, id: "p2", ts: ptr(int64(60000))}}},
			want:    []string{"a o1+p1@50000", "a o1+p2@60000"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, interleaved := range []bool{true, false} {
				got, fails := runStreamJoin(t, mustStreamJoin(t, c.conf, nil), interleaved, c.batches...)
				if !slices.Equal(got, c.want) || len(fails) > 0 {
					t.Errorf("interleaved %v:\n got %q, failures %q\nwant %q", interleaved, got, fails, c.want)
				}
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

func TestStreamJoinLeft(t *testing.T) {
	conf := "window: 10s\ngrace: 5s\ntype: left\n" + sjFields
	cases := []struct {
		name    string
		batches [][]sje
		want    []string
	}{
		{
			name: "unmatched: emitted once, when stream time passes t+window+grace",
			batches: [][]sje{
				{sjL("a", 1000, "o1")},
				{sjR("z", 15999, "x")}, // W = 10999: not yet
				{sjR("z", 16000, "y")}, // W = 11000 > 1000+10000: now
				{sjR("z", 50000, "w")}, // never again
			},
			want: []string{"a o1+-@1000"},
		},
		{
			name: "matched later: not emitted unmatched",
			batches: [][]sje{
				{sjL("a", 1000, "o1"), sjR("a", 9000, "p1")},
				{sjR("z", 50000, "x")},
			},
			want: []string{"a o1+p1@9000"},
		},
		{
			name: "matched on arrival: not emitted again",
			batches: [][]sje{
				{sjR("a", 1000, "p1"), sjL("a", 2000, "o1")},
				{sjR("z", 50000, "x"), sjR("a", 3000, "late")},
			},
			want: []string{"a o1+p1@2000"},
		},
		{
			name: "in index order: time, then key",
			batches: [][]sje{
				{sjL("b", 1000, "o1"), sjL("a", 2000, "o2"), sjL("a", 1000, "o3")},
				{sjR("z", 50000, "x")},
			},
			want: []string{"a o3+-@1000", "b o1+-@1000", "a o2+-@2000"},
		},
		{
			name: "a right record that matched nothing is never emitted",
			batches: [][]sje{
				{sjR("a", 1000, "p1")},
				{sjL("z", 50000, "o1")},
			},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := pipes.NewMemoryStore()
			p := mustStreamJoin(t, conf, st)
			got, _ := runStreamJoin(t, p, true, c.batches...)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}

	// into: the whole right value, null when unmatched.
	p := mustStreamJoin(t, "window: 1s\ntype: left\ninto: payment", nil)
	out := pipes.NewOutput(1)
	b := &pipes.Batch{Inputs: []int{0, 1, 0, 1}, Records: []*pipes.Record{
		sjL("a", 0, "o1").record(), sjR("a", 500, "p1").record(), sjL("b", 500, "o2").record(), sjR("z", 5000, "x").record(),
	}}
	if err := p.Process(context.Background(), b, out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out.Records(0) {
		js, _ := json.Marshal(r.Value)
		got = append(got, string(js))
	}
	want := []string{`{"at":0,"id":"o1","payment":{"at":500,"id":"p1"}}`, `{"at":500,"id":"o2","payment":null}`}
	if !slices.Equal(got, want) {
		t.Errorf("into:\n got %s\nwant %s", got, want)
	}
	if u := out.Records(0)[1]; u.Origin != nil || u.Headers != nil || !u.Timestamp.Equal(t0.Add(500*time.Millisecond)) {
		t.Errorf("unmatched output %+v: want no origin, no headers, its own timestamp", u)
	}
}

func TestStreamJoinLate(t *testing.T) {
	cases := []struct {
		name    string
		conf    string
		batches [][]sje
		want    []string
		fails   []string
	}{
		{
			name:    "late: dlq fails the record, saying how late",
			conf:    "window: 10s\ngrace: 5s\n" + sjFields,
			batches: [][]sje{{sjL("a", 100000, "o1"), sjR("a", 94999, "p1"), sjR("a", 95000, "p2")}},
			want:    []string{"a o1+p2@100000"},
			fails:   []string{"p1: late record: event time 2026-01-01T00:01:34.999Z is 5.001s behind stream time 2026-01-01T00:01:40Z, more than grace 5s: the records it would join may be gone"},
		},
		{
			name:    "late records are not stored: nothing joins them later",
			conf:    "window: 10s\n" + sjFields,
			batches: [][]sje{{sjL("a", 100000, "o1"), sjR("a", 99000, "p1")}, {sjL("a", 99000, "o2"), sjL("a", 100000, "o3")}},
			fails:   []string{"p1: late record", "o2: late record"},
		},
		{
			name:    "late: drop drops quietly",
			conf:    "window: 10s\nlate: drop\n" + sjFields,
			batches: [][]sje{{sjL("a", 100000, "o1"), sjR("a", 99999, "p1"), sjR("a", 100000, "p2")}},
			want:    []string{"a o1+p2@100000"},
		},
		{
			name:    "grace lets an out-of-order record join",
			conf:    "window: 2s\ngrace: 30s\n" + sjFields,
			batches: [][]sje{{sjL("a", 10000, "o1"), sjR("z", 40000, "x")}, {sjR("a", 11000, "p1"), sjR("a", 9999, "p2")}},
			want:    []string{"a o1+p1@11000"},
			fails:   []string{"p2: late record"},
		},
		{
			name:    "stream time counts both inputs",
			conf:    "window: 1s\n" + sjFields,
			batches: [][]sje{{sjR("z", 5000, "x"), sjL("a", 4999, "o1")}},
			fails:   []string{"o1: late record"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, fails := runStreamJoin(t, mustStreamJoin(t, c.conf, nil), true, c.batches...)
			if !slices.Equal(got, c.want) {
				t.Errorf("got %q, want %q", got, c.want)
			}
			if len(fails) != len(c.fails) {
				t.Fatalf("failures %q, want %q", fails, c.fails)
			}
			for i := range fails {
				if !strings.HasPrefix(fails[i], c.fails[i]) {
					t.Errorf("failure %q, want %q", fails[i], c.fails[i])
				}
			}
		})
	}
}

// TestStreamJoinRecordErrors: records the join cannot take fail one by one,
// and change no state.
func TestStreamJoinRecordErrors(t *testing.T) {
	p := mustStreamJoin(t, "window: 1s\ntime: at\n"+sjFields, nil)
	recs := []*pipes.Record{
		{Value: map[string]any{"id": "nokey", "at": 1.0}},
		{Key: []byte("a"), Value: "text"},
		{Key: []byte("a"), Value: []any{1.0}},
		{Key: []byte("a"), Value: map[string]any{"id": "noat"}},
		{Key: []byte("a"), Value: map[string]any{"id": "future", "at": 1e18}},
		{Key: []byte("a"), Value: map[string]any{"id": "o1", "at": 1000.0}},
		{Key: []byte("a"), Value: map[string]any{"id": "p1", "at": 1000.0}},
	}
	out := pipes.NewOutput(1)
	if err := p.Process(context.Background(), &pipes.Batch{Inputs: []int{0, 0, 1, 0, 1, 0, 1}, Records: recs}, out); err != nil {
		t.Fatal(err)
	}
	var fails []string
	for _, f := range out.Failures() {
		fails = append(fails, f.Err.Error())
	}
	want := []string{
		"stream_join needs keyed records",
		"stream_join needs left records whose values are objects, got string",
		"stream_join: fields: needs right records whose values are objects, got []interface {}: use into: to take the value whole",
		`event time "at" is null`,
		`event time "at" gave 1e+18`,
	}
	if len(fails) != len(want) {
		t.Fatalf("failures %q, want %q", fails, want)
	}
	for i := range want {
		if !strings.Contains(fails[i], want[i]) {
			t.Errorf("failure %q, want %q", fails[i], want[i])
		}
	}
	if n := len(out.Records(0)); n != 1 {
		t.Errorf("%d outputs, want 1: the failed records must not move stream time", n)
	}
	// A record of a third input is the engine's bug: the batch fails.
	if err := p.Process(context.Background(), &pipes.Batch{Input: 2, Records: recs[5:6]}, pipes.NewOutput(1)); err == nil {
		t.Error("a record of input 2 did not fail the batch")
	}
}

// TestStreamJoinBatchShapes: one interleaved batch, one batch per run of an
// input, and one record per batch give the same outputs for records in
// event time order.
func TestStreamJoinBatchShapes(t *testing.T) {
	var recs []sje
	for i := range 60 {
		recs = append(recs, sje{side: i / 3 % 2, key: string(rune('a' + i%2)), at: int64(i) * 500, id: fmt.Sprint(i)})
	}
	for _, conf := range []string{"window: 2s\n" + sjFields, "window: 2s\ngrace: 1s\ntype: left\n" + sjFields} {
		one, _ := runStreamJoin(t, mustStreamJoin(t, conf, nil), true, recs)
		runs, _ := runStreamJoin(t, mustStreamJoin(t, conf, nil), false, recs)
		var singles [][]sje
		for _, r := range recs {
			singles = append(singles, []sje{r})
		}
		each, _ := runStreamJoin(t, mustStreamJoin(t, conf, nil), true, singles...)
		if len(one) < 20 {
			t.Fatalf("only %d outputs: the scenario is too thin", len(one))
		}
		if !strings.Contains(conf, "type: left") {
			// Matches are emitted on arrival: the order is the same too.
			if !slices.Equal(one, runs) || !slices.Equal(one, each) {
				t.Errorf("%s:\ninterleaved %q\nper input   %q\nsingles     %q", conf, one, runs, each)
			}
			continue
		}
		slices.Sort(one)
		slices.Sort(runs)
		slices.Sort(each)
		if !slices.Equal(one, runs) || !slices.Equal(one, each) {
			t.Errorf("%s:\ninterleaved %q\nper input   %q\nsingles     %q", conf, one, runs, each)
		}
	}
}

// TestStreamJoinOracle runs random out-of-order streams of both inputs, in
// random batches, through inner and left joins, and compares the outputs of
// every batch and the late records with a brute-force model written from
// the definition: it keeps every on-time record and checks each new one
// against all of them. Two different splits of one stream into batches must
// give the same outputs.
func TestStreamJoinOracle(t *testing.T) {
	seeds := []uint64{1, 2, 3, 4, 5, 6, 7, 8, uint64(time.Now().UnixNano())}
	t.Logf("random seed %d", seeds[len(seeds)-1])
	for _, seed := range seeds {
		for _, typ := range []string{"inner", "left", "outer"} {
			for ci, g := range []int64{0, 2000, 1000} {
				// The third runs an asymmetric interval: right records
				// from 1s before to 4s after a left one.
				bounds, before, after := "window: 3s", int64(3000), int64(3000)
				if ci == 2 {
					bounds, before, after = "before: 1s\nafter: 4s", 1000, 4000
				}
				conf := fmt.Sprintf("%s\ngrace: %dms\ntype: %s\ntime: at\n%s", bounds, g, typ, sjFields)
				rng := rand.New(rand.NewPCG(seed, uint64(g)))
				events := sjRandomEvents(rng, 300)
				var totals [2][]string
				for split := range 2 {
					batches := sjSplit(rng, events)
					p := mustStreamJoin(t, conf, pipes.NewMemoryStore())
					m := &sjModel{before: before, after: after, grace: g, left: typ != "inner", outer: typ == "outer", now: -1 << 62}
					for bi, b := range batches {
						var want, wantLate []string
						for _, e := range b {
							outs, late := m.add(e)
							want = append(want, outs...)
							if late {
								wantLate = append(wantLate, e.id)
							}
						}
						want = append(want, m.endBatch()...)
						got, fails := sjBatch(t, p, true, b)
						var gotLate []string
						for _, f := range fails {
							id, msg, _ := strings.Cut(f, ": ")
							if !strings.HasPrefix(msg, "late record") {
								t.Fatalf("failure %s", f)
							}
							gotLate = append(gotLate, id)
						}
						totals[split] = append(totals[split], got...)
						slices.Sort(got)
						slices.Sort(want)
						if !slices.Equal(got, want) || !slices.Equal(gotLate, wantLate) {
							t.Fatalf("seed %d, %s, split %d, batch %d:\n got %q late %q\nwant %q late %q",
								seed, strings.ReplaceAll(conf, "\n", "; "), split, bi, got, gotLate, want, wantLate)
						}
					}
				}
				slices.Sort(totals[0])
				slices.Sort(totals[1])
				if !slices.Equal(totals[0], totals[1]) {
					t.Fatalf("seed %d, %s: the two splits differ:\n%q\n%q", seed, conf, totals[0], totals[1])
				}
				if len(totals[0]) == 0 {
					t.Fatalf("seed %d, %s: no outputs at all", seed, conf)
				}
			}
		}
	}
}

// sjRandomEvents makes n records of both inputs, keys a to c, times going
// forward with jitter and now and then far back; their timestamps are
// unrelated to their event times.
func sjRandomEvents(rng *rand.Rand, n int) []sje {
	var events []sje
	var clock int64 = 100000
	for i := range n {
		clock += rng.Int64N(1500)
		at := clock - rng.Int64N(3000)
		if rng.IntN(10) == 0 {
			at = clock - rng.Int64N(20000)
		}
		ts := rng.Int64N(1000000)
		events = append(events, sje{side: rng.IntN(2), key: string(rune('a' + rng.IntN(3))), at: at, id: fmt.Sprint(i), ts: &ts})
	}
	return events
}

// sjSplit cuts events into batches of 1 to 12.
func sjSplit(rng *rand.Rand, events []sje) [][]sje {
	var out [][]sje
	for len(events) > 0 {
		n := min(rng.IntN(12)+1, len(events))
		out = append(out, events[:n])
		events = events[n:]
	}
	return out
}

// sjModel is the oracle of the stream join.
type sjModel struct {
	before, after, grace int64
	left, outer          bool
	now                  int64
	kept                 []*sjKept // the on-time records, in arrival order
}

type sjKept struct {
	sje
	matched, expired bool
}

func (m *sjModel) watermark() int64 { return m.now - m.grace }

// expired reports whether no on-time record can match k any more: one of
// the other side at or after the watermark is too late for it.
func (m *sjModel) expired(k *sjKept) bool {
	if k.side == 0 {
		return m.watermark() > k.at+m.after
	}
	return m.watermark() > k.at+m.before
}

// add takes one record, returning the pairs it completes and whether it is
// late.
func (m *sjModel) add(e sje) ([]string, bool) {
	m.now = max(m.now, e.at)
	if e.at < m.watermark() {
		return nil, true
	}
	me := &sjKept{sje: e}
	var outs []string
	for _, k := range m.kept {
		if k.side == e.side || k.key != e.key || m.expired(k) || k.expired {
			continue
		}
		l, r := k.sje, e
		if e.side == 0 {
			l, r = e, k.sje
		}
		if r.at < l.at-m.before || r.at > l.at+m.after {
			continue
		}
		outs = append(outs, fmt.Sprintf("%s %s+%s@%d", e.key, l.id, r.id, max(*l.ts, *r.ts)))
		k.matched, me.matched = true, true
	}
	m.kept = append(m.kept, me)
	return outs, false
}

// endBatch forgets the records that expired, returning the unmatched left
// ones of a left join.
func (m *sjModel) endBatch() []string {
	var outs []string
	for _, k := range m.kept {
		if k.expired || !m.expired(k) {
			continue
		}
		k.expired = true
		switch {
		case k.matched:
		case m.left && k.side == 0:
			outs = append(outs, fmt.Sprintf("%s %s+-@%d", k.key, k.id, *k.ts))
		case m.outer && k.side == 1:
			outs = append(outs, fmt.Sprintf("%s -+%s@%d", k.key, k.id, *k.ts))
		}
	}
	return outs
}

// TestStreamJoinRestart: the records waiting for a match, stream time and
// the sequence counter live in the store. A pipe built on a reopened Pebble
// store carries on as one that never stopped, and an aborted batch leaves
// no trace.
func TestStreamJoinRestart(t *testing.T) {
	for _, conf := range []string{"window: 10s\ngrace: 2s\n" + sjFields, "window: 10s\ngrace: 2s\ntype: left\n" + sjFields} {
		first := []sje{sjL("a", 10000, "o1"), sjR("b", 11000, "p1"), sjL("a", 10000, "o2"), sjL("d", 12000, "o6"), sjL("c", 20000, "o3")}
		// After the restart: p2 joins o1 and o2, which waited in the store
		// (it would be late had the aborted batch's stream time stayed);
		// q1 is late only because stream time survived; o4 joins p1; 60000
		// expires everything, which emits o6 in the left join.
		second := []sje{sjR("a", 19000, "p2"), sjR("c", 17000, "q1"), sjL("b", 21000, "o4"), sjR("c", 25000, "p3")}
		third := []sje{sjR("z", 60000, "x")}
		wantOut, wantFail := runStreamJoin(t, mustStreamJoin(t, conf, nil), true, first, second, third)
		if len(wantFail) == 0 || len(wantOut) < 4 {
			t.Fatalf("the scenario needs outputs and late records after the restart: %q %q", wantOut, wantFail)
		}
		dir := t.TempDir()
		st, err := state.OpenPebble(dir)
		if err != nil {
			t.Fatal(err)
		}
		p := mustStreamJoin(t, conf, st)
		out1, fail1 := runStreamJoin(t, p, true, first)
		if err := st.Commit(1); err != nil {
			t.Fatal(err)
		}
		// An aborted batch: its stream time, records and sequence numbers
		// vanish with it, and so do its outputs.
		runStreamJoin(t, p, true, []sje{sjL("a", 5000, "gone"), sjR("z", 500000, "gone")})
		if err := st.Abort(); err != nil {
			t.Fatal(err)
		}
		out2, fail2 := runStreamJoin(t, p, true, second[:1])
		if err := st.Commit(2); err != nil {
			t.Fatal(err)
		}
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		st, err = state.OpenPebble(dir)
		if err != nil {
			t.Fatal(err)
		}
		out3, fail3 := runStreamJoin(t, mustStreamJoin(t, conf, st), true, second[1:], third)
		if err := st.Close(); err != nil {
			t.Fatal(err)
		}
		got, gotFail := slices.Concat(out1, out2, out3), slices.Concat(fail1, fail2, fail3)
		if !slices.Equal(got, wantOut) || !slices.Equal(gotFail, wantFail) {
			t.Errorf("%s: with a restart\n got %q %q\nwant %q %q", conf, got, gotFail, wantOut, wantFail)
		}
	}
}

// TestStreamJoinExpiry: expired records leave the store with their index
// entries; the stream time and the counter stay.
func TestStreamJoinExpiry(t *testing.T) {
	st := pipes.NewMemoryStore()
	p := mustStreamJoin(t, "window: 10s\ngrace: 5s\ntype: left\n"+sjFields, st)
	runStreamJoin(t, p, true, []sje{sjL("a", 1000, "o1"), sjR("a", 2000, "p1"), sjL("b", 3000, "o2"), sjR("z", 16000, "x")})
	if n := storeKeys(t, st); n['r'] != 4 || n['x'] != 4 || n['s'] != 1 || n['n'] != 1 {
		t.Errorf("store before expiry: %v", n)
	}
	runStreamJoin(t, p, true, []sje{sjR("z", 18000, "y")}) // W = 13000 > 2000+10000
	if n := storeKeys(t, st); n['r'] != 3 || n['x'] != 3 {
		t.Errorf("store after expiry: %v, want p1 and o1 gone", n)
	}
}

// TestStreamJoinEmitsAllExpired: when one record moves stream time past
// more unmatched left records than a batch purges (purgeLimit), a left
// join still emits every one of them in that batch, once; the next batch
// deletes the rest without emitting any again.
func TestStreamJoinEmitsAllExpired(t *testing.T) {
	st, err := state.OpenPebble(t.TempDir()) // the map store sorts all keys per scan
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	p := mustStreamJoin(t, "window: 1s\ntype: left\n"+sjFields, st)
	const n = 4500
	var first []sje
	for i := range n {
		first = append(first, sjL(fmt.Sprint("k", i%50), int64(i/10), fmt.Sprint("o", i))) // all within the window
	}
	if outs, _ := runStreamJoin(t, p, true, first); len(outs) != 0 {
		t.Fatalf("%d outputs before anything expired", len(outs))
	}
	outs, _ := runStreamJoin(t, p, true, []sje{sjR("z", 100_000, "far")})
	if len(outs) != n {
		t.Fatalf("%d unmatched left records emitted, want all %d", len(outs), n)
	}
	outs, _ = runStreamJoin(t, p, true, []sje{sjR("z", 100_001, "next")})
	if len(outs) != 0 {
		t.Errorf("%d emitted again", len(outs))
	}
	if c := storeKeys(t, st); c['r'] != 2 || c['x'] != 2 {
		t.Errorf("store after two batches: %v, want only the two right records", c)
	}
}

// fakeCodec stands for a dataset's codec: it writes a tag before JSON, and
// decodes whole numbers as int64, as an Avro long would.
type fakeCodec struct {
	encodes, decodes int
}

func (c *fakeCodec) AppendEncode(dst []byte, v any) ([]byte, error) {
	c.encodes++
	if m, ok := v.(map[string]any); ok && m["bad"] != nil {
		return dst, errors.New("no such field bad in the schema")
	}
	js, err := json.Marshal(v)
	return append(append(dst, "fake:"...), js...), err
}

func (c *fakeCodec) Decode(b []byte) (any, error) {
	c.decodes++
	rest, ok := bytes.CutPrefix(b, []byte("fake:"))
	if !ok {
		return nil, fmt.Errorf("not written by the fake codec: %q", b)
	}
	d := json.NewDecoder(bytes.NewReader(rest))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return nil, err
	}
	return longs(v), nil
}

func longs(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = longs(e)
		}
	case []any:
		for i, e := range x {
			x[i] = longs(e)
		}
	case json.Number:
		if n, err := x.Int64(); err == nil {
			return n
		}
		f, _ := x.Float64()
		return f
	}
	return v
}

// TestStreamJoinCodec: stored values go through their input's codec, so
// what a match emits from the store has the types a decode gives; a value
// the codec refuses fails its record.
func TestStreamJoinCodec(t *testing.T) {
	lc, rc := &fakeCodec{}, &fakeCodec{}
	st := pipes.NewMemoryStore()
	ports := []pipes.Port{{Dataset: "orders", Codec: lc}, {Dataset: "payments", Codec: rc}}
	p, err := buildStreamJoin(t, "window: 10s\ninto: payment", st, ports)
	if err != nil {
		t.Fatal(err)
	}
	ts := t0.Add(time.Second)
	recs := []*pipes.Record{
		{Key: []byte("a"), Timestamp: ts, Value: map[string]any{"id": "o1", "n": 7.0}},
		{Key: []byte("a"), Timestamp: ts, Value: "a right value that is text"},
		{Key: []byte("a"), Timestamp: ts, Value: map[string]any{"id": "o2", "bad": true}},
		{Key: []byte("a"), Timestamp: ts, Value: map[string]any{"id": "o3", "n": 8.0}},
	}
	out := pipes.NewOutput(1)
	if err := p.Process(context.Background(), &pipes.Batch{Inputs: []int{0, 1, 0, 0}, Records: recs}, out); err != nil {
		t.Fatal(err)
	}
	if lc.encodes != 3 || rc.encodes != 1 || lc.decodes != 1 || rc.decodes != 1 {
		t.Errorf("left codec %+v, right codec %+v: want each value stored encoded, and decoded once per match", lc, rc)
	}
	got := out.Records(0)
	if len(got) != 2 {
		t.Fatalf("%d outputs, want 2", len(got))
	}
	// The first came from the stored left value: n is the codec's int64.
	if m := got[0].Value.(map[string]any); m["n"] != int64(7) || m["payment"] != "a right value that is text" {
		t.Errorf("first output %#v, want n the decoded int64 and the text", m)
	}
	// The second is the arriving left value, unchanged, and the stored text.
	if m := got[1].Value.(map[string]any); m["n"] != 8.0 || m["payment"] != "a right value that is text" {
		t.Errorf("second output %#v", m)
	}
	if f := out.Failures(); len(f) != 1 || !strings.Contains(f[0].Err.Error(), "stream_join: cannot store the left value: no such field bad") {
		t.Errorf("failures %v, want the codec's refusal", f)
	}
	var raw int
	_ = st.Prefix([]byte{'r'}, func(_, v []byte) bool {
		if bytes.Contains(v, []byte("fake:")) {
			raw++
		}
		return true
	})
	if raw != 3 {
		t.Errorf("%d stored values were written by the codec, want 3", raw)
	}
}

// TestStreamJoinStoresConsumedBytes: for inputs read straight from Kafka
// (Port.Consumed), the join stores each record's consumed bytes rather than
// encoding its value again, and decodes them with the codec on a match.
func TestStreamJoinStoresConsumedBytes(t *testing.T) {
	lc, rc := &fakeCodec{}, &fakeCodec{}
	st := pipes.NewMemoryStore()
	ports := []pipes.Port{{Dataset: "orders", Codec: lc, Consumed: true}, {Dataset: "payments", Codec: rc, Consumed: true}}
	p, err := buildStreamJoin(t, "window: 10s\nfields: {paid: amount}", st, ports)
	if err != nil {
		t.Fatal(err)
	}
	ts := t0.Add(time.Second)
	consumed := func(value any, raw string) *pipes.Record {
		return &pipes.Record{Key: []byte("a"), Timestamp: ts, Value: value, Origin: &pipes.Origin{Value: []byte(raw)}}
	}
	recs := []*pipes.Record{
		consumed(map[string]any{"id": "o1"}, `fake:{"id":"o1"}`),
		consumed(map[string]any{"amount": 5.0}, `fake:{"amount":5}`),
	}
	out := pipes.NewOutput(1)
	if err := p.Process(context.Background(), &pipes.Batch{Inputs: []int{0, 1}, Records: recs}, out); err != nil {
		t.Fatal(err)
	}
	if lc.encodes != 0 || rc.encodes != 0 || lc.decodes != 1 {
		t.Errorf("left codec %+v, right codec %+v: want no encoding, the stored left value decoded once", lc, rc)
	}
	if got := out.Records(0); len(got) != 1 || got[0].Value.(map[string]any)["paid"] != 5.0 || got[0].Value.(map[string]any)["id"] != "o1" {
		t.Errorf("outputs %v", got)
	}
}

// TestStreamJoinSchema: the output schema is the left input's plus the
// right fields, nullable, typed from the right schema; unknown without the
// left schema. The pipe wants interleaved batches and, storing whole
// records, does not say which fields it uses.
func TestStreamJoinSchema(t *testing.T) {
	ports := []pipes.Port{{Dataset: "orders", Schema: sjOrders}, {Dataset: "payments", Schema: sjPayments}}
	p, err := buildStreamJoin(t, "window: 1m\ntype: left\nfields: {paid: amount, paid_id: id}", nil, ports)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.(pipes.SchemaDeriver).OutputSchema(0).Fields {
		got = append(got, fmt.Sprintf("%s:%s:%v", f.Name, f.Kind, f.Nullable))
	}
	want := []string{"id:string:false", "at:int64:false", "total:float64:false", "paid:float64:true", "paid_id:string:true"}
	if !slices.Equal(got, want) {
		t.Errorf("schema %v, want %v", got, want)
	}
	// In an outer join an unmatched right record has no left fields.
	p, err = buildStreamJoin(t, "window: 1m\ntype: outer\nfields: {paid: amount}", nil, ports)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range p.(pipes.SchemaDeriver).OutputSchema(0).Fields {
		if !f.Nullable {
			t.Errorf("outer join: field %s is not nullable", f.Name)
		}
	}
	if f, _ := sjOrders.Field("id"); f.Nullable {
		t.Error("the outer join changed its input's schema")
	}
	p, err = buildStreamJoin(t, "window: 1m\ninto: payment", nil, ports)
	if err != nil {
		t.Fatal(err)
	}
	if f, _ := p.(pipes.SchemaDeriver).OutputSchema(0).Field("payment"); f.Kind != pipes.Struct || !f.Nullable || len(f.Fields.Fields) != 3 {
		t.Errorf("into: field %+v, want a nullable struct of the right input's 3 fields", f)
	}
	p, err = buildStreamJoin(t, "window: 1m\ninto: payment", nil, []pipes.Port{{Dataset: "orders"}, {Dataset: "payments", Schema: sjPayments}})
	if err != nil {
		t.Fatal(err)
	}
	if s := p.(pipes.SchemaDeriver).OutputSchema(0); s != nil {
		t.Errorf("schema %v without the left schema, want nil", s)
	}
	if ir, ok := p.(pipes.InterleavedReader); !ok || !ir.ReadsInterleaved() {
		t.Error("stream_join does not read interleaved batches")
	}
	if _, ok := p.(pipes.FieldUser); ok {
		t.Error("stream_join is a FieldUser, but it stores whole values")
	}
}

// A stream join of orders (the left input) and payments (the right) by
// order key: each order with the payments made within 10 minutes of it
// either way.
func Example_streamJoin() {
	typ, _ := pipes.Lookup("stream_join")
	var n yaml.Node
	_ = yaml.Unmarshal([]byte("window: 10m\ntype: left\nfields: {paid: amount}"), &n)
	cfg, _ := typ.Decode(n.Content[0])
	p, _ := cfg.New(&pipes.Env{Pipe: "paid_orders",
		Inputs:  []pipes.Port{{Dataset: "orders"}, {Dataset: "payments"}},
		Outputs: []pipes.Port{{Dataset: "out"}}})

	at := func(min int) time.Time { return time.Date(2026, 1, 1, 12, min, 0, 0, time.UTC) }
	batch := &pipes.Batch{
		Inputs: []int{0, 0, 1, 1},
		Records: []*pipes.Record{
			{Key: []byte("o1"), Timestamp: at(0), Value: map[string]any{"total": 30}},
			{Key: []byte("o2"), Timestamp: at(1), Value: map[string]any{"total": 12}},
			{Key: []byte("o1"), Timestamp: at(4), Value: map[string]any{"amount": 30}},
			{Key: []byte("o9"), Timestamp: at(30), Value: map[string]any{"amount": 5}},
		},
	}
	out := pipes.NewOutput(1)
	_ = p.Process(context.Background(), batch, out)
	for _, r := range out.Records(0) {
		fmt.Println(string(r.Key), r.Timestamp.Format("15:04"), r.Value)
	}
	// Output:
	// o1 12:04 map[paid:30 total:30]
	// o2 12:01 map[paid:<nil> total:12]
}

// TestStreamJoinSummary: the summary `streamer pipes` prints names every
// join type.
func TestStreamJoinSummary(t *testing.T) {
	typ, _ := pipes.Lookup("stream_join")
	for _, w := range []string{"inner", "left", "outer"} {
		if !strings.Contains(typ.Spec.Summary, w) {
			t.Errorf("summary lacks %q: %s", w, typ.Spec.Summary)
		}
	}
}
