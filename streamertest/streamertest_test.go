package streamertest_test

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/streamertest"
)

var rewrite = flag.Bool("rewrite", false, "rewrite golden files")

func TestDriver(t *testing.T) {
	d, err := streamertest.Load("../examples/enrichment/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	err = d.Input("orders",
		streamertest.Record{Key: streamertest.Key("c-1"), Value: map[string]any{"order_id": "o-1", "customer_id": "c-1", "country": "DE", "amount": 600, "currency": "EUR", "items": []any{map[string]any{"sku": "x"}}}},
		streamertest.Record{Key: streamertest.Key("c-2"), Raw: []byte("nope")},
	)
	if err != nil {
		t.Fatal(err)
	}
	gold, err := d.Output("gold")
	if err != nil {
		t.Fatal(err)
	}
	if len(gold) != 1 || gold[0].Value.(map[string]any)["tier"] != "gold" || *gold[0].Key != "c-1" {
		t.Fatalf("gold: %+v", gold)
	}
	dl := d.DeadLetters()
	if len(dl) != 1 || dl[0].Stage != "decode" || dl[0].Pipe != "valid" || string(dl[0].Raw) != "nope" || dl[0].SourceTopic != "orders" {
		t.Fatalf("dead letters: %+v", dl)
	}
	if d.Stats().RecordsIn.Load() != 2 || d.Stats().DeadLettered.Load() != 1 {
		t.Errorf("stats in %d, dead %d", d.Stats().RecordsIn.Load(), d.Stats().DeadLettered.Load())
	}
	// Keys decide partitions as Kafka's default partitioner does, so per-key
	// order holds across batches.
	if err := d.InputPartition("orders", 7, streamertest.Record{}); err == nil || !strings.Contains(err.Error(), "has 3") {
		t.Errorf("partition out of range: %v", err)
	}
	if err := d.Input("enriched", streamertest.Record{}); err == nil {
		t.Error("input to a sink accepted")
	}
	d.Reset()
	if out, _ := d.Output("gold"); len(out) != 0 {
		t.Error("Reset kept outputs")
	}
}

