package shadow

import (
	"math"
	"strings"
	"testing"
)

func vals(vs ...any) []value {
	var out []value
	for _, v := range vs {
		out = append(out, value{v: v, text: strings.TrimSpace(text(v, true))})
	}
	return out
}

// TestCompare: pairs by key in order; equal pairs, changed ones with their
// fields and numeric deltas, and records only in one version.
func TestCompare(t *testing.T) {
	old := map[string][]value{
		"a": vals(map[string]any{"id": 1.0, "score": 0.5, "label": "x"}),
		"b": vals(map[string]any{"id": 2.0, "score": 0.25, "label": "y"}, map[string]any{"id": 2.0, "score": 0.75}),
		"c": vals(map[string]any{"id": 3.0, "score": 1.0}),
		"d": vals("plain"),
	}
	nw := map[string][]value{
		"a": vals(map[string]any{"id": 1.0, "score": 0.5, "label": "x"}),
		"b": vals(map[string]any{"id": 2.0, "score": 0.5, "label": "z"}),
		"d": vals("other"),
		"e": vals(map[string]any{"id": 5.0}),
	}
	d := &Diff{}
	d.compare(old, nw)
	if d.Same != 1 || d.Changed != 2 || d.OnlyOld != 2 || d.OnlyNew != 1 || !d.Differs() {
		t.Fatalf("same %d changed %d only old %d only new %d", d.Same, d.Changed, d.OnlyOld, d.OnlyNew)
	}
	byName := map[string]Field{}
	for _, f := range d.Fields {
		byName[f.Name] = f
	}
	if f := byName["score"]; f.Changed != 1 || f.Numeric != 1 || math.Abs(f.MeanAbs-0.25) > 1e-9 || math.Abs(f.MaxAbs-0.25) > 1e-9 {
		t.Errorf("score: %+v", f)
	}
	if f := byName["label"]; f.Changed != 1 || f.Numeric != 0 {
		t.Errorf("label: %+v", f)
	}
	if f := byName["(value)"]; f.Changed != 1 {
		t.Errorf("(value): %+v", f)
	}
	if _, ok := byName["id"]; ok {
		t.Errorf("id reported changed")
	}
	var changed []string
	for _, s := range d.Samples {
		if s.Kind == "changed" && s.Key == "b" {
			changed = s.Fields
		}
	}
	if strings.Join(changed, "; ") != `label: "y" → "z"; score: 0.25 → 0.5` {
		t.Errorf("sample of b: %q", changed)
	}
	same := &Diff{}
	same.compare(old, old)
	if same.Differs() || same.Same != 5 {
		t.Errorf("a version compared with itself: %+v", same)
	}
}
