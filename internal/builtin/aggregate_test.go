package builtin_test

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamerio/streamer/pipes"
)

func TestAggregate(t *testing.T) {
	p, err := build(t, "aggregate", "fields:\n  n: {op: count}\n  total: {op: sum, of: amount}\n  low: {op: min, of: amount}\n  high: {op: max, of: amount}\n  mean: {op: avg, of: amount}\n  last: {op: last, of: country}", []string{"out"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	in := []struct{ key, value string }{
		{"a", `{"amount":10,"country":"DE"}`},
		{"b", `{"amount":1,"country":"FR"}`},
		{"a", `{"amount":-2,"country":"NL"}`},
		{"a", `{"amount":null,"country":"US"}`},
	}
	out := pipes.NewOutput(1)
	batch := &pipes.Batch{}
	for _, r := range in {
		var v any
		_ = json.Unmarshal([]byte(r.value), &v)
		batch.Records = append(batch.Records, &pipes.Record{Key: []byte(r.key), Value: v})
	}
	batch.Records = append(batch.Records, &pipes.Record{Value: map[string]any{"amount": 1}}) // no key
	if err := p.Process(context.Background(), batch, out); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out.Records(0) {
		b, _ := json.Marshal(r.Value)
		got = append(got, string(b))
	}
	want := []string{
		`{"high":10,"key":"a","last":"DE","low":10,"mean":10,"n":1,"total":10}`,
		`{"high":1,"key":"b","last":"FR","low":1,"mean":1,"n":1,"total":1}`,
		`{"high":10,"key":"a","last":"NL","low":-2,"mean":4,"n":2,"total":8}`,
		`{"high":10,"key":"a","last":"US","low":-2,"mean":4,"n":3,"total":8}`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("record %d:\n got %s\nwant %s", i, got[i], want[i])
		}
	}
	if len(out.Failures()) != 1 {
		t.Errorf("%d failures, want the keyless record", len(out.Failures()))
	}
}

// aggRun processes batches of (key, seconds after t0, value JSON) records and
// returns the outputs as JSON.
func aggRun(t *testing.T, p pipes.Pipe, batches ...[]arec) []string {
	t.Helper()
	var got []string
	for _, b := range batches {
		batch := &pipes.Batch{}
		for _, r := range b {
			var v any
			if err := json.Unmarshal([]byte(r.value), &v); err != nil {
				t.Fatal(err)
			}
			batch.Records = append(batch.Records, &pipes.Record{Key: []byte(r.key), Value: v, Timestamp: t0.Add(time.Duration(r.at * float64(time.Millisecond)))})
		}
		out := pipes.NewOutput(1)
		if err := p.Process(context.Background(), batch, out); err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records(0) {
			b, _ := json.Marshal(r.Value)
			got = append(got, string(b))
		}
		for _, f := range out.Failures() {
			got = append(got, "fail: "+f.Err.Error())
		}
	}
	return got
}

// arec is a record for aggRun; at is in ms after t0.
type arec struct {
	key   string
	at    float64
	value string
}

func TestAggregateTTL(t *testing.T) {
	const count = "fields: {n: {op: count}}\n"
	cases := []struct {
		name    string
		conf    string
		batches [][]arec
		want    []string
	}{
		{
			name:    "a key idle for ttl of stream time starts afresh",
			conf:    count + "ttl: 1m",
			batches: [][]arec{{{"a", 0, `{}`}, {"a", 30_000, `{}`}, {"b", 90_000, `{}`}}, {{"a", 91_000, `{}`}, {"b", 91_000, `{}`}}},
			want:    []string{`{"key":"a","n":1}`, `{"key":"a","n":2}`, `{"key":"b","n":1}`, `{"key":"a","n":1}`, `{"key":"b","n":2}`},
		},
		{
			name:    "edge: alive until stream time reaches last update + ttl",
			conf:    count + "ttl: 1m",
			batches: [][]arec{{{"a", 0, `{}`}, {"b", 59_999, `{}`}, {"a", 59_999, `{}`}, {"b", 119_998, `{}`}}, {{"a", 119_999, `{}`}}},
			want:    []string{`{"key":"a","n":1}`, `{"key":"b","n":1}`, `{"key":"a","n":2}`, `{"key":"b","n":2}`, `{"key":"a","n":1}`},
		},
		{
			name: "an out-of-order record does not move the last update back",
			conf: count + "ttl: 1m",
			batches: [][]arec{
				{{"a", 50_000, `{}`}, {"a", 10_000, `{}`}, {"b", 109_999, `{}`}, {"a", 109_999, `{}`}},
				{{"b", 169_998, `{}`}, {"a", 170_000, `{}`}},
			},
			want: []string{`{"key":"a","n":1}`, `{"key":"a","n":2}`, `{"key":"b","n":1}`, `{"key":"a","n":3}`, `{"key":"b","n":2}`, `{"key":"a","n":1}`},
		},
		{
			name: "event time from the record",
			conf: count + "ttl: 1h\ntime: ts",
			batches: [][]arec{{
				{"a", 0, `{"ts":"2026-01-01T00:00:00Z"}`},
				{"b", 0, `{"ts":"2026-01-01T01:00:00Z"}`},
				{"a", 0, `{"ts":"2026-01-01T01:00:00Z"}`},
				{"a", 0, `{"ts":"never"}`},
			}},
			want: []string{`{"key":"a","n":1}`, `{"key":"b","n":1}`, `{"key":"a","n":1}`, `fail: event time "ts": "never" is not an RFC 3339 time`},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := buildStore(t, "aggregate", c.conf, pipes.NewMemoryStore(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := aggRun(t, p, c.batches...); !slices.Equal(got, c.want) {
				t.Errorf("\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestAggregateTTLPurge: expired keys are deleted by a range scan of the
// time index, at most 4096 per batch; one not yet deleted already counts as
// gone.
func TestAggregateTTLPurge(t *testing.T) {
	st := pipes.NewMemoryStore()
	p, err := buildStore(t, "aggregate", "fields: {n: {op: count}}\nttl: 1m", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	const keys = 10000
	var first []arec
	for i := range keys {
		first = append(first, arec{fmt.Sprintf("k%04d", i), float64(i), `{}`})
	}
	aggRun(t, p, first)
	if n := storeKeys(t, st); n['k'] != keys || n['u'] != keys || n['s'] != 1 || len(n) != 3 {
		t.Fatalf("after the first batch: %v", n)
	}
	// Stream time 60s+4095ms expires k0000..k4095: exactly the purge limit.
	got := aggRun(t, p, []arec{{"new", 64_095, `{}`}})
	if n := storeKeys(t, st); n['k'] != keys-4096+1 || n['u'] != keys-4096+1 {
		t.Fatalf("after expiry of 4096 keys: %v (%q)", n, got)
	}
	// All expire: 4096 go now in time order, the rest next time, but k9999
	// starts afresh although its old state is still there.
	aggRun(t, p, []arec{{"new", 200_000, `{}`}})
	if n := storeKeys(t, st); n['k'] != keys-2*4096+1 {
		t.Fatalf("after a jump of stream time: %v", n)
	}
	if got := aggRun(t, p, []arec{{"k9999", 200_000, `{}`}}); !slices.Equal(got, []string{`{"key":"k9999","n":1}`}) {
		t.Errorf("an expired key not yet purged: %q", got)
	}
	if n := storeKeys(t, st); n['k'] != 2 || n['u'] != 2 {
		t.Errorf("the next batch purges the rest: %v", n)
	}
}

// TestAggregateNoTTLLayout: without a ttl, state stays under the bare
// record key, as stores written before ttl existed have it.
func TestAggregateNoTTLLayout(t *testing.T) {
	st := pipes.NewMemoryStore()
	p, err := buildStore(t, "aggregate", "fields: {n: {op: count}}", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	aggRun(t, p, []arec{{"a", 0, `{}`}, {"a", 1, `{}`}})
	var keys []string
	_ = st.Range(nil, nil, func(k, v []byte) bool { keys = append(keys, string(k)+"="+string(v)); return true })
	if !slices.Equal(keys, []string{`a={"n":{"n":2}}`}) {
		t.Errorf("store %q", keys)
	}
}

func TestAggregateConfigErrors(t *testing.T) {
	cases := []struct{ conf, want string }{
		{"fields: {n: {op: count}}\ntime: ts", "2:7: time: is only used to expire keys"},
		{"fields: {n: {op: count}}\nttl: 1500us", "ttl: 1.5ms is not a whole number of milliseconds"},
		{"fields: {n: {op: count}}\nttl: 1h\ntime: nope", "unknown name nope"},
	}
	schema := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "ts", Kind: pipes.String}}}
	for _, c := range cases {
		_, err := buildStore(t, "aggregate", c.conf, nil, schema)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.conf, err, c.want)
		}
	}
}
