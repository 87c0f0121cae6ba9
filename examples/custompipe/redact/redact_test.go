package redact_test

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"example.com/custompipe/redact"
	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/streamertest"
	"github.com/streamerio/streamer/topology"
)

// TestTopology runs the example topology's compiled plan over records, with
// the same code the engine runs, and no broker.
func TestTopology(t *testing.T) {
	top, err := topology.Load("../topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	task, err := engine.NewTask(top, "signups", 0, engine.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var out, rejected []*kgo.Record
	in := []*kgo.Record{
		{Topic: "signups", Value: []byte(`{"user_id":1,"email":"ann@example.com","address":{"street":"Main St 1","city":"Oslo"}}`)},
		{Topic: "signups", Value: []byte(`{"user_id":2,"email":"ann@example.com"}`)},
		{Topic: "signups", Value: []byte(`["not", "an", "object"]`)},
	}
	emit := func(r *kgo.Record) {
		switch r.Topic {
		case "signups-clean":
			out = append(out, r)
		case "signups-rejected":
			rejected = append(rejected, r)
		default:
			t.Errorf("record to %s", r.Topic)
		}
	}
	if err := task.Process(context.Background(), in, emit); err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 || len(rejected) != 1 {
		t.Fatalf("got %d outputs and %d dead letters, want 2 and 1", len(out), len(rejected))
	}
	a, b := string(out[0].Value), string(out[1].Value)
	if strings.Contains(a, "ann@") || strings.Contains(a, "Main St") || !strings.Contains(a, `"city":"Oslo"`) {
		t.Errorf("not redacted: %s", a)
	}
	// The same email hashes the same way, so the field still joins.
	hash := func(s string) string {
		i := strings.Index(s, `"email":"`)
		return s[i : i+25]
	}
	if hash(a) != hash(b) {
		t.Errorf("hashes differ: %s vs %s", a, b)
	}
	if string(rejected[0].Value) != string(in[2].Value) {
		t.Errorf("dead letter %s, want the raw array", rejected[0].Value)
	}
}

func TestValidateCatchesUnknownField(t *testing.T) {
	src := `
name: t
datasets:
  in: {topic: in, schema: signup.json}
  out: {topic: out}
pipes:
  r:
    from: in
    to: out
    on_error: skip
    redact:
      fields: [emial]
      mode: scramble
`
	_, err := topology.Compile("t.yaml", []byte(src), os.DirFS(".."))
	if err == nil {
		t.Fatal("compiled")
	}
	for _, want := range []string{`t.yaml:13:13: "scramble" is not one of hash, mask`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	src = strings.Replace(src, "mode: scramble", "mode: mask", 1)
	_, err = topology.Compile("t.yaml", []byte(src), os.DirFS(".."))
	if err == nil || !strings.Contains(err.Error(), `t.yaml:12:16: pipe "r": unknown field "emial" (did you mean "email"?)`) {
		t.Errorf("error %v", err)
	}
}

// TestMasksKeyPosition: a key of masks: that is not one of fields: is
// reported at the key's own line and column, which pipes.KV keeps.
func TestMasksKeyPosition(t *testing.T) {
	src := `name: t
datasets:
  in: {topic: in, schema: signup.json}
  out: {topic: out}
pipes:
  r:
    from: in
    to: out
    redact:
      fields: [email, address.street]
      mode: mask
      masks:
        email: "<email>"
        adress.street: "<street>"
`
	_, err := topology.Compile("t.yaml", []byte(src), os.DirFS(".."))
	if want := `t.yaml:14:9: pipe "r": masks: "adress.street" is not one of fields [email address.street]`; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("error %v, want %q", err, want)
	}
	src = strings.Replace(src, "adress.street", "address.street", 1)
	if _, err := topology.Compile("t.yaml", []byte(src), os.DirFS("..")); err != nil {
		t.Error(err)
	}
}

// TestTopologyTests runs the example's declarative test cases, with the
// redact pipe registered by this package.
func TestTopologyTests(t *testing.T) {
	r := streamertest.RunFile("../topology.test.yaml", streamertest.Options{})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	for _, c := range r.Cases {
		if !c.Passed() {
			t.Errorf("%s: %v", c.Name, c.Failures)
		}
	}
	if len(r.Cases) == 0 {
		t.Fatal("no cases ran")
	}
}

// TestIsolatedEnvironment runs the declarative cases against an environment
// of the test's own: two built-ins and redact.Type, nothing registered by
// other packages' init functions.
func TestIsolatedEnvironment(t *testing.T) {
	env := pipes.NewEnvironment()
	for _, name := range []string{"filter", "map"} {
		typ, ok := pipes.Lookup(name)
		if !ok {
			t.Fatalf("no built-in %s", name)
		}
		env.MustRegister(typ)
	}
	env.MustRegister(redact.Type)
	r := streamertest.RunFile("../topology.test.yaml", streamertest.Options{Pipes: env})
	if r.Err != nil || r.Skipped != "" || len(r.Cases) == 0 {
		t.Fatalf("err %v, skipped %q, %d cases", r.Err, r.Skipped, len(r.Cases))
	}
	for _, c := range r.Cases {
		if !c.Passed() {
			t.Errorf("%s: %v", c.Name, c.Failures)
		}
	}
	if _, err := streamertest.Load("../topology.yaml", topology.WithPipes(pipes.NewEnvironment())); err == nil ||
		!strings.Contains(err.Error(), `unknown field or pipe type "redact"`) {
		t.Errorf("an empty environment compiled the topology: %v", err)
	}
}
