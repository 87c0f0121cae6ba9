package streamertest_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	_ "github.com/streamerio/streamer/pipes/language" // all.yaml has a language pipe
	"github.com/streamerio/streamer/streamertest"
	"github.com/streamerio/streamer/topology"
)

// TestNullEquality: a field the schema lets be null or absent compares with
// == and != as a value (null == "curl" is false, null != "x" is true); the
// record is filtered, not dead-lettered.
func TestNullEquality(t *testing.T) {
	d, err := streamertest.Load("testdata/nulls/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	in := []streamertest.Record{
		{Value: map[string]any{"id": "present", "user_agent": "curl", "referrer": "x"}},
		{Value: map[string]any{"id": "null", "user_agent": nil, "referrer": "x"}},
		{Value: map[string]any{"id": "absent", "referrer": "x"}},
		{Value: map[string]any{"id": "both-absent"}},
	}
	if err := d.Input("hits", in...); err != nil {
		t.Fatal(err)
	}
	for _, dl := range d.DeadLetters() {
		t.Errorf("dead letter %v: %s", dl.Value, dl.Error)
	}
	out, err := d.Output("curl")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out {
		got = append(got, r.Value.(map[string]any)["id"].(string))
	}
	if want := []string{"present", "both-absent"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want %v", got, want)
	}
}

// nullPositions are the expression positions of every built-in pipe but
// predict (covered in pipes), each with an expression that compares the
// nullable ua with == or != (or gives n a default), and one that applies
// another operation to a nullable field, with the fix validate must give.
var nullPositions = []struct{ pos, good, bad, fix string }{
	{"filter.when", `ua != "bot" && (n ?? 0) >= 0`, `n > 5`, `write (n ?? 0) > 5`},
	{"route.when", `ua != "bot"`, `ua contains "cu"`, `write (ua ?? "") contains "cu"`},
	{"map.key", `ua == "curl" ? "c" : id`, `ua + "-k"`, `write (ua ?? "") + "-k"`},
	{"map.compute", `ua == "curl"`, `n * 2`, `write (n ?? 0) * 2`},
	{"explode.items", `ua == "curl" ? [1, 2] : [0]`, `split(ua, "/")`, `write split(ua ?? "", "/")`},
	{"aggregate.time", `ua == "never" ? 0 : ts`, `n + ts`, `write (n ?? 0) + ts`},
	{"aggregate.of", `ua == "curl" ? 1 : 0`, `n - 1`, `write (n ?? 0) - 1`},
	{"window.time", `ts + (ua == "never" ? 1 : 0)`, `ts + n`, `write ts + (n ?? 0)`},
	{"window.of", `ua != nil ? 1 : 0`, `-n`, `write -(n ?? 0)`},
	{"dedupe.id", `ua == "curl" ? "c" + id : id`, `lower(ua)`, `write lower(ua ?? "")`},
	{"dedupe.time", `ua != "never" ? ts : 0`, `n > 0 ? ts : 0`, `write (n ?? 0) > 0`},
	{"join.on", `ua == "curl" ? "curl" : "other"`, `upper(ua)`, `write upper(ua ?? "")`},
	{"stream_join.time", `ua == "x" ? 0 : ts`, `ts * n`, `write ts * (n ?? 0)`},
	{"language.text", `ua == "curl" ? "this is an english sentence" : "das ist ein deutscher Satz"`, `ua + " text"`, `write (ua ?? "") + " text"`},
}

