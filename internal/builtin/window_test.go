package builtin_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/streamertest"
)

// t0 is the origin of the test clocks: record times are seconds after it.
var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// buildStore builds a pipe whose state lives in st, so tests can look at it
// and reopen it.
func buildStore(t testing.TB, typ, conf string, st pipes.Store, schema *pipes.Schema) (pipes.Pipe, error) {
	t.Helper()
	pt, ok := pipes.Lookup(typ)
	if !ok {
		t.Fatalf("type %q not registered", typ)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := pt.Decode(n.Content[0])
	if len(errs) > 0 {
		return nil, errs[0]
	}
	env := &pipes.Env{Pipe: "p", Partition: 0, Inputs: []pipes.Port{{Dataset: "in", Schema: schema}}, Outputs: []pipes.Port{{Dataset: "out"}}}
	if st != nil {
		env.Stores = func(string) (pipes.Store, error) { return strictStore{st, t}, nil }
	}
	return cfg.New(env)
}

// strictStore fails the test on a put of an empty value: a store's
// changelog cannot tell one from a delete, so it would not survive a
// restore from the changelog.
type strictStore struct {
	pipes.Store
	t testing.TB
}

func (s strictStore) Put(k, v []byte) error {
	if len(v) == 0 {
		s.t.Errorf("put of an empty value under %q", k)
	}
	return s.Store.Put(k, v)
}

// wrec is a test record: key, record time in seconds after t0, and amount.
type wrec struct {
	key    string
	at     float64
	amount float64
}

func (w wrec) record(seq int) *pipes.Record {
	return &pipes.Record{
		Key:       []byte(w.key),
		Timestamp: t0.Add(time.Duration(math.Round(w.at*1000)) * time.Millisecond),
		Value:     map[string]any{"amount": w.amount, "seq": float64(seq)},
	}
}

// process runs batches through p and returns its outputs, shortened, and
// the failures' errors.
func process(t testing.TB, p pipes.Pipe, batches ...[]wrec) (outs, fails []string) {
	t.Helper()
	seq := 0
	for _, b := range batches {
		batch := &pipes.Batch{}
		for _, w := range b {
			batch.Records = append(batch.Records, w.record(seq))
			seq++
		}
		out := pipes.NewOutput(1)
		if err := p.Process(context.Background(), batch, out); err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records(0) {
			outs = append(outs, short(t, r))
		}
		for _, f := range out.Failures() {
			fails = append(fails, f.Err.Error())
		}
	}
	return outs, fails
}

// short writes a window output as `key [start,end) field=value ...`, with
// times in seconds after t0.
func short(t testing.TB, r *pipes.Record) string {
	t.Helper()
	v := r.Value.(map[string]any)
	if string(r.Key) != v["key"] {
		t.Errorf("record key %q, value key %v", r.Key, v["key"])
	}
	sec := func(f string) string {
		ts, err := time.Parse(time.RFC3339Nano, v[f].(string))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		return fmt.Sprint(ts.Sub(t0).Seconds())
	}
	s := fmt.Sprintf("%s [%s,%s)", v["key"], sec("window_start"), sec("window_end"))
	var names []string
	for k := range v {
		if k != "key" && k != "window_start" && k != "window_end" {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		s += fmt.Sprintf(" %s=%v", k, v[k])
	}
	return s
}

const nSum = "fields: {n: {op: count}, sum: {op: sum, of: amount}}\n"

func TestWindow(t *testing.T) {
	cases := []struct {
		name    string
		conf    string
		batches [][]wrec
		want    []string
		fails   []string // substrings, in order
	}{
		{
			name:    "tumbling, update per record, half-open windows",
			conf:    "type: tumbling\nsize: 1m\n" + nSum,
			batches: [][]wrec{{{"a", 10, 1}, {"a", 59.999, 2}, {"b", 30, 5}, {"a", 60, 4}}},
			want:    []string{"a [0,60) n=1 sum=1", "a [0,60) n=2 sum=3", "b [0,60) n=1 sum=5", "a [60,120) n=1 sum=4"},
		},
		{
			name:    "out of order within grace is taken",
			conf:    "type: tumbling\nsize: 1m\ngrace: 10s\n" + nSum,
			batches: [][]wrec{{{"a", 10, 1}, {"a", 69, 2}, {"a", 55, 3}}},
			want:    []string{"a [0,60) n=1 sum=1", "a [60,120) n=1 sum=2", "a [0,60) n=2 sum=4"},
		},
		{
			name:    "late past grace goes to dlq, saying by how much",
			conf:    "type: tumbling\nsize: 1m\ngrace: 10s\n" + nSum,
			batches: [][]wrec{{{"a", 10, 1}, {"b", 75, 2}}, {{"a", 20, 3}, {"a", 70, 4}}},
			want:    []string{"a [0,60) n=1 sum=1", "b [60,120) n=1 sum=2", "a [60,120) n=1 sum=4"},
			fails:   []string{"late record: event time 2026-01-01T00:00:20Z is 55s behind stream time 2026-01-01T00:01:15Z; its window [2026-01-01T00:00:00Z, 2026-01-01T00:01:00Z) closed 5s ago (grace 10s)"},
		},
		{
			name:    "the window closes exactly at end + grace",
			conf:    "type: tumbling\nsize: 1m\ngrace: 10s\n" + nSum,
			batches: [][]wrec{{{"a", 69.999, 1}, {"a", 59.999, 2}, {"a", 70, 3}, {"a", 59.999, 4}}},
			want:    []string{"a [60,120) n=1 sum=1", "a [0,60) n=1 sum=2", "a [60,120) n=2 sum=4"},
			fails:   []string{"closed 0s ago"},
		},
		{
			name:    "late: drop drops quietly",
			conf:    "type: tumbling\nsize: 1m\nlate: drop\n" + nSum,
			batches: [][]wrec{{{"a", 10, 1}, {"a", 75, 2}, {"a", 20, 3}}},
			want:    []string{"a [0,60) n=1 sum=1", "a [60,120) n=1 sum=2"},
		},
		{
			name: "emit close: once, when stream time passes end + grace, by end then key",
			conf: "type: tumbling\nsize: 1m\ngrace: 10s\nemit: close\n" + nSum,
			batches: [][]wrec{
				{{"b", 20, 1}, {"a", 10, 2}, {"a", 65, 3}},
				{{"a", 69.999, 4}, {"a", 50, 5}},
				{{"c", 70, 6}},
				{{"c", 200, 7}},
			},
			want: []string{"a [0,60) n=2 sum=7", "b [0,60) n=1 sum=1", "a [60,120) n=2 sum=7", "c [60,120) n=1 sum=6"},
		},
		{
			name: "emit close keeps the greatest event time's value as last",
			conf: "type: tumbling\nsize: 1m\nemit: close\nfields: {last: {op: last, of: amount}, hi: {op: max, of: amount}, lo: {op: min, of: amount}, avg: {op: avg, of: amount}}",
			batches: [][]wrec{
				{{"a", 30, 1}, {"a", 10, 2}, {"a", 30, 3}, {"a", 20, 6}},
				{{"z", 60, 0}},
			},
			want: []string{"a [0,60) avg=3 hi=6 last=3 lo=1"},
		},
		{
			name:    "hopping: a record in every window that covers it, open ones only",
			conf:    "type: hopping\nsize: 1m\nadvance: 30s\n" + nSum,
			batches: [][]wrec{{{"a", 45, 1}, {"a", 61, 2}, {"a", 50, 3}, {"a", 25, 4}}},
			want: []string{
				"a [0,60) n=1 sum=1", "a [30,90) n=1 sum=1",
				"a [30,90) n=2 sum=3", "a [60,120) n=1 sum=2",
				"a [30,90) n=3 sum=6", // [0,60) closed at 60: 50 goes to [30,90) only
			},
			fails: []string{"late record: event time 2026-01-01T00:00:25Z is 36s behind"},
		},
		{
			name:    "hopping with emit close",
			conf:    "type: hopping\nsize: 20s\nadvance: 10s\nemit: close\n" + nSum,
			batches: [][]wrec{{{"a", 5, 1}, {"a", 15, 2}, {"a", 25, 4}}, {{"a", 40, 8}}},
			want:    []string{"a [-10,10) n=1 sum=1", "a [0,20) n=2 sum=3", "a [10,30) n=2 sum=6", "a [20,40) n=1 sum=4"},
		},
		{
			name: "session: records less than gap apart share one; a record between two merges them",
			conf: "type: session\ngap: 30s\ngrace: 1m\n" + nSum,
			batches: [][]wrec{
				{{"a", 0, 1}, {"a", 20, 2}, {"a", 100, 4}, {"a", 60, 8}},
				{{"a", 75, 16}},
			},
			want: []string{"a [0,30) n=1 sum=1", "a [0,50) n=2 sum=3", "a [100,130) n=1 sum=4", "a [60,90) n=1 sum=8", "a [60,130) n=3 sum=28"},
		},
		{
			name:    "session: exactly gap apart are two sessions",
			conf:    "type: session\ngap: 30s\ngrace: 10s\nemit: close\n" + nSum,
			batches: [][]wrec{{{"a", 0, 1}, {"a", 30, 2}, {"b", 29.999, 3}, {"b", 0, 4}}, {{"z", 100, 0}}},
			want:    []string{"a [0,30) n=1 sum=1", "b [0,59.999) n=2 sum=7", "a [30,60) n=1 sum=2"},
		},
		{
			name: "session: a record that would join a closed session is late",
			conf: "type: session\ngap: 30s\ngrace: 5s\n" + nSum,
			batches: [][]wrec{
				{{"a", 0, 1}, {"b", 40, 2}},
				{{"a", 20, 3}}, // [20,50) is open, but overlaps [0,30), closed at 35
				{{"a", 4, 4}},  // [4,34) closed itself at 39
				{{"a", 11, 5}}, // [11,41): open until 46, and it touches no closed session... but it does: [0,30)
				{{"a", 31, 6}}, // [31,61) touches nothing closed: a new session
			},
			want: []string{"a [0,30) n=1 sum=1", "b [40,70) n=1 sum=2", "a [31,61) n=1 sum=6"},
			fails: []string{
				"late record: event time 2026-01-01T00:00:20Z is 20s behind stream time 2026-01-01T00:00:40Z; its session [2026-01-01T00:00:00Z, 2026-01-01T00:00:30Z) closed 5s ago (grace 5s)",
				"its session [2026-01-01T00:00:04Z, 2026-01-01T00:00:34Z) closed 1s ago",
				"its session [2026-01-01T00:00:00Z, 2026-01-01T00:00:30Z) closed 5s ago",
			},
		},
		{
			name: "session merge with emit close: one final window",
			conf: "type: session\ngap: 10s\ngrace: 30s\nemit: close\nfields: {n: {op: count}, last: {op: last, of: amount}}",
			batches: [][]wrec{
				{{"a", 0, 1}, {"a", 30, 2}, {"a", 15, 3}}, // [0,10) and [30,40), then [15,25): still apart
				{{"a", 8, 4}, {"a", 22, 5}},               // [8,18) and [22,32) bridge all three
				{{"z", 70, 0}},                            // stream time 70 = 40 + 30: it closes
			},
			want: []string{"a [0,40) last=2 n=5"},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			outs, fails := process(t, mustBuild(t, c.conf, nil), c.batches...)
			if !slices.Equal(outs, c.want) {
				t.Errorf("outputs\n got %q\nwant %q", outs, c.want)
			}
			if len(fails) != len(c.fails) {
				t.Fatalf("failures\n got %q\nwant %q", fails, c.fails)
			}
			for i := range fails {
				if !strings.Contains(fails[i], c.fails[i]) {
					t.Errorf("failure %d\n got %s\nwant %s", i, fails[i], c.fails[i])
				}
			}
		})
	}
}

// TestWindowEventTime: the time: expression may give a timestamp, a number
// of milliseconds or an RFC 3339 string; anything else fails the record.
func TestWindowEventTime(t *testing.T) {
	p, err := build(t, "window", "type: tumbling\nsize: 1s\ntime: ts\n"+nSum, []string{"out"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		ts   any
		want string // the window start in RFC 3339, or an error substring
	}{
		{int64(1_700_000_000_123), "2023-11-14T22:13:20Z"},
		{1_700_000_001_999.0, "2023-11-14T22:13:21Z"},
		{"2026-01-01T00:00:02.5+01:00", "2025-12-31T23:00:02Z"},
		{time.Date(2026, 1, 1, 0, 0, 3, 0, time.UTC), "2026-01-01T00:00:03Z"},
		{"yesterday", `"yesterday" is not an RFC 3339 time`},
		{nil, "is null"},
		{true, "not a time"},
		{1e300, "not a time"},
	}
	for _, c := range cases {
		out := pipes.NewOutput(1)
		r := &pipes.Record{Key: []byte("k"), Value: map[string]any{"ts": c.ts, "amount": 1.0}}
		if err := p.Process(context.Background(), &pipes.Batch{Records: []*pipes.Record{r}}, out); err != nil {
			t.Fatal(err)
		}
		got := ""
		if len(out.Records(0)) == 1 {
			got = out.Records(0)[0].Value.(map[string]any)["window_start"].(string)
		}
		if len(out.Failures()) == 1 {
			got = out.Failures()[0].Err.Error()
		}
		if !strings.Contains(got, c.want) {
			t.Errorf("ts %v (%T): got %q, want %q", c.ts, c.ts, got, c.want)
		}
	}
}

// storeKeys counts a store's entries by their first byte.
func storeKeys(t *testing.T, st pipes.Store) map[byte]int {
	t.Helper()
	n := map[byte]int{}
	if err := st.Range(nil, nil, func(k, _ []byte) bool { n[k[0]]++; return true }); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestWindowRetention: closed windows stay in the store for retention (by
// stream time) after they close, then are deleted with their index entry.
func TestWindowRetention(t *testing.T) {
	cases := []struct {
		name    string
		conf    string
		batches [][]wrec
		want    int // windows left in the store
	}{
		{"default (size+grace): kept", "type: tumbling\nsize: 1m\ngrace: 10s\n", [][]wrec{{{"a", 10, 1}, {"b", 70, 1}}, {{"b", 139.999, 1}}}, 3},
		{"default (size+grace): deleted at end+grace+size+grace", "type: tumbling\nsize: 1m\ngrace: 10s\n", [][]wrec{{{"a", 10, 1}, {"b", 70, 1}}, {{"b", 140, 1}}}, 2},
		{"retention 0: deleted when closed", "type: tumbling\nsize: 1m\nretention: 0s\n", [][]wrec{{{"a", 10, 1}, {"b", 60, 1}}}, 1},
		{"retention 0 with emit close still emits", "type: tumbling\nsize: 1m\nretention: 0s\nemit: close\n", [][]wrec{{{"a", 10, 1}, {"b", 60, 1}}}, 1},
		{"hopping", "type: hopping\nsize: 1m\nadvance: 20s\nretention: 30s\n", [][]wrec{{{"a", 50, 1}}, {{"a", 110, 1}}}, 4},
		{"session: gap+grace", "type: session\ngap: 10s\n", [][]wrec{{{"a", 0, 1}, {"a", 5, 1}, {"b", 24.999, 1}}, {{"b", 25, 1}}}, 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := pipes.NewMemoryStore()
			p, err := buildStore(t, "window", c.conf+nSum, st, nil)
			if err != nil {
				t.Fatal(err)
			}
			outs, _ := process(t, p, c.batches...)
			n := storeKeys(t, st)
			if n['w'] != c.want || n['e'] != c.want || n['s'] != 1 {
				t.Errorf("store holds %d windows, %d index entries, %d stream times; want %d, %d, 1", n['w'], n['e'], n['s'], c.want, c.want)
			}
			if strings.Contains(c.conf, "emit: close") && (len(outs) != 1 || outs[0] != "a [0,60) n=1 sum=1") {
				t.Errorf("emitted %q", outs)
			}
		})
	}
}

// TestWindowRestart: stream time and open windows live in the store. A pipe
// built on a reopened Pebble store carries on exactly where the first left
// off: same outputs, same late records, as one pipe that never stopped.
func TestWindowRestart(t *testing.T) {
	confs := []string{
		"type: tumbling\nsize: 1m\ngrace: 10s\nemit: close\n" + nSum,
		"type: session\ngap: 30s\ngrace: 5s\nemit: update\n" + nSum,
		"type: hopping\nsize: 1m\nadvance: 15s\ngrace: 5s\nemit: close\n" + nSum,
	}
	first := []wrec{{"a", 10, 1}, {"b", 30, 2}, {"a", 100, 4}, {"a", 50, 8}}
	// After the restart: 45 and 20 are late only because stream time (100)
	// survived; 95 joins a's open window; 200 closes everything.
	second := []wrec{{"a", 45, 16}, {"a", 20, 128}, {"a", 95, 32}, {"b", 80, 64}, {"z", 200, 0}}
	for _, conf := range confs {
		t.Run(strings.SplitN(conf, "\n", 2)[0], func(t *testing.T) {
			wantOut, wantFail := process(t, mustBuild(t, conf, nil), first, second)
			if _, f := process(t, mustBuild(t, conf, nil), first); len(wantFail) == len(f) {
				t.Fatalf("the scenario must have late records after the restart: %q", wantFail)
			}
			dir := t.TempDir()
			st, err := state.OpenPebble(dir)
			if err != nil {
				t.Fatal(err)
			}
			p := mustBuild(t, conf, st)
			out1, fail1 := process(t, p, first)
			if err := st.Commit(1); err != nil {
				t.Fatal(err)
			}
			// A batch whose transaction aborts: its writes, stream time
			// included, are dropped, and so are its outputs. The same pipe
			// must not carry on with the stream time the store lost.
			process(t, p, []wrec{{"q", 5000, 1}})
			if err := st.Abort(); err != nil {
				t.Fatal(err)
			}
			out2, fail2 := process(t, p, second[:1])
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
			defer st.Close()
			out3, fail3 := process(t, mustBuild(t, conf, st), second[1:])
			got, gotFail := slices.Concat(out1, out2, out3), slices.Concat(fail1, fail2, fail3)
			if !slices.Equal(got, wantOut) || !slices.Equal(gotFail, wantFail) {
				t.Errorf("with a restart\n got %q %q\nwant %q %q", got, gotFail, wantOut, wantFail)
			}
		})
	}
}

func mustBuild(t *testing.T, conf string, st pipes.Store) pipes.Pipe {
	t.Helper()
	if st == nil {
		st = pipes.NewMemoryStore()
	}
	p, err := buildStore(t, "window", conf, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestWindowConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{"type: tumbling\n" + nSum, "1:1: tumbling windows need size:"},
		{"type: tumbling\nsize: 1m\nadvance: 1s\n" + nSum, "advance: is not used by tumbling windows"},
		{"type: tumbling\nsize: 1m\ngap: 1s\n" + nSum, "gap: is not used by tumbling windows"},
		{"type: hopping\nsize: 1m\n" + nSum, "hopping windows need size: and advance:"},
		{"type: hopping\nsize: 1m\nadvance: 2m\n" + nSum, "advance: 2m0s is longer than size: 1m0s"},
		{"type: session\n" + nSum, "session windows need gap:"},
		{"type: session\ngap: 1m\nsize: 1m\n" + nSum, "size: is not used by session windows"},
		{"type: session\ngap: 1m\nretention: 30s\n" + nSum, "retention: 30s is shorter than gap: 1m0s"},
		{"type: tumbling\nsize: 1500us\n" + nSum, "size: 1.5ms is not a whole number of milliseconds"},
		{"type: sliding\nsize: 1m\n" + nSum, "sliding"},
		{"type: tumbling\nsize: 1m\nlate: keep\n" + nSum, "keep"},
		{"type: tumbling\nsize: 1m\nfields: {n: {op: sum}}", "sum needs of:"},
		{"type: tumbling\nsize: 1m\ntime: nope\n" + nSum, "unknown name nope"},
	}
	schema := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "amount", Kind: pipes.Float64}, {Name: "ts", Kind: pipes.String}}}
	for _, c := range cases {
		_, err := buildStore(t, "window", c.conf, nil, schema)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.conf, err, c.want)
		}
	}
}

