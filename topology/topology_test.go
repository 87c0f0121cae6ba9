package topology_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

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
		{"bad duration", head + "processing: {commit_interval: soon}\npipes:\n  p: {from: src, to: out, filter: {when: 'true'}}\n", "t.yaml:5:31: want a duration"},
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
