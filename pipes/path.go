package pipes

import "strings"

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

// usedFields merges what expressions read with the paths a pipe writes, for
// FieldUser implementations.
func usedFields(progs []*Program, paths ...string) ([]string, bool) {
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
