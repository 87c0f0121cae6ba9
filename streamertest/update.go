package streamertest

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// update rewrites the expectations of the cases that ran and did not meet
// them, in place in the file's text: an expected dataset whose records
// differ, and dead_letters. Everything else, comments and layout included,
// stays as written; a rewritten dataset keeps its line comment. A case with
// match: partial keeps only the fields each expected record gave (a record
// with no counterpart takes the fields of the dataset's first one); a
// dead letter keeps its error: substring while the error still contains it.
// A case without expect: gets one listing every sink. It returns what it
// rewrote, one line each.
func update(file string, src []byte, doc *yaml.Node, f *fileSpec, run *regexp.Regexp, actual []outcome) ([]string, error) {
	e := newEditor(src, doc)
	cases := findKey(doc.Content[0], "cases")
	if cases == nil {
		return nil, fmt.Errorf("update: no cases")
	}
	var done []string
	i := 0
	for ci, cn := range cases.Content {
		c := &f.Cases[ci]
		if run != nil && !run.MatchString(c.Name) {
			continue
		}
		got := actual[i]
		i++
		say := func(format string, args ...any) {
			done = append(done, fmt.Sprintf("case %q (line %d): ", c.Name, c.Pos.Line)+fmt.Sprintf(format, args...))
		}
		partial := c.Match == "partial"
		if ek, ev := pairOf(cn, "expect"); ev == nil {
			names := slices.Sorted(func(yield func(string) bool) {
				for n := range got.outputs {
					if !yield(n) {
						return
					}
				}
			})
			expect := &yaml.Node{Kind: yaml.MappingNode}
			for _, n := range names {
				expect.Content = append(expect.Content, scalar(n), recordList(got.outputs[n], nil, nil, false))
			}
			e.insertAfter(cn, "expect", expect)
			say("added expect: with %d sinks", len(names))
		} else {
			// A one-line expect: is rewritten whole, once.
			flow := ev.Style&yaml.FlowStyle != 0
			whole := &yaml.Node{Kind: yaml.MappingNode, Style: yaml.FlowStyle, Content: slices.Clone(ev.Content)}
			changed := false
			for _, ex := range c.Expect {
				g := got.outputs[ex.Key]
				if len(compareRecords(ex.Key, ex.Value, g, partial, c.Order)) == 0 {
					continue
				}
				dk, dv := pairOf(ev, ex.Key)
				list := recordList(g, ex.Value, valueNodes(dv), partial)
				if flow {
					whole.Content[slices.Index(whole.Content, dv)] = list
				} else {
					e.replacePair(dk, list)
				}
				changed = true
				how := ""
				if partial {
					how = ", partial"
				}
				say("rewrote expect.%s (%d records%s)", ex.Key, len(g), how)
			}
			if flow && changed {
				whole.Style = 0
				e.replacePair(ek, whole)
			}
		}
		if len(compareDeadLetters(c.DeadLetters, got.dead)) == 0 {
			continue
		}
		dk, _ := pairOf(cn, "dead_letters")
		if len(got.dead) == 0 {
			e.deletePair(dk)
			say("removed dead_letters")
			continue
		}
		var old []deadLetterSpec
		if c.DeadLetters != nil {
			old = *c.DeadLetters
		}
		list := deadLetterList(got.dead, old)
		if dk == nil {
			e.insertAfter(cn, "dead_letters", list)
		} else {
			e.replacePair(dk, list)
		}
		say("rewrote dead_letters (%d)", len(got.dead))
	}
	if len(done) == 0 {
		return nil, nil
	}
	return done, os.WriteFile(file, e.result(), 0o644)
}

func scalar(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Value: s} }

