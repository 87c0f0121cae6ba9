package builtin_test

import (
	"strings"
	"testing"

	"github.com/streamerio/streamer/internal/testfixtures"
	"github.com/streamerio/streamer/pipes"
)

// The fixtures these tests share with package pipes': one nullSchema for
// them all (TestNullDerivedSchemas checks that a filter leaves it as it was).
var (
	nullSchema  = testfixtures.NullSchema()
	compileNull = testfixtures.CompileExpr
)

// TestNullDerivedSchemas: a map field computed from a nullable field is
// nullable (and one given a default with ?? is not), a filter or a route on
// x != nil makes x non-null downstream (not on the route's default), and a field a pipe declares nullable is
// checked like one from a dataset's schema.
func TestNullDerivedSchemas(t *testing.T) {
	m, err := build(t, "map", "compute:\n  agent: ua\n  named: ua ?? 'unknown'\n  big: (n ?? 0) > 5\n", []string{"out"}, nullSchema)
	if err != nil {
		t.Fatal(err)
	}
	out := m.(pipes.SchemaDeriver).OutputSchema(0)
	for name, want := range map[string]bool{"agent": true, "named": false, "big": false} {
		if f, _ := out.Field(name); f.Nullable != want {
			t.Errorf("map output %s: nullable %v, want %v", name, f.Nullable, want)
		}
	}
	if _, err := compileNull(`agent > "a"`, out); err == nil || !strings.Contains(err.Error(), "agent may be null") {
		t.Errorf("agent > \"a\" downstream of the map: %v", err)
	}
	if _, err := compileNull(`named > "a"`, out); err != nil {
		t.Error(err)
	}
	f, err := build(t, "filter", "when: ua != nil && n != nil", []string{"out"}, nullSchema)
	if err != nil {
		t.Fatal(err)
	}
	narrowed := f.(pipes.SchemaDeriver).OutputSchema(0)
	if _, err := compileNull(`ua + "!" + string(n * 2)`, narrowed); err != nil {
		t.Errorf("downstream of a filter on != nil: %v", err)
	}
	if fu, _ := nullSchema.Field("ua"); !fu.Nullable {
		t.Error("the filter changed its input schema")
	}
	r, err := build(t, "route", "routes:\n  - {when: ua != nil, to: known}\ndefault: rest\n", []string{"known", "rest"}, nullSchema)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := compileNull(`ua + "!"`, r.(pipes.SchemaDeriver).OutputSchema(0)); err != nil {
		t.Errorf("downstream of a route on ua != nil: %v", err)
	}
	if _, err := compileNull(`ua + "!"`, r.(pipes.SchemaDeriver).OutputSchema(1)); err == nil {
		t.Error("the default output of a route on ua != nil: ua + \"!\" compiles")
	}
}

// TestNullPredictFeatures: the predict pipe's feature expressions follow
// the rule too: a nullable feature may be passed as it is (null is a missing
// value) or compared, but arithmetic on it needs a default.
func TestNullPredictFeatures(t *testing.T) {
	s := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "f0", Kind: pipes.Float64, Nullable: true}, {Name: "ua", Kind: pipes.String, Nullable: true}}}
	good := "model: {type: xgboost, path: xgb-binary.json}\nfeatures:\n- expr: f0\n- expr: \"ua == 'curl' ? 1 : 0\"\n- expr: (f0 ?? 0) * 2\n- expr: f0\n- expr: f0\n- expr: f0\noutput: [score]\n"
	p, err := buildPredict(t, good, s)
	if err != nil {
		t.Fatal(err)
	}
	got, fails := run(t, p, 1, `{"f0": 1, "ua": "curl"}`, `{"f0": null, "ua": null}`, `{}`)
	if len(fails) > 0 || len(got[0]) != 3 {
		t.Errorf("got %v, failures %v", got, fails)
	}
	_, err = buildPredict(t, strings.Replace(good, "(f0 ?? 0) * 2", "f0 * 2", 1), s)
	if err == nil || !strings.Contains(err.Error(), "write (f0 ?? 0) * 2") {
		t.Errorf("f0 * 2: %v", err)
	}
}
