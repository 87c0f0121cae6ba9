package builtin_test

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/streamerio/streamer/pipes"
)

// drec is a record for the dedupe tests: its id, and its record time in ms
// after t0.
type drec struct {
	id any
	at int64
}

// dedupeRun returns, per batch, the ids of the records let through, and the
// errors of failed ones as "fail: ...".
func dedupeRun(t *testing.T, p pipes.Pipe, batches ...[]drec) []string {
	t.Helper()
	var got []string
	for _, b := range batches {
		batch := &pipes.Batch{}
		for i, r := range b {
			batch.Records = append(batch.Records, &pipes.Record{Key: []byte("k"), Timestamp: t0.Add(time.Duration(r.at) * time.Millisecond),
				Value: map[string]any{"id": r.id, "n": float64(i)}})
		}
		out := pipes.NewOutput(1)
		if err := p.Process(context.Background(), batch, out); err != nil {
			t.Fatal(err)
		}
		for _, r := range out.Records(0) {
			if r != batch.Records[int(r.Value.(map[string]any)["n"].(float64))] {
				t.Error("dedupe must emit the record itself")
			}
			id, _ := json.Marshal(r.Value.(map[string]any)["id"])
			got = append(got, strings.Trim(string(id), `"`)+"@"+r.Timestamp.Sub(t0).String())
		}
		for _, f := range out.Failures() {
			got = append(got, "fail: "+f.Err.Error())
		}
	}
	return got
}

func TestDedupe(t *testing.T) {
	cases := []struct {
		name    string
		conf    string
		batches [][]drec
		want    []string
	}{
		{
			name: "remembered from the first occurrence until stream time reaches it + horizon",
			conf: "id: id\nhorizon: 1m",
			batches: [][]drec{
				{{"x", 0}, {"x", 30_000}, {"x", 59_999}},
				{{"y", 60_000}, {"x", 60_001}, {"x", 61_000}, {"y", 119_999}, {"y", 120_000}},
			},
			want: []string{"x@0s", "y@1m0s", "x@1m0.001s", "y@2m0s"},
		},
		{
			name:    "stream time, not the record's own time, decides: out of order duplicates are dropped",
			conf:    "id: id\nhorizon: 1m",
			batches: [][]drec{{{"x", 10_000}, {"y", 50_000}, {"x", 5_000}, {"x", 69_999}, {"x", 70_000}}},
			want:    []string{"x@10s", "y@50s", "x@1m10s"},
		},
		{
			name: "a record already horizon behind stream time passes, and is not remembered",
			conf: "id: id\nhorizon: 1m",
			batches: [][]drec{
				{{"y", 100_000}, {"z", 40_000}, {"z", 39_000}},
				{{"z", 41_000}, {"z", 41_500}, {"y", 130_000}},
			},
			want: []string{"y@1m40s", "z@40s", "z@39s", "z@41s"},
		},
		{
			name:    "ids compare by value: the number 1 in any type, apart from the string 1",
			conf:    "id: id\nhorizon: 1h",
			batches: [][]drec{{{1.0, 0}, {int64(1), 1}, {1, 2}, {"1", 3}, {1.5, 4}, {1.5, 5}, {int64(1) << 60, 6}, {int64(1)<<60 + 1, 7}, {[]any{1.0, "a"}, 8}, {[]any{1.0, "a"}, 9}}},
			want:    []string{"1@0s", "1@3ms", "1.5@4ms", "1152921504606846976@6ms", "1152921504606846977@7ms", `[1,"a"]@8ms`},
		},
		{
			name:    "a null id fails the record",
			conf:    "id: id\nhorizon: 1h",
			batches: [][]drec{{{nil, 0}}},
			want:    []string{`fail: id "id" is null`},
		},
		{
			name:    "event time from the record",
			conf:    "id: id\nhorizon: 1m\ntime: n * 30000",
			batches: [][]drec{{{"x", 0}, {"x", 0}, {"x", 0}}},
			want:    []string{"x@0s", "x@0s"}, // at n = 0 and n = 2 (1 minute)
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p, err := buildStore(t, "dedupe", c.conf, pipes.NewMemoryStore(), nil)
			if err != nil {
				t.Fatal(err)
			}
			if got := dedupeRun(t, p, c.batches...); !slices.Equal(got, c.want) {
				t.Errorf("\n got %q\nwant %q", got, c.want)
			}
		})
	}
}

// TestDedupePurge: forgotten ids leave the store, through the time index.
func TestDedupePurge(t *testing.T) {
	st := pipes.NewMemoryStore()
	p, err := buildStore(t, "dedupe", "id: id\nhorizon: 1m", st, nil)
	if err != nil {
		t.Fatal(err)
	}
	dedupeRun(t, p, []drec{{"a", 0}, {"b", 10_000}, {"c", 20_000}})
	if n := storeKeys(t, st); n['i'] != 3 || n['x'] != 3 {
		t.Fatalf("%v", n)
	}
	dedupeRun(t, p, []drec{{"d", 70_000}})
	if n := storeKeys(t, st); n['i'] != 2 || n['x'] != 2 || n['s'] != 1 {
		t.Fatalf("a and b forgotten: %v", n)
	}
	// c is remembered again at 80s: its old index entry must go with it.
	dedupeRun(t, p, []drec{{"c", 80_000}})
	if n := storeKeys(t, st); n['i'] != 2 || n['x'] != 2 {
		t.Fatalf("c re-remembered: %v", n)
	}
}

func TestDedupeConfig(t *testing.T) {
	schema := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "id", Kind: pipes.String}, {Name: "ts", Kind: pipes.String}, {Name: "x", Kind: pipes.Int64}}}
	for _, c := range []struct{ conf, want string }{
		{"id: id\nhorizon: 0s", "1:1: horizon: must be a positive duration"},
		{"id: id", "horizon"},
		{"id: nope\nhorizon: 1m", "unknown name nope"},
		{"id: id\nhorizon: 1m\ntime: tz", "unknown name tz"},
		{"id: id\nhorizon: 1001us", "not a whole number of milliseconds"},
	} {
		_, err := buildStore(t, "dedupe", c.conf, nil, schema)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%q: got %v, want %q", c.conf, err, c.want)
		}
	}
	p, err := buildStore(t, "dedupe", "id: id\nhorizon: 1m\ntime: ts", nil, schema)
	if err != nil {
		t.Fatal(err)
	}
	if s := p.(pipes.SchemaDeriver).OutputSchema(0); s != schema {
		t.Error("dedupe passes its input schema through")
	}
	fields, ok := p.(pipes.FieldUser).UsedFields()
	slices.Sort(fields)
	if !ok || !slices.Equal(fields, []string{"id", "ts"}) {
		t.Errorf("used fields %v %v", fields, ok)
	}
}