func TestWindowSchemaAndFields(t *testing.T) {
	schema := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "amount", Kind: pipes.Float64}, {Name: "ts", Kind: pipes.String}, {Name: "country", Kind: pipes.String}, {Name: "other", Kind: pipes.String}}}
	p, err := buildStore(t, "window", "type: tumbling\nsize: 1m\ntime: ts\nfields: {n: {op: count}, c: {op: last, of: country}, s: {op: sum, of: amount}}", nil, schema)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range p.(pipes.SchemaDeriver).OutputSchema(0).Fields {
		got = append(got, fmt.Sprintf("%s:%s:%v", f.Name, f.Kind, f.Nullable))
	}
	want := []string{"key:string:false", "window_start:string:false", "window_end:string:false", "c:string:true", "n:int64:false", "s:float64:false"}
	if !slices.Equal(got, want) {
		t.Errorf("schema %v, want %v", got, want)
	}
	fields, ok := p.(pipes.FieldUser).UsedFields()
	slices.Sort(fields)
	if !ok || !slices.Equal(slices.Compact(fields), []string{"amount", "country", "ts"}) {
		t.Errorf("used fields %v %v", fields, ok)
	}
}

// TestWindowOracle runs random out-of-order streams, in random batches,
// through each window type and emit mode, and compares every output and
// every late record with a brute-force model written from the rules in the
// documentation: it keeps all the records it accepted and recomputes
// windows from scratch.
func TestWindowOracle(t *testing.T) {
	kinds := []struct {
		conf                      string
		size, advance, gap, grace int64 // ms
	}{
		{conf: "type: tumbling\nsize: 10s\ngrace: 3s", size: 10000, advance: 10000, grace: 3000},
		{conf: "type: hopping\nsize: 10s\nadvance: 4s\ngrace: 2s", size: 10000, advance: 4000, grace: 2000},
		{conf: "type: session\ngap: 4s\ngrace: 3s", gap: 4000, grace: 3000},
		{conf: "type: session\ngap: 4s\ngrace: 0s\nretention: 4s", gap: 4000},
	}
	for _, k := range kinds {
		for _, emit := range []string{"update", "close"} {
			for seed := uint64(1); seed <= 8; seed++ {
				rng := rand.New(rand.NewPCG(seed, 7))
				conf := k.conf + "\nemit: " + emit + "\nfields: {n: {op: count}, sum: {op: sum, of: amount}, lo: {op: min, of: amount}, last: {op: last, of: amount}}"
				p := mustBuild(t, conf, nil)
				m := &windowModel{session: k.gap > 0, size: k.size, advance: k.advance, gap: k.gap, grace: k.grace, close: emit == "close", st: -1 << 62}
				var clock int64
				seq := 0
				for b := 0; b < 40; b++ {
					batch := &pipes.Batch{}
					var want []string
					var wantLate []int
					for range rng.IntN(8) + 1 {
						clock += rng.Int64N(3000)
						at := clock - rng.Int64N(4000)
						if rng.IntN(10) == 0 {
							at = clock - rng.Int64N(30000)
						}
						key := string(rune('a' + rng.IntN(3)))
						amount := float64(rng.IntN(9) + 1)
						r := mrec{key: key, t: at, amount: amount, seq: seq}
						batch.Records = append(batch.Records, &pipes.Record{Key: []byte(key), Timestamp: time.UnixMilli(at), Value: map[string]any{"amount": amount, "seq": float64(seq)}})
						seq++
						outs, late := m.add(r)
						want = append(want, outs...)
						if late {
							wantLate = append(wantLate, r.seq)
						}
					}
					want = append(want, m.closeBatch()...)
					out := pipes.NewOutput(1)
					if err := p.Process(context.Background(), batch, out); err != nil {
						t.Fatal(err)
					}
					var got []string
					for _, r := range out.Records(0) {
						got = append(got, modelString(r.Value.(map[string]any)))
					}
					var gotLate []int
					for _, f := range out.Failures() {
						if !strings.Contains(f.Err.Error(), "late record") {
							t.Fatalf("failure %v", f.Err)
						}
						gotLate = append(gotLate, int(f.Record.Value.(map[string]any)["seq"].(float64)))
					}
					if !slices.Equal(got, want) || !slices.Equal(gotLate, wantLate) {
						t.Fatalf("%s, seed %d, batch %d:\n got %q late %v\nwant %q late %v", strings.ReplaceAll(conf, "\n", "; "), seed, b, got, gotLate, want, wantLate)
					}
				}
			}
		}
	}
}