// allPositions returns testdata/nulls/all.yaml with the good expression in
// every position but the one given the bad one, and the line of that one.
func allPositions(t *testing.T, badPos string) ([]byte, int) {
	t.Helper()
	src, err := os.ReadFile("testdata/nulls/all.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s, line := string(src), 0
	for _, p := range nullPositions {
		x := p.good
		if p.pos == badPos {
			x = p.bad
			before, _, _ := strings.Cut(s, "@"+p.pos+"@")
			line = strings.Count(before, "\n") + 1
		}
		s = strings.Replace(s, "@"+p.pos+"@", strconv.Quote(x), 1)
	}
	if strings.Contains(s, "@") {
		t.Fatalf("a position of all.yaml has no case: %s", s)
	}
	return []byte(s), line
}

// TestNullRuleEveryPosition: in every built-in pipe's expression positions,
// == and != take a null or absent field as a value at run time (no dead
// letters), and validate rejects any other operation on a field the schema
// lets be null, at the expression's file:line:col, with the fix.
func TestNullRuleEveryPosition(t *testing.T) {
	fsys := os.DirFS("testdata/nulls")
	src, _ := allPositions(t, "")
	top, err := topology.Compile("all.yaml", src, fsys)
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	at := streamertest.DefaultTime.UnixMilli()
	hits := []streamertest.Record{
		{Key: streamertest.Key("k1"), Value: map[string]any{"id": "present", "ts": at, "ua": "curl", "n": 3}},
		{Key: streamertest.Key("k2"), Value: map[string]any{"id": "null", "ts": at, "ua": nil, "n": nil}},
		{Key: streamertest.Key("k3"), Value: map[string]any{"id": "absent", "ts": at}},
	}
	if err := d.Table("agents", "curl", map[string]any{"label": "command line"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Input("other", streamertest.Record{Key: streamertest.Key("k2"), Value: map[string]any{"id": "o-2", "ts": at}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Input("hits", hits...); err != nil {
		t.Fatal(err)
	}
	for _, dl := range d.DeadLetters() {
		t.Errorf("dead letter from pipe %s: %s", dl.Pipe, dl.Error)
	}
	want := map[string]int{"filtered": 3, "routed": 3, "mapped": 3, "exploded": 4, "aggregated": 3,
		"windowed": 3, "deduped": 3, "joined": 3, "stream-joined": 1, "languages": 3}
	for ds, n := range want {
		out, err := d.Output(ds)
		if err != nil {
			t.Fatal(err)
		}
		if len(out) != n {
			t.Errorf("%s: %d records, want %d: %v", ds, len(out), n, out)
		}
	}
	mapped, _ := d.Output("mapped")
	var got []string
	for _, r := range mapped {
		got = append(got, fmt.Sprintf("%s=%v", *r.Key, r.Value.(map[string]any)["out"]))
	}
	if g := strings.Join(got, " "); g != "c=true null=false absent=false" {
		t.Errorf("mapped: %s", g)
	}

	for _, p := range nullPositions {
		t.Run(p.pos, func(t *testing.T) {
			src, line := allPositions(t, p.pos)
			_, err := topology.Compile("all.yaml", src, fsys)
			if err == nil {
				t.Fatalf("%s: %s validates", p.pos, p.bad)
			}
			msg := err.Error()
			for _, w := range []string{fmt.Sprintf("all.yaml:%d:", line), "may be null", p.fix} {
				if !strings.Contains(msg, w) {
					t.Errorf("error lacks %q:\n%s", w, msg)
				}
			}
		})
	}
}

// TestNullRuleAvro: a field of an Avro union with null is nullable: ==
// takes it, + does not.
func TestNullRuleAvro(t *testing.T) {
	src, err := os.ReadFile("testdata/nulls/avro.yaml")
	if err != nil {
		t.Fatal(err)
	}
	fsys := os.DirFS("testdata/nulls")
	top, err := topology.Compile("avro.yaml", []byte(strings.Replace(string(src), "@when@", `note != "spam"`, 1)), fsys)
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	if err := d.Input("visits", streamertest.Record{Value: map[string]any{"id": "a", "note": nil}}, streamertest.Record{Value: map[string]any{"id": "b", "note": "spam"}}); err != nil {
		t.Fatal(err)
	}
	if out, err := d.Output("out"); err != nil || len(out) != 1 {
		t.Errorf("got %v, %v; want the record with a null note", out, err)
	}
	_, err = topology.Compile("avro.yaml", []byte(strings.Replace(string(src), "@when@", `note + "!" == "spam!"`, 1)), fsys)
	if err == nil || !strings.Contains(err.Error(), `avro.yaml:10:13: pipe "notes": in expression "note + \"!\" == \"spam!\"": note may be null`) {
		t.Errorf("got %v", err)
	}
}