// pairOf returns the key and value nodes of key in mapping m, or nils.
func pairOf(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func findKey(m *yaml.Node, key string) *yaml.Node {
	_, v := pairOf(m, key)
	return v
}

// recordList renders records as expectations, one line each. Each takes
// the key order of its old expectation: the expected record of the same key
// and rank, or else the dataset's first (old holds their value nodes, in
// the order of want). With partial, it also keeps only the fields that one
// gives (match: partial stays partial).
func recordList(recs []Record, want []recordSpec, old []*yaml.Node, partial bool) *yaml.Node {
	list := &yaml.Node{Kind: yaml.SequenceNode}
	used := map[string]int{}
	for _, r := range recs {
		var tmpl *yaml.Node
		if len(want) > 0 && len(old) == len(want) {
			j, k, n := 0, keyString(r.Key), 0
			for i, c := range want {
				if keyString(c.Key) == k {
					if n == used[k] {
						j = i
						break
					}
					n++
				}
			}
			used[k]++
			tmpl = old[j]
		}
		item := &yaml.Node{Kind: yaml.MappingNode}
		if r.Key != nil {
			item.Content = append(item.Content, scalar("key"), scalar(*r.Key))
		}
		vn := valueNode(r.Value, tmpl, partial)
		if vn.Kind != yaml.ScalarNode {
			vn.Style = yaml.FlowStyle // one line per record reviews well
		}
		item.Content = append(item.Content, scalar("value"), vn)
		list.Content = append(list.Content, item)
	}
	if len(list.Content) == 0 {
		list.Style = yaml.FlowStyle
	}
	return list
}

// valueNode renders v with the field order of tmpl, the old expectation,
// and then the other fields sorted; with partial, only tmpl's fields.
func valueNode(v any, tmpl *yaml.Node, partial bool) *yaml.Node {
	m, ok := v.(map[string]any)
	if !ok || tmpl == nil || tmpl.Kind != yaml.MappingNode {
		var n yaml.Node
		if err := n.Encode(v); err != nil {
			return scalar(fmt.Sprint(v))
		}
		return &n
	}
	out := &yaml.Node{Kind: yaml.MappingNode}
	seen := map[string]bool{}
	for i := 0; i+1 < len(tmpl.Content); i += 2 {
		k := tmpl.Content[i].Value
		if fv, ok := m[k]; ok && !seen[k] {
			seen[k] = true
			out.Content = append(out.Content, scalar(k), valueNode(fv, tmpl.Content[i+1], partial))
		}
	}
	if !partial {
		for _, k := range slices.Sorted(maps.Keys(m)) {
			if !seen[k] {
				out.Content = append(out.Content, scalar(k), valueNode(m[k], nil, false))
			}
		}
	}
	return out
}

// valueNodes returns the value nodes of the records of an expected list.
func valueNodes(list *yaml.Node) []*yaml.Node {
	if list == nil {
		return nil
	}
	out := make([]*yaml.Node, 0, len(list.Content))
	for _, item := range list.Content {
		out = append(out, findKey(item, "value"))
	}
	return out
}

func deadLetterList(got []DeadLetter, old []deadLetterSpec) *yaml.Node {
	list := &yaml.Node{Kind: yaml.SequenceNode}
	for i, d := range got {
		errText := d.Error
		if i < len(old) && old[i].Error != "" && strings.Contains(d.Error, old[i].Error) {
			errText = old[i].Error
		}
		item := &yaml.Node{Kind: yaml.MappingNode}
		item.Content = append(item.Content, scalar("pipe"), scalar(d.Pipe), scalar("stage"), scalar(d.Stage), scalar("error"), scalar(errText))
		// A dead letter with an old counterpart keeps its shape: key and
		// raw only if that gave them.
		withKey, withRaw := true, true
		if i < len(old) {
			withKey, withRaw = old[i].Key != nil, old[i].Raw != nil
		}
		if d.Key != nil && withKey {
			item.Content = append(item.Content, scalar("key"), scalar(*d.Key))
		}
		if withRaw {
			item.Content = append(item.Content, scalar("raw"), scalar(string(d.Raw)))
		}
		list.Content = append(list.Content, item)
	}
	return list
}

// editor replaces whole lines of a YAML text, the regions of key-value
// pairs that yaml.v3 nodes locate, so that what it does not touch stays
// byte for byte.
type editor struct {
	lines  []string
	parent map[*yaml.Node]*yaml.Node
	edits  []edit
}

// edit replaces lines [from, to) with text.
type edit struct {
	from, to int
	text     []string
}

func newEditor(src []byte, doc *yaml.Node) *editor {
	e := &editor{lines: strings.SplitAfter(string(src), "\n"), parent: map[*yaml.Node]*yaml.Node{}}
	if n := len(e.lines); n > 0 && e.lines[n-1] == "" {
		e.lines = e.lines[:n-1]
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		for _, c := range n.Content {
			e.parent[c] = n
			walk(c)
		}
	}
	walk(doc)
	return e
}

// end returns the line index (0-based, exclusive) where the region of n,
// a mapping key or a sequence item, ends: where what follows it starts,
// less the blank and comment lines before that, which belong to it.
func (e *editor) end(n *yaml.Node) int {
	to := e.next(n)
	for to > n.Line && isBlankOrComment(e.lines[to-1]) {
		to--
	}
	return to
}

func (e *editor) next(n *yaml.Node) int {
	p := e.parent[n]
	if p == nil || p.Kind == yaml.DocumentNode {
		return len(e.lines)
	}
	i := slices.Index(p.Content, n)
	step := 1
	if p.Kind == yaml.MappingNode {
		i -= i % 2
		step = 2
	}
	if i+step < len(p.Content) {
		return p.Content[i+step].Line - 1
	}
	return e.next(p)
}

func isBlankOrComment(l string) bool {
	t := strings.TrimSpace(l)
	return t == "" || strings.HasPrefix(t, "#")
}

// render is key: v, as lines at key's column, the first line keeping what
// precedes the key on its line (such as "- ").
func (e *editor) render(key *yaml.Node, v *yaml.Node, prefix string) []string {
	k := scalar(key.Value)
	k.LineComment = key.LineComment
	var b strings.Builder
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	_ = enc.Encode(&yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{k, v}})
	_ = enc.Close()
	pad := strings.Repeat(" ", len(prefix))
	var out []string
	for i, l := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if i == 0 {
			out = append(out, prefix+l+"\n")
		} else {
			out = append(out, pad+l+"\n")
		}
	}
	return out
}

