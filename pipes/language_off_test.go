//go:build nolanguage

package pipes_test

import (
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/pipes"
)

// Without lingua, a topology with a language pipe still decodes (the same
// config as in every build) and fails to build with an error that names the
// build that has the pipe, at the pipe's position. `make unit` runs this
// with -tags nolanguage.
func TestLanguageLeftOut(t *testing.T) {
	typ, ok := pipes.Lookup("language")
	if !ok {
		t.Fatal("language is not registered: a topology using it would get a bare unknown-type error")
	}
	if !strings.Contains(typ.Spec.Summary, "Not in this build") {
		t.Errorf("streamer pipes would list language without saying it is not in this build: %q", typ.Spec.Summary)
	}
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("text: message\noutput: lang\nlanguages: [en, de]\n"), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := typ.Decode(n.Content[0])
	if len(errs) > 0 {
		t.Fatalf("the config does not decode as in the build with lingua: %v", errs)
	}
	_, err := cfg.New(&pipes.Env{Pipe: "lang", Partition: -1,
		Inputs: []pipes.Port{{Dataset: "in"}}, Outputs: []pipes.Port{{Dataset: "out"}}})
	if err == nil {
		t.Fatal("the language pipe built without lingua")
	}
	for _, want := range []string{"not in this build", "-tags nolanguage", "-language"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}
