package pipes_test

import (
	"context"
	"strings"
	"testing"

	"github.com/streamerio/streamer/pipes"
)

type passConfig struct {
	Note string `yaml:"note" doc:"Ignored."`
}

type pass struct{}

func (pass) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, r := range b.Records {
		out.Emit(0, r)
	}
	return nil
}

func newPass(passConfig, *pipes.Env) (pipes.Pipe, error) { return pass{}, nil }

func init() {
	pipes.MustRegister("env-test-init", pipes.Spec{Summary: "Passes records.", Example: "note: hi"}, newPass)
}

// TestEnvironmentIsolated checks that types registered into an Environment
// stay there: not in the default, not in a clone's source, and a duplicate
// name is refused.
func TestEnvironmentIsolated(t *testing.T) {
	typ, err := pipes.NewType("env-test-pass", pipes.Spec{Summary: "Passes records."}, newPass)
	if err != nil {
		t.Fatal(err)
	}
	if typ.Spec.MinOutputs != 1 || typ.Spec.MaxOutputs != 1 {
		t.Errorf("outputs = %d..%d, want the default 1..1", typ.Spec.MinOutputs, typ.Spec.MaxOutputs)
	}

	env := pipes.NewEnvironment()
	if got := env.TypeNames(); len(got) != 0 {
		t.Fatalf("a new environment has %v, want nothing", got)
	}
	if err := env.Register(typ); err != nil {
		t.Fatal(err)
	}
	if got, ok := env.Lookup("env-test-pass"); !ok || got != typ {
		t.Fatalf("Lookup = %v, %v", got, ok)
	}
	if err := env.Register(typ); err == nil || !strings.Contains(err.Error(), `"env-test-pass" is already registered`) {
		t.Errorf("second Register: %v", err)
	}
	if _, ok := pipes.Lookup("env-test-pass"); ok {
		t.Error("a type registered into an environment leaked into the default")
	}

	// A clone of the default has its types (the built-ins, where the
	// binary links them; here, one registered by init); what it adds
	// stays in it.
	clone := pipes.DefaultEnvironment().Clone()
	if _, ok := clone.Lookup("env-test-init"); !ok {
		t.Error("a clone of the default lacks a type registered in init")
	}
	clone.MustRegister(typ)
	if _, ok := pipes.DefaultEnvironment().Lookup("env-test-pass"); ok {
		t.Error("registering into a clone changed the default")
	}
	if got, want := len(clone.Types()), len(pipes.Types())+1; got != want {
		t.Errorf("clone has %d types, want %d", got, want)
	}
}

func TestNewTypeRejects(t *testing.T) {
	if _, err := pipes.NewType("bad", pipes.Spec{}, func(string, *pipes.Env) (pipes.Pipe, error) { return pass{}, nil }); err == nil {
		t.Error("a non-struct config was accepted")
	}
	if _, err := pipes.NewType("", pipes.Spec{}, newPass); err == nil {
		t.Error("an empty name was accepted")
	}
	if err := pipes.NewEnvironment().Register(&pipes.Type{Name: "zero"}); err == nil {
		t.Error("a Type not made by NewType was accepted")
	}
}

// TestDefaultRegister checks that the package-level Register, which pipe
// packages call from init, registers into DefaultEnvironment.
// The type is complete enough for TestHouseRules, which sees the default.
func TestDefaultRegister(t *testing.T) {
	full := pipes.Spec{Summary: "Passes records.", Example: "note: hi"}
	if err := pipes.Register("env-test-default", full, newPass); err != nil {
		t.Fatal(err)
	}
	if _, ok := pipes.DefaultEnvironment().Lookup("env-test-default"); !ok {
		t.Error("Register did not reach DefaultEnvironment")
	}
	if err := pipes.Register("env-test-default", full, newPass); err == nil {
		t.Error("a duplicate name was accepted")
	}
}
