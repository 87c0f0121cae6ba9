package topology_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/streamerio/streamer/pipes"
	_ "github.com/streamerio/streamer/pipes/language" // every type is built from broken configs
	"github.com/streamerio/streamer/topology"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the golden files in testdata")

// golden compares got with testdata/name, or rewrites it with -rewrite.
func golden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *rewrite {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./topology -rewrite to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (run go test ./topology -rewrite and review the diff):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestInvalid checks the full diagnostic list of each broken file: every
// error, with file:line:col, in one run.
func TestInvalid(t *testing.T) {
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test files")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, err := topology.Load(f)
			var te *topology.Error
			if !errors.As(err, &te) {
				t.Fatalf("Load(%s) = %v, want a *topology.Error", f, err)
			}
			for _, d := range te.Diagnostics {
				if d.Line == 0 || d.Col == 0 {
					t.Errorf("diagnostic without a position: %s", d)
				}
			}
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", []byte(te.Error()+"\n"))
		})
	}
}

// TestPlan renders the compiled plan of each valid file in every format.
func TestPlan(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	for _, f := range files {
		top, err := topology.Load(f)
		if err != nil {
			t.Fatalf("Load(%s): %v", f, err)
		}
		for _, format := range topology.PlanFormats {
			t.Run(filepath.Base(f)+"/"+format, func(t *testing.T) {
				var b bytes.Buffer
				if err := top.WritePlan(&b, format, "r1"); err != nil {
					t.Fatal(err)
				}
				golden(t, strings.TrimSuffix(f, ".yaml")+"."+format+".golden", b.Bytes())
			})
		}
	}
}

func TestCompiledGraph(t *testing.T) {
	top, err := topology.Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, p := range top.Pipes {
		order = append(order, p.Name)
	}
	if got, want := strings.Join(order, ","), "positive,shape,split,lines"; got != want {
		t.Errorf("pipe order %s, want %s", got, want)
	}
	if got := strings.Join(top.TopicsRead(), ","); got != "orders" {
		t.Errorf("topics read %s", got)
	}
	if got := strings.Join(top.TopicsWritten(), ","); got != "eu,lines,rest,dlq" {
		t.Errorf("topics written %s", got)
	}
	if top.Group != "streamer-full" || top.TransactionalID("r1") != "streamer-full-r1" {
		t.Errorf("group %q, txn id %q", top.Group, top.TransactionalID("r1"))
	}
	// The map's derived schema reaches the route: cc and big exist, country does not.
	shaped := top.Datasets["shaped"].Schema
	for _, f := range []string{"cc", "big", "total", "amount"} {
		if _, ok := shaped.Field(f); !ok {
			t.Errorf("derived schema lacks %q: %v", f, shaped.Names())
		}
	}
	for _, f := range []string{"country", "debug"} {
		if _, ok := shaped.Field(f); ok {
			t.Errorf("derived schema still has %q", f)
		}
	}
	for _, p := range top.Pipes {
		want := topology.DeadLetter
		if p.Name == "lines" {
			want = topology.Skip
		}
		if p.OnError != want {
			t.Errorf("pipe %s on_error %s, want %s", p.Name, p.OnError, want)
		}
	}
}

