package topology

import (
	"fmt"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/internal/spec"
)

// MaxTopicLen is the longest topic name Kafka accepts.
const MaxTopicLen = 249

// CheckName reports what is wrong with name as a Kafka topic name, or as a
// part of one: Kafka's rule allows only ASCII letters, digits, '.', '_' and
// '-', at most MaxTopicLen characters, and neither "." nor "..". Topology,
// group, dataset, pipe and store names follow it, because they name the
// job's topics and its directories under the state directory.
func CheckName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("is empty")
	case name == "." || name == "..":
		return fmt.Errorf("cannot be %q", name)
	case len(name) > MaxTopicLen:
		return fmt.Errorf("is %d characters long; Kafka allows %d", len(name), MaxTopicLen)
	}
	for _, r := range name {
		if !legal(r) {
			return fmt.Errorf("holds %q: use only letters, digits, '.', '_' and '-' (Kafka's rule for topic names)", r)
		}
	}
	return nil
}

func legal(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-'
}

// names checks every name the job derives topics and paths from, and the
// topics it derives, reporting each bad one where it was written.
func (c *compiler) names(t *Topology, root *yaml.Node, f *fileSpec) {
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	top := mappingValue(root, "name")
	if f.Name != "" {
		c.checkName(posOr(top, spec.Pos{}), "topology name", f.Name)
	}
	switch {
	case c.group != "":
		if err := CheckName(c.group); err != nil {
			c.d.add(spec.Pos{}, "group %q (--group) %v", c.group, err)
		}
	case f.Group != "":
		c.checkName(posOr(mappingValue(root, "group"), spec.Pos{}), "group", f.Group)
	case f.Name != "" && CheckName(f.Name) == nil && len(t.Group) > MaxTopicLen:
		c.d.add(posOr(top, spec.Pos{}), "the group, %s, is %d characters long; Kafka allows %d: shorten the name or set group:", t.Group, len(t.Group), MaxTopicLen)
	}
	groupOK := CheckName(t.Group) == nil

	for _, name := range sortedKeys(t.Datasets) {
		d := t.Datasets[name]
		if d.IsInternal() {
			continue // made by the compiler: checked below as topics
		}
		c.checkName(d.Pos, "dataset name", name)
		if d.Topic != "" {
			c.checkName(d.Pos, fmt.Sprintf("dataset %q: topic", name), d.Topic)
		}
	}
	var stores []string
	for _, p := range t.Pipes {
		c.checkName(p.Pos, "pipe name", p.Name)
		for _, s := range p.Stores {
			if slices.Contains(stores, s) {
				continue
			}
			stores = append(stores, s)
			pos := p.Pos
			if n := storeNode(root, p.Name, s); n != nil {
				pos = spec.PosOf(n)
			}
			if c.checkName(pos, fmt.Sprintf("pipe %q: store name", p.Name), s) && groupOK {
				c.checkTopic(pos, t.Group, fmt.Sprintf("store %q", s), t.ChangelogTopic(s))
			}
		}
	}
	if !groupOK {
		return // the derived topics are wrong already; said once
	}
	for _, d := range t.Internal() {
		if CheckName(d.Topic) == nil || !derivedFromGood(d) {
			continue
		}
		pos := d.Pos
		what := fmt.Sprintf("dataset %q", d.Name)
		switch {
		case d.RepartitionOf != nil:
			pos, what = d.RepartitionOf.Pos, fmt.Sprintf("dataset %q", d.RepartitionOf.Name)
		case len(d.Readers) > 0:
			pos, what = d.Readers[0].Pos, fmt.Sprintf("pipe %q", d.Readers[0].Name)
		}
		c.checkTopic(pos, t.Group, what, d.Topic)
	}
}

// derivedFromGood reports whether the names an internal topic is made of
// are themselves good, so that only its length can be wrong.
func derivedFromGood(d *Dataset) bool {
	if d.RepartitionOf != nil {
		return CheckName(d.RepartitionOf.Name) == nil
	}
	for _, p := range d.Readers {
		if CheckName(p.Name) != nil {
			return false
		}
	}
	return true
}

// checkName reports a bad name; it returns whether the name is good.
func (c *compiler) checkName(pos spec.Pos, what, name string) bool {
	if err := CheckName(name); err != nil {
		c.d.add(pos, "%s %q %v", what, name, err)
		return false
	}
	return true
}

// checkTopic reports a derived topic name that is too long.
func (c *compiler) checkTopic(pos spec.Pos, group, what, topic string) {
	if len(topic) > MaxTopicLen {
		shown := "<group>" + strings.TrimPrefix(topic, group)
		c.d.add(pos, "%s needs topic %s, which is %d characters long with the group's %d; Kafka allows %d: shorten the group or the name", what, shown, len(topic), len(group), MaxTopicLen)
	}
}

// mappingValue returns the value node of key in mapping n, or nil.
func mappingValue(n *yaml.Node, key string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i+1]
		}
	}
	return nil
}

// storeNode finds where pipe's block names store with a store: key.
func storeNode(root *yaml.Node, pipe, store string) *yaml.Node {
	var find func(n *yaml.Node) *yaml.Node
	find = func(n *yaml.Node) *yaml.Node {
		if n == nil || n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "store" && v.Kind == yaml.ScalarNode && v.Value == store {
				return v
			}
			if found := find(v); found != nil {
				return found
			}
		}
		return nil
	}
	return find(mappingValue(mappingValue(root, "pipes"), pipe))
}

func posOr(n *yaml.Node, def spec.Pos) spec.Pos {
	if n == nil {
		return def
	}
	return spec.PosOf(n)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
