package builtin_test

import (
	"testing"

	"github.com/streamerio/streamer/pipes"
	_ "github.com/streamerio/streamer/pipes/language" // the house rules cover it too
)

// TestHouseRules enforces what every registered pipe type owes its users:
// a summary, an example that decodes, and documentation on every config key
// (it becomes the JSON Schema's description and `streamer pipes TYPE`).
func TestHouseRules(t *testing.T) {
	for _, typ := range pipes.Types() {
		if typ.Spec.Summary == "" {
			t.Errorf("%s: no Spec.Summary", typ.Name)
		}
		if typ.Spec.Example == "" {
			t.Errorf("%s: no Spec.Example", typ.Name)
		}
		checkDocs(t, typ.Name, typ.JSONSchema())
	}
}

func checkDocs(t *testing.T, path string, s map[string]any) {
	props, _ := s["properties"].(map[string]any)
	for key, p := range props {
		ps := p.(map[string]any)
		if ps["description"] == nil {
			t.Errorf("%s.%s: no doc tag", path, key)
		}
		checkDocs(t, path+"."+key, ps)
		if items, ok := ps["anyOf"].([]any); ok {
			for _, it := range items {
				if m, ok := it.(map[string]any); ok {
					if inner, ok := m["items"].(map[string]any); ok {
						checkDocs(t, path+"."+key+"[]", inner)
					}
				}
			}
		}
	}
}