func TestDriverFailPolicy(t *testing.T) {
	dir := t.TempDir()
	src := "name: t\ndatasets:\n  in: {topic: in}\n  out: {topic: out}\npipes:\n  p:\n    from: in\n    to: out\n    on_error: fail\n    filter: {when: 'n > 1'}\n"
	if err := os.WriteFile(filepath.Join(dir, "t.yaml"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := streamertest.Load(filepath.Join(dir, "t.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	err = d.Input("in", streamertest.Record{Value: map[string]any{"n": "x"}})
	if !errors.Is(err, engine.ErrFailed) {
		t.Fatalf("err = %v, want engine.ErrFailed", err)
	}
}

func TestExampleTestFilesPass(t *testing.T) {
	files, err := streamertest.Find([]string{"../examples"})
	if err != nil || len(files) == 0 {
		t.Fatalf("no example test files: %v", err)
	}
	for _, f := range files {
		if strings.Contains(f, "custompipe") {
			continue // needs the redact pipe; its own package tests it
		}
		r := streamertest.RunFile(f, streamertest.Options{})
		if r.Err != nil {
			t.Fatalf("%s: %v", f, r.Err)
		}
		for _, c := range r.Cases {
			if !c.Passed() {
				t.Errorf("%s: %s: %v", f, c.Name, c.Failures)
			}
		}
	}
}

// TestMalformedFile checks that every problem of a broken test file is
// reported with file:line:col.
func TestMalformedFile(t *testing.T) {
	r := streamertest.RunFile("testdata/broken.test.yaml", streamertest.Options{})
	var fe *streamertest.FileError
	if !errors.As(r.Err, &fe) {
		t.Fatalf("err = %v, want a *FileError", r.Err)
	}
	golden(t, "testdata/broken.golden", r.Err.Error()+"\n")
}

// TestFailureReport checks what a failing case says, and that --update
// makes it pass.
func TestFailureReportAndUpdate(t *testing.T) {
	src, err := os.ReadFile("../examples/enrichment/topology.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../examples/enrichment/topology.yaml")
	s := strings.Replace(string(src), "topology: topology.yaml", "topology: "+abs, 1)
	s = strings.Replace(s, "amount_eur: 736", "amount_eur: 735", 1)
	s = strings.Replace(s, "      gold:\n        - key: c-2\n          value: {order_id: o-2, tier: gold}\n", "      gold: []\n", 1)
	s = strings.Replace(s, "        stage: decode\n", "        stage: encode\n", 1)
	file := filepath.Join(t.TempDir(), "x.test.yaml")
	if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	r := streamertest.RunFile(file, streamertest.Options{})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	var got []string
	for _, c := range r.Cases {
		got = append(got, c.Failures...)
	}
	golden(t, "testdata/failures.golden", strings.Join(got, "\n")+"\n")

	if r := streamertest.RunFile(file, streamertest.Options{Update: true}); r.Err != nil || !r.Updated {
		t.Fatalf("update: %v", r.Err)
	}
	r = streamertest.RunFile(file, streamertest.Options{})
	for _, c := range r.Cases {
		if !c.Passed() {
			t.Errorf("after --update, %q fails: %v", c.Name, c.Failures)
		}
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *rewrite {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -rewrite)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s--- want\n%s", path, got, want)
	}
}

// BenchmarkExampleCases measures how long one declarative case takes: the
// enrichment example's file, parsed, compiled and run per iteration.
func BenchmarkExampleCases(b *testing.B) {
	var cases int
	for b.Loop() {
		r := streamertest.RunFile("../examples/enrichment/topology.test.yaml", streamertest.Options{})
		if r.Err != nil {
			b.Fatal(r.Err)
		}
		cases = len(r.Cases)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*cases), "µs/case")
}

// TestRegistryDatasetsInTests: topologies whose datasets use the registry
// wire format run in tests against an in-memory registry.
func TestRegistryDatasetsInTests(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"u.avsc":      `{"type":"record","name":"U","fields":[{"name":"id","type":"long"},{"name":"plan","type":"string"}]}`,
		"o.avsc":      `{"type":"record","name":"O","fields":[{"name":"id","type":"long"},{"name":"plan","type":"string"},{"name":"paid","type":"boolean"}]}`,
		"t.yaml":      "name: r\ndatasets:\n  users: {topic: users, value: avro, schema: u.avsc, registry: {register: true}}\n  out: {topic: out, value: avro, schema: o.avsc, registry: {register: true}}\npipes:\n  m:\n    from: users\n    to: out\n    on_error: fail\n    map: {compute: {paid: plan != 'free'}}\n",
		"t.test.yaml": "topology: t.yaml\ncases:\n  - name: wire format both ways\n    input:\n      users:\n        - value: {id: 1, plan: pro}\n        - value: {id: 2, plan: free}\n    expect:\n      out:\n        - value: {id: 1, plan: pro, paid: true}\n        - value: {id: 2, plan: free, paid: false}\n",
	}
	passOneCase(t, dir, files)
}

// TestDriverState inspects what a stateful pipe keeps.
func TestDriverState(t *testing.T) {
	d, err := streamertest.Load("../examples/customer-stats/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	for _, amount := range []float64{10, 20} {
		if err := d.InputPartition("orders", 0, streamertest.Record{Key: streamertest.Key("c-9"),
			Value: map[string]any{"order_id": "o", "customer_id": "c-9", "country": "DE", "amount": amount, "currency": "EUR", "items": []any{}}}); err != nil {
			t.Fatal(err)
		}
	}
	var keys []string
	err = d.State("per-customer", 0, func(k, v []byte) bool {
		keys = append(keys, string(k)+" "+string(v))
		return true
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || !strings.HasPrefix(keys[0], "c-9 ") || !strings.Contains(keys[0], `"orders":{"n":2}`) {
		t.Fatalf("state %v", keys)
	}
}

// passOneCase writes files into dir and checks that t.test.yaml among them
// holds one case, which passes.
func passOneCase(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, src := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := streamertest.RunFile(filepath.Join(dir, "t.test.yaml"), streamertest.Options{})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if len(r.Cases) != 1 || !r.Cases[0].Passed() {
		t.Fatalf("%+v", r.Cases)
	}
}