func (e *editor) prefix(key *yaml.Node) string {
	l := strings.TrimSuffix(e.lines[key.Line-1], "\n")
	if key.Column-1 <= len(l) {
		return l[:key.Column-1]
	}
	return strings.Repeat(" ", key.Column-1)
}

// replacePair replaces the pair whose key node is key with key: v.
func (e *editor) replacePair(key, v *yaml.Node) {
	e.edits = append(e.edits, edit{key.Line - 1, e.end(key), e.render(key, v, e.prefix(key))})
}

// deletePair removes the pair whose key node is key, a list. The first
// pair of a sequence item, which shares the "- " line, becomes key: []
// instead.
func (e *editor) deletePair(key *yaml.Node) {
	if m := e.parent[key]; m != nil && m.Content[0] == key {
		e.replacePair(key, &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle})
		return
	}
	e.edits = append(e.edits, edit{key.Line - 1, e.end(key), nil})
}

// insertAfter adds name: v as the last pair of mapping m, a case.
func (e *editor) insertAfter(m *yaml.Node, name string, v *yaml.Node) {
	first := m.Content[0]
	at := e.end(m.Content[len(m.Content)-2])
	e.edits = append(e.edits, edit{at, at, e.render(scalar(name), v, strings.Repeat(" ", first.Column-1))})
}

// result applies the edits, last first so that line numbers hold.
func (e *editor) result() []byte {
	slices.SortFunc(e.edits, func(a, b edit) int { return b.from - a.from })
	lines := e.lines
	for _, ed := range e.edits {
		lines = slices.Concat(lines[:ed.from], ed.text, lines[ed.to:])
	}
	return []byte(strings.Join(lines, ""))
}