type mrec struct {
	key    string
	t      int64
	amount float64
	seq    int
	// in holds the starts of the fixed windows that were open to take it.
	in map[int64]bool
}

type mwin struct {
	key        string
	start, end int64
}

// windowModel is the test's oracle.
type windowModel struct {
	session                   bool
	size, advance, gap, grace int64
	close                     bool
	st                        int64
	accepted                  []mrec
	emitted                   map[mwin]bool
}

// windows returns every window the accepted records make, with its records.
func (m *windowModel) windows() map[mwin][]mrec {
	out := map[mwin][]mrec{}
	if !m.session {
		for _, r := range m.accepted {
			for s := r.t - r.t%m.advance + m.advance; s > r.t-m.size-m.advance; s -= m.advance {
				if r.in[s] {
					w := mwin{r.key, s, s + m.size}
					out[w] = append(out[w], r)
				}
			}
		}
		return out
	}
	byKey := map[string][]mrec{}
	for _, r := range m.accepted {
		byKey[r.key] = append(byKey[r.key], r)
	}
	for key, rs := range byKey {
		sorted := slices.Clone(rs)
		sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].t < sorted[j].t })
		cur := mwin{key, sorted[0].t, sorted[0].t + m.gap}
		var members []mrec
		for _, r := range sorted {
			if r.t >= cur.end { // [t, t+gap) does not overlap the session so far
				out[cur] = members
				cur, members = mwin{key, r.t, r.t + m.gap}, nil
			}
			cur.end = max(cur.end, r.t+m.gap)
			members = append(members, r)
		}
		out[cur] = members
	}
	return out
}

