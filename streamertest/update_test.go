package streamertest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamerio/streamer/streamertest"
)

// TestUpdateKeepsLayout: --update rewrites only the expectations that
// failed, in place: the rest of the file (comments, blank lines, wrapped
// flow maps) stays byte for byte, a match: partial case keeps only the
// fields it gave, in their order, a dead letter keeps its error: substring,
// and it says what it rewrote.
func TestUpdateKeepsLayout(t *testing.T) {
	src, err := os.ReadFile("../examples/enrichment/topology.test.yaml")
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs("../examples/enrichment/topology.yaml")
	orig := strings.Replace(string(src), "topology: topology.yaml", "topology: "+abs, 1)
	s := strings.Replace(orig, "amount_eur: 736", "amount_eur: 735", 1)
	s = strings.Replace(s, "value: {order_id: o-3, tier: standard}", "value: {order_id: o-3, tier: gold}", 1)
	s = strings.Replace(s, "        stage: decode\n", "        stage: encode\n", 1)
	file := filepath.Join(t.TempDir(), "x.test.yaml")
	if err := os.WriteFile(file, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	r := streamertest.RunFile(file, streamertest.Options{Update: true})
	if r.Err != nil || !r.Updated {
		t.Fatalf("update: %v", r.Err)
	}
	want := []string{
		`case "big orders reach the gold tier, converted to EUR" (line 27): rewrote expect.enriched (2 records, partial)`,
		`case "malformed records go to the dead-letter topic and the rest flows" (line 58): rewrote dead_letters (2)`,
	}
	if strings.Join(r.Rewrote, "\n") != strings.Join(want, "\n") {
		t.Errorf("rewrote:\n%s\nwant:\n%s", strings.Join(r.Rewrote, "\n"), strings.Join(want, "\n"))
	}
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	// The fixed expectations are those of the original file; only the
	// quoting of the rewritten dead letters' scalars may differ.
	got := string(b)
	if got != orig {
		gl, ol := strings.Split(got, "\n"), strings.Split(orig, "\n")
		for i := 0; i < max(len(gl), len(ol)); i++ {
			var g, o string
			if i < len(gl) {
				g = gl[i]
			}
			if i < len(ol) {
				o = ol[i]
			}
			if g != o && strings.Trim(g, `'"`) != strings.Trim(o, `'"`) && !sameUnquoted(g, o) {
				t.Errorf("line %d: got\n%s\nwant\n%s", i+1, g, o)
			}
		}
	}
	r = streamertest.RunFile(file, streamertest.Options{})
	for _, c := range r.Cases {
		if !c.Passed() {
			t.Errorf("after --update, %q fails: %v", c.Name, c.Failures)
		}
	}
	if r := streamertest.RunFile(file, streamertest.Options{Update: true}); r.Updated || len(r.Rewrote) > 0 {
		t.Errorf("a passing file was rewritten: %v", r.Rewrote)
	}
}

// sameUnquoted compares two lines of YAML ignoring how scalars are quoted.
func sameUnquoted(a, b string) bool {
	strip := func(s string) string { return strings.NewReplacer(`"`, "", `'`, "", `\`, "").Replace(s) }
	return strip(a) == strip(b)
}

// TestReference: docs/test-files.md is the reference that `streamer test
// --reference` prints, generated from the format's structs; it names every
// key of them. Regenerate with go test ./streamertest -rewrite.
func TestReference(t *testing.T) {
	ref := streamertest.Reference()
	for _, w := range []string{"topology (required)", "match (default exact, one of exact|partial)", "order (default key, one of key|total|none)",
		"dead_letters", "timestamp", "at:", "error: A substring of the error message", "partition", "tables"} {
		if !strings.Contains(ref, w) {
			t.Errorf("reference lacks %q", w)
		}
	}
	golden(t, "../docs/test-files.md", "# The test-file format\n\n```\n"+ref+"```\n")
}