func TestCompileRules(t *testing.T) {
	const head = "name: t\ndatasets:\n  src: {topic: src}\n  out: {topic: out}\n"
	tests := []struct {
		name, src, want string
	}{
		{"ok", head + "pipes:\n  p: {from: src, to: out, on_error: skip, filter: {when: 'true'}}\n", ""},
		{"no dead letter", head + "pipes:\n  p: {from: src, to: out, on_error: dlq, filter: {when: 'true'}}\n", "t.yaml:6:3: pipe \"p\" sends failures to the dead-letter dataset"},
		{"filter not bool", head + "pipes:\n  p: {from: src, to: out, filter: {when: '1 + 1'}}\n", "expected bool"},
		{"empty pipes", head + "pipes: {}\n", "the topology has no pipes"},
		{"too many outputs", head + "  o2: {topic: o2}\npipes:\n  p: {from: src, to: [out, o2], filter: {when: 'true'}}\n", "takes at most 1"},
		{"shared topic", "name: t\ndatasets:\n  src: {topic: x}\n  out: {topic: x}\npipes:\n  p: {from: src, to: out, filter: {when: 'true'}}\n", "already used by dataset"},
		{"route to non-output", head + "pipes:\n  p:\n    from: src\n    to: out\n    route:\n      routes: [{when: 'true', to: elsewhere}]\n", "t.yaml:10:35: pipe \"p\": \"elsewhere\" is not one of this pipe's outputs"},
		{"empty file", "", "t.yaml:1:1: the file is empty"},
		{"not a mapping", "- a\n- b\n", "want a mapping"},
		{"create without topic", "name: t\ndatasets:\n  src: {topic: src}\n  mid: {create: {partitions: 1}}\npipes:\n  p: {from: src, to: mid, filter: {when: 'true'}}\n", "has create: but no topic"},
		{"bad duration", head + "processing: {commit_interval: soon}\npipes:\n  p: {from: src, to: out, filter: {when: 'true'}}\n", `t.yaml:5:31: commit_interval: "soon" is not a duration`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := topology.Compile("t.yaml", []byte(tt.src), fstest.MapFS{})
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error:\n%v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestJSONSchemaCoversPipes checks that the generated schema names every
// registered pipe type and rejects unknown top-level keys.
func TestJSONSchema(t *testing.T) {
	s := topology.JSONSchema()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"filter"`, `"map"`, `"route"`, `"explode"`, `"dead_letter"`, `"commit_interval"`} {
		if !bytes.Contains(b, []byte(want)) {
			t.Errorf("schema lacks %s", want)
		}
	}
	if s["additionalProperties"] != false {
		t.Error("top level allows unknown keys")
	}
}

func FuzzCompile(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	fsys := fstest.MapFS{"order.json": {Data: []byte(`{"type":"object","properties":{"amount":{"type":"number"}}}`)}}
	f.Fuzz(func(t *testing.T, src []byte) {
		top, err := topology.Compile("f.yaml", src, fsys)
		if err == nil {
			if top == nil {
				t.Fatal("nil topology without error")
			}
			return
		}
		var te *topology.Error
		if !errors.As(err, &te) || len(te.Diagnostics) == 0 {
			t.Fatalf("error %v is not a non-empty *topology.Error", err)
		}
	})
}

// TestTableRules checks the rules of table datasets and joins, one broken
// (or fine) topology each.
func TestTableRules(t *testing.T) {
	const ds = "name: t\ndatasets:\n  orders: {topic: orders, partitions: 3}\n  out: {topic: out}\n"
	tests := []struct {
		name, src string
		want      []string // substrings of the error; none: it compiles
	}{
		{"partitioned, counts equal", ds + "  cust: {topic: cust, table: partitioned, partitions: 3}\npipes:\n  j: {from: orders, to: out, join: {table: cust, into: c}}\n", nil},
		{"partitioned, counts undeclared: checked at start", ds + "  cust: {topic: cust, table: partitioned}\npipes:\n  j: {from: orders, to: out, join: {table: cust, into: c}}\n", nil},
		{"partitioned, create: counts", ds + "  cust: {topic: cust, table: partitioned, create: {partitions: 3}}\npipes:\n  j: {from: orders, to: out, join: {table: cust, into: c}}\n", nil},
		{"partitioned, counts differ", ds + "  cust: {topic: cust, table: partitioned, create: {partitions: 6}}\npipes:\n  j: {from: orders, to: out, join: {table: cust, into: c}}\n",
			[]string{`t.yaml:3:3: stream "orders" has 3 partitions, but partitioned table "cust" (at 5:3)`, `t.yaml:5:3: partitioned table "cust" has 6 partitions, but stream "orders" (at 3:3), which pipe "j" joins with it, has 3`}},
		{"counts differ through an in-memory dataset", ds + "  mid: {}\n  cust: {topic: cust, table: partitioned, partitions: 2}\npipes:\n  f: {from: orders, to: mid, filter: {when: 'true'}}\n  j: {from: mid, to: out, join: {table: cust, into: c}}\n",
			[]string{`partitioned table "cust" has 2 partitions, but stream "orders"`}},
		{"global: any count, any key", ds + "  cc: {topic: cc, table: global, partitions: 1}\npipes:\n  j: {from: orders, to: out, join: {table: cc, on: country, into: c}}\n", nil},
		{"partitioned with on:", ds + "  cust: {topic: cust, table: partitioned}\npipes:\n  j: {from: orders, to: out, join: {table: cust, on: customer, into: c}}\n",
			[]string{`t.yaml:7:54: pipe "j": on: table "cust" is partitioned`}},
		{"a table without a topic", ds + "  cust: {table: global}\npipes:\n  j: {from: orders, to: out, join: {table: cust, into: c}}\n",
			[]string{`t.yaml:5:3: dataset "cust" is a table but has no topic`}},
		{"join of a stream", ds + "pipes:\n  j: {from: orders, to: out, join: {table: orders, into: c}}\n",
			[]string{`t.yaml:6:44: pipe "j": table: dataset "orders" is not a table`}},
		{"join of an unknown dataset", ds + "pipes:\n  j: {from: orders, to: out, join: {table: ordres, into: c}}\n",
			[]string{`pipe "j": table: unknown dataset "ordres" (did you mean "orders"?)`}},
		{"a table read with from:", ds + "  cust: {topic: cust, table: global}\npipes:\n  j: {from: cust, to: out, filter: {when: 'true'}}\n",
			[]string{`t.yaml:7:13: pipe "j" reads table "cust" in from:, but a table is not a stream`}},
		{"a table written by a pipe", ds + "  cust: {topic: cust, table: global}\npipes:\n  j: {from: orders, to: cust, filter: {when: 'true'}}\n",
			[]string{`t.yaml:7:25: pipe "j" writes table "cust": a table is an input`}},
		{"bad table kind", ds + "  cust: {topic: cust, table: local}\npipes:\n  j: {from: orders, to: out, filter: {when: 'true'}}\n",
			[]string{`"local" is not one of partitioned, global`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			top, err := topology.Compile("t.yaml", []byte(tt.src), fstest.MapFS{})
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				if len(top.Tables()) != 1 || len(top.Pipes[len(top.Pipes)-1].Tables) != 1 {
					t.Errorf("tables %v, pipe tables %v: want the join's table recorded", top.Tables(), top.Pipes[len(top.Pipes)-1].Tables)
				}
				if strings.Contains(strings.Join(top.TopicsRead(), ","), "c") {
					t.Errorf("topics read %v: a table topic is not consumed by the group", top.TopicsRead())
				}
				return
			}
			if err == nil {
				t.Fatalf("compiled; want errors %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error:\n%v\nwant it to contain %q", err, w)
				}
			}
		})
	}
}

// TestJoinDerivedSchema: a join's output schema is its input's plus the
// joined fields, typed from the table's schema, so expressions downstream
// are checked against them.
func TestJoinDerivedSchema(t *testing.T) {
	top, err := topology.Load("testdata/valid/join.yaml")
	if err != nil {
		t.Fatal(err)
	}
	s := top.Datasets["with-customer"].Schema
	for _, f := range []string{"amount", "country", "customer_name", "segment"} {
		if _, ok := s.Field(f); !ok {
			t.Errorf("derived schema lacks %q: %v", f, s.Names())
		}
	}
	const src = "name: t\ndatasets:\n  orders: {topic: orders, schema: order.json}\n  cust: {topic: cust, table: partitioned, schema: customer.json}\n  mid: {}\n  out: {topic: out}\npipes:\n  j: {from: orders, to: mid, join: {table: cust, fields: {who: name}}}\n  f: {from: mid, to: out, filter: {when: 'who * 2 > 1'}}\n"
	fsys := fstest.MapFS{"order.json": {Data: mustRead(t, "testdata/valid/order.json")}, "customer.json": {Data: mustRead(t, "testdata/valid/customer.json")}}
	_, err = topology.Compile("t.yaml", []byte(src), fsys)
	if err == nil || !strings.Contains(err.Error(), "t.yaml:9:") {
		t.Fatalf("error %v: want the string field who used as a number refused", err)
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestCreateReplication: a topic the job creates takes the broker's
// default replication factor (-1) unless create.replication says
// otherwise; 0 and other negatives are refused where written.
func TestCreateReplication(t *testing.T) {
	const src = `name: r
datasets:
  in: {topic: in}
  out:
    topic: out
    create: {partitions: 2%s}
pipes:
  copy: {from: in, to: out, filter: {when: "true"}}
`
	for _, tt := range []struct {
		extra string
		want  int
		err   string
	}{
		{"", -1, ""},
		{", replication: 3", 3, ""},
		{", replication: -1", -1, ""},
		{", replication: 0", 0, `t.yaml:6:42: dataset "out": create.replication must be at least 1, or -1 for the broker's default, not 0`},
		{", replication: -2", 0, "not -2"},
	} {
		top, err := topology.Compile("t.yaml", []byte(fmt.Sprintf(src, tt.extra)), fstest.MapFS{})
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%q: %v, want %q", tt.extra, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%q: %v", tt.extra, err)
		}
		if got := top.Datasets["out"].Create.Replication; got != tt.want {
			t.Errorf("%q: replication %d, want %d", tt.extra, got, tt.want)
		}
	}
}

// TestIncompleteConfigsAreBuiltSafely: the compiler builds a pipe whose
// config has errors, to report the rest of its errors in the same run.
// Every built-in type must survive being built from an empty config and
// report errors, not panic.
func TestIncompleteConfigsAreBuiltSafely(t *testing.T) {
	for _, typ := range pipes.TypeNames() {
		for _, cfg := range []string{"{}", "{unknown: 1}", "[1, 2]"} {
			src := fmt.Sprintf("name: t\ndatasets:\n  in: {topic: in}\n  out: {topic: out}\npipes:\n  p:\n    from: in\n    to: out\n    %s: %s\n", typ, cfg)
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Errorf("%s %s: the compiler panicked: %v", typ, cfg, r)
					}
				}()
				if _, err := topology.Compile("t.yaml", []byte(src), fstest.MapFS{}); err == nil && cfg != "{}" {
					t.Errorf("%s %s: compiled", typ, cfg)
				}
			}()
		}
	}
}