// add takes one record: it returns the outputs of emit: update, and whether
// the record is late.
func (m *windowModel) add(r mrec) ([]string, bool) {
	m.st = max(m.st, r.t)
	closed := func(w mwin) bool { return w.end+m.grace <= m.st }
	if m.session {
		mine := mwin{r.key, r.t, r.t + m.gap}
		if closed(mine) {
			return nil, true
		}
		for w := range m.windows() {
			if w.key == r.key && w.start < mine.end && r.t < w.end && closed(w) {
				return nil, true
			}
		}
	} else {
		r.in = map[int64]bool{}
		for s := r.t - r.t%m.advance + m.advance; s > r.t-m.size-m.advance; s -= m.advance {
			if s <= r.t && r.t < s+m.size && !closed(mwin{r.key, s, s + m.size}) {
				r.in[s] = true
			}
		}
		if len(r.in) == 0 {
			return nil, true
		}
	}
	m.accepted = append(m.accepted, r)
	if m.close {
		return nil, false
	}
	var touched []mwin
	ws := m.windows()
	for w, rs := range ws {
		if !closed(w) && slices.ContainsFunc(rs, func(x mrec) bool { return x.seq == r.seq }) {
			touched = append(touched, w)
		}
	}
	sort.Slice(touched, func(i, j int) bool { return touched[i].start < touched[j].start })
	var outs []string
	for _, w := range touched {
		outs = append(outs, m.result(w, ws[w]))
	}
	return outs, false
}

