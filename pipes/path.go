package pipes

import (
	"sort"
	"strings"
)

// GetPath returns the value at a dotted path ("a.b.c") in a decoded value.
func GetPath(v any, path string) (any, bool) {
	for {
		m, ok := v.(map[string]any)
		if !ok {
			return nil, false
		}
		head, rest, nested := strings.Cut(path, ".")
		v, ok = m[head]
		if !ok || !nested {
			return v, ok
		}
		path = rest
	}
}

// SetPath sets the value at a dotted path, making intermediate maps as
// needed. It reports false if v is not a map or a non-map value is in the
// way.
func SetPath(v any, path string, x any) bool {
	m, ok := v.(map[string]any)
	if !ok {
		return false
	}
	for {
		head, rest, nested := strings.Cut(path, ".")
		if !nested {
			m[head] = x
			return true
		}
		next, ok := m[head]
		if !ok || next == nil {
			next = map[string]any{}
			m[head] = next
		}
		if m, ok = next.(map[string]any); !ok {
			return false
		}
		path = rest
	}
}

// DeletePath removes the value at a dotted path and returns it.
func DeletePath(v any, path string) (any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, false
	}
	for {
		head, rest, nested := strings.Cut(path, ".")
		if !nested {
			x, ok := m[head]
			delete(m, head)
			return x, ok
		}
		if m, ok = m[head].(map[string]any); !ok {
			return nil, false
		}
		path = rest
	}
}

// topField returns the top-level field of a dotted path.
func topField(path string) string {
	head, _, _ := strings.Cut(path, ".")
	return head
}

// UsedFields merges what expressions read with the (dotted) paths a pipe
// writes or deletes, for FieldUser implementations: a pipe's UsedFields
// method can return UsedFields(its programs, its written paths...). It
// returns false if any program may read any field.
func UsedFields(progs []*Program, paths ...string) ([]string, bool) {
	var out []string
	for _, p := range progs {
		fs, ok := p.Fields()
		if !ok {
			return nil, false
		}
		out = append(out, fs...)
	}
	for _, p := range paths {
		out = append(out, topField(p))
	}
	return out, true
}

// ShallowFields returns the fields a pipe only counts (in every expression
// that names them), or overwrites or deletes whole (top-level paths in
// replaced), for ShallowReader implementations. Fields it moves, and fields
// under a nested path it writes or deletes, are read whole.
func ShallowFields(progs []*Program, replaced []string, moved ...string) []string {
	shallow, deep := map[string]bool{}, map[string]bool{}
	for _, p := range progs {
		counted := map[string]bool{}
		for _, f := range p.counted {
			counted[f], shallow[f] = true, true
		}
		for _, f := range p.fields {
			if !counted[f] {
				deep[f] = true
			}
		}
	}
	for _, p := range replaced {
		if top := topField(p); top != p {
			deep[top] = true
		} else {
			shallow[p] = true
		}
	}
	for _, p := range moved {
		deep[topField(p)] = true
	}
	var out []string
	for f := range shallow {
		if !deep[f] {
			out = append(out, f)
		}
	}
	sort.Strings(out)
	return out
}

// Float returns a decoded numeric value as a float64, and false for
// anything that is not a number.
func Float(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case float32:
		return float64(x), true
	case int:
		return float64(x), true
	case int32:
		return float64(x), true
	case int64:
		return float64(x), true
	}
	return 0, false
}