// closeBatch returns, for emit: close, the windows closed by the end of a
// batch and not emitted before, by end then key.
func (m *windowModel) closeBatch() []string {
	if !m.close {
		return nil
	}
	if m.emitted == nil {
		m.emitted = map[mwin]bool{}
	}
	ws := m.windows()
	var done []mwin
	for w := range ws {
		if w.end+m.grace <= m.st && !m.emitted[w] {
			done = append(done, w)
			m.emitted[w] = true
		}
	}
	sort.Slice(done, func(i, j int) bool {
		a, b := done[i], done[j]
		if a.end != b.end {
			return a.end < b.end
		}
		if a.key != b.key {
			return a.key < b.key // one-letter keys: the store's order too
		}
		return a.start < b.start
	})
	var outs []string
	for _, w := range done {
		outs = append(outs, m.result(w, ws[w]))
	}
	return outs
}

func (m *windowModel) result(w mwin, rs []mrec) string {
	n, sum, lo := 0, 0.0, 1e9
	var last mrec
	for i, r := range rs {
		n++
		sum += r.amount
		lo = min(lo, r.amount)
		if i == 0 || r.t > last.t || (r.t == last.t && r.seq > last.seq) {
			last = r
		}
	}
	return fmt.Sprintf("%s %d-%d n=%d sum=%g lo=%g last=%g", w.key, w.start, w.end, n, sum, lo, last.amount)
}

func modelString(v map[string]any) string {
	ms := func(f string) int64 {
		ts, _ := time.Parse(time.RFC3339Nano, v[f].(string))
		return ts.UnixMilli()
	}
	return fmt.Sprintf("%s %d-%d n=%v sum=%v lo=%v last=%v", v["key"], ms("window_start"), ms("window_end"), v["n"], v["sum"], v["lo"], v["last"])
}

// windowTopology exercises window, dedupe and aggregate's ttl through the
// engine's tasks: two source partitions, each with its own stream time,
// late records dead-lettered with the pipe's name and the reason.
const windowTopology = `
name: windows-driver
dead_letter: dlq
datasets:
  clicks:
    topic: clicks
    partitions: 2
  unique: {}
  per-minute:
    topic: per-minute
  dlq:
    topic: dlq
    value: bytes
pipes:
  dedupe:
    from: clicks
    to: unique
    dedupe:
      id: click_id
      horizon: 1m
      time: ts
  minute:
    from: unique
    to: per-minute
    window:
      type: tumbling
      size: 1m
      grace: 5s
      time: ts
      emit: close
      fields:
        clicks: {op: count}
        value: {op: sum, of: value}
`

func TestWindowThroughDriver(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "topology.yaml")
	if err := os.WriteFile(file, []byte(windowTopology), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := streamertest.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	click := func(id, user string, sec int, value float64) streamertest.Record {
		return streamertest.Record{Key: streamertest.Key(user), Value: map[string]any{
			"click_id": id, "ts": t0.Add(time.Duration(sec) * time.Second).Format(time.RFC3339), "value": value,
		}}
	}
	// Partition 0 runs ahead to 2 minutes; partition 1 stays in the first:
	// its windows must stay open, as its stream time is its own.
	steps := []struct {
		part int32
		recs []streamertest.Record
	}{
		{0, []streamertest.Record{click("c1", "u1", 10, 1), click("c1", "u1", 12, 1), click("c2", "u1", 30, 2)}},
		{1, []streamertest.Record{click("c3", "u2", 20, 4)}},
		{0, []streamertest.Record{click("c4", "u1", 66, 8), click("c5", "u1", 40, 16)}}, // 40 is late: 66 > 60+5
		{0, []streamertest.Record{click("c1", "u1", 125, 32)}},                          // c1 forgotten at 70: counted again
		{1, []streamertest.Record{click("c6", "u2", 64, 64)}},                           // 64 < 65: u2's window stays open
	}
	for _, s := range steps {
		if err := d.InputPartition("clicks", s.part, s.recs...); err != nil {
			t.Fatal(err)
		}
	}
	outs, err := d.Output("per-minute")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, o := range outs {
		v := o.Value.(map[string]any)
		got = append(got, fmt.Sprintf("%s %s..%s clicks=%v value=%v", *o.Key, v["window_start"], v["window_end"], v["clicks"], v["value"]))
	}
	want := []string{
		"u1 2026-01-01T00:00:00Z..2026-01-01T00:01:00Z clicks=2 value=3",
		"u1 2026-01-01T00:01:00Z..2026-01-01T00:02:00Z clicks=1 value=8",
	}
	if !slices.Equal(got, want) {
		t.Errorf("outputs\n got %q\nwant %q", got, want)
	}
	dl := d.DeadLetters()
	if len(dl) != 1 || dl[0].Pipe != "minute" || !strings.Contains(dl[0].Error, "late record") ||
		!strings.Contains(dl[0].Error, "26s behind stream time 2026-01-01T00:01:06Z") || dl[0].SourcePartition != 0 || dl[0].SourceOffset != 4 {
		t.Errorf("dead letters %+v", dl)
	}
	// Stream time is in the state, per partition.
	for part, want := range map[int32]time.Time{0: t0.Add(125 * time.Second), 1: t0.Add(64 * time.Second)} {
		var got []byte
		err := d.State("minute", part, func(k, v []byte) bool {
			if string(k) == "s" {
				got = bytes.Clone(v)
			}
			return true
		})
		if err != nil || len(got) != 8 {
			t.Fatalf("partition %d: no stream time (%v)", part, err)
		}
		ms := int64(binary.BigEndian.Uint64(got) ^ 1<<63)
		if ms != want.UnixMilli() {
			t.Errorf("partition %d: stream time %v, want %v", part, time.UnixMilli(ms).UTC(), want)
		}
	}
}

// TestWindowExample runs the example's test file, so that it stays green
// with the pipe.
func TestWindowExample(t *testing.T) {
	res := streamertest.RunFile("../../examples/windows/topology.test.yaml", streamertest.Options{})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	if len(res.Cases) == 0 {
		t.Fatal("no cases")
	}
	for _, c := range res.Cases {
		if !c.Passed() {
			t.Errorf("%s: %v", c.Name, c.Failures)
		}
	}
}
