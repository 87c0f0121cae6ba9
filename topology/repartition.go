package topology

import (
	"fmt"
	"slices"
)

// SubTopology is a part of the plan that runs in one task per source
// partition: the pipes connected through in-memory datasets, from the
// source topics they read to the topics they write. Repartition topics cut
// a plan into several: a sub-topology ends by writing a repartition topic,
// and another starts by reading it.
type SubTopology struct {
	// ID numbers the sub-topologies from 1, in the order of their first pipe.
	ID int
	// Sources are the datasets read from Kafka, repartition topics included.
	Sources []*Dataset
	// Pipes in processing order.
	Pipes []*Pipe
	// Sinks are the datasets written to Kafka, repartition topics included.
	Sinks []*Dataset
}

// RepartitionTopic returns the internal topic that carries the re-keyed
// records of dataset name to the pipes that need them partitioned by key:
// <group>-<dataset>-repartition.
func (t *Topology) RepartitionTopic(name string) string {
	return t.Group + "-" + name + "-repartition"
}

// Repartitions returns the internal source datasets that read repartition
// topics, sorted by name. Each one's RepartitionOf is the dataset written
// into the topic.
func (t *Topology) Repartitions() []*Dataset {
	return t.filter(func(d *Dataset) bool { return d.RepartitionOf != nil })
}

// keyedByPartition reports whether p needs each record key's records in one
// partition: it keeps state per key, or looks keys up in a partitioned table.
func (t *Topology) keyedByPartition(p *Pipe) bool {
	if len(p.Stores) > 0 {
		return true
	}
	for _, name := range p.Tables {
		if d := t.Datasets[name]; d != nil && d.Table == TablePartitioned {
			return true
		}
	}
	return false
}

// repartition inserts the internal topics that bring each key's records to
// one task for the pipes that keep state per key or join a partitioned
// table (keyed pipes).
//
// A repartition topic serves a keyed pipe with one input whose keys a pipe
// upstream changed (pipes.KeyChanger). The re-keyed dataset D stops being
// read in memory: the pipe that writes it produces to
// <group>-D-repartition, partitioned by the new key, and a new source
// dataset D-repartition reads that topic for D's readers. A key change that
// feeds only stateless pipes and sinks is left alone: nothing downstream
// depends on where a key's records are.
//
// A merge topic serves a keyed pipe P whose records come from several
// tasks: inputs that come from different sources (two streams to join),
// or several inputs one of which was re-keyed. Without it, partition p of
// each source would run P in its own task, possibly on another replica,
// with its own view of the state. Every input of P is written, partitioned
// by key, to <group>-P-merge with a header giving its side (its position
// in P's inputs); one task per partition of that topic decodes each record
// as its side's dataset and hands P its inputs in the order they arrived.
func (c *compiler) repartition(t *Topology) {
	// rekeyed maps a dataset whose records may carry changed keys to the
	// pipe that changed them; from maps a dataset to the sources whose
	// tasks produce it.
	rekeyed := map[*Dataset]*Pipe{}
	from := map[*Dataset][]*Dataset{}
	for _, p := range t.Pipes {
		needs := t.keyedByPartition(p)
		var srcs []*Dataset
		rekeyedIn := false
		for _, in := range p.Inputs {
			for _, s := range sourcesOf(in, from) {
				if !slices.Contains(srcs, s) {
					srcs = append(srcs, s)
				}
			}
			rekeyedIn = rekeyedIn || rekeyed[in] != nil
		}
		var changer *Pipe
		if needs && (len(srcs) > 1 || rekeyedIn && len(p.Inputs) > 1) {
			srcs = []*Dataset{c.insertMerge(t, p)}
		} else {
			for _, in := range slices.Clone(p.Inputs) {
				k := rekeyed[in]
				switch {
				case k == nil:
				case !needs:
					changer = k
				case in.Topic != "":
					c.d.add(in.Pos, "pipe %q needs records partitioned by key, but dataset %q, which it reads in memory, carries keys changed by pipe %q, and a repartition topic can only replace an in-memory dataset: give the re-keyed records a dataset without a topic", p.Name, in.Name, k.Name)
				default:
					srcs = []*Dataset{c.insertRepartition(t, in)}
				}
			}
		}
		for _, o := range p.Outputs {
			from[o] = srcs
			switch {
			case p.ChangesKey:
				rekeyed[o] = p
			case changer != nil:
				rekeyed[o] = changer
			}
		}
	}
}

// graceAfterInternal warns about event-time pipes without a grace period
// that read an internal topic: the records of several partitions interleave
// there out of event-time order, so some would be counted late.
func (c *compiler) graceAfterInternal(t *Topology) {
	for _, p := range t.Pipes {
		if !p.noGrace {
			continue
		}
		for _, in := range p.Inputs {
			src := in.MergeOf
			if in.RepartitionOf != nil {
				src = in
			}
			if src != nil {
				c.d.warn(p.Pos, "pipe %q reads internal topic %s, where the records of several partitions interleave out of event-time order, and has no grace: records a little behind the others will be late; set grace: to the skew expected between partitions", p.Name, src.Topic)
				break
			}
		}
	}
}

// sourcesOf returns the sources whose tasks produce d: d itself when it is
// read from Kafka.
func sourcesOf(d *Dataset, from map[*Dataset][]*Dataset) []*Dataset {
	if d.Producer == nil && d.Topic != "" {
		return []*Dataset{d}
	}
	return from[d]
}

// MergeTopic returns the internal topic that brings the inputs of keyed
// pipe p together: <group>-<pipe>-merge.
func (t *Topology) MergeTopic(pipe string) string {
	return t.Group + "-" + pipe + "-merge"
}

// Merges returns the internal source datasets that read merge topics,
// sorted by name.
func (t *Topology) Merges() []*Dataset {
	return t.filter(func(d *Dataset) bool { return d.Sides != nil })
}

// Internal returns the sources that read the topics the compiler inserted,
// repartition and merge topics, in DAG order: the topics a source's
// feeders read come before it.
func (t *Topology) Internal() []*Dataset {
	out := append(t.Repartitions(), t.Merges()...)
	first := func(d *Dataset) int {
		return slices.IndexFunc(t.Pipes, func(p *Pipe) bool { return slices.Contains(d.Readers, p) })
	}
	slices.SortStableFunc(out, func(a, b *Dataset) int { return first(a) - first(b) })
	return out
}

// Feeders returns the sources whose tasks write internal topic d (a
// repartition or merge source), sorted by name.
func (t *Topology) Feeders(d *Dataset) []*Dataset {
	found := map[*Dataset]bool{}
	add := func(w *Dataset) {
		if w.Producer == nil {
			found[w] = true
			return
		}
		for _, s := range t.UpstreamSources(w.Producer) {
			found[s] = true
		}
	}
	if d.RepartitionOf != nil {
		add(d.RepartitionOf)
	}
	for _, f := range t.Feeding(d) { // none unless d is a merge source
		add(f)
	}
	return t.filter(func(d *Dataset) bool { return found[d] })
}

// Feeding returns the datasets written to merge topic m, by side.
func (t *Topology) Feeding(m *Dataset) []*Dataset {
	out := make([]*Dataset, len(m.Sides))
	for i, s := range m.Sides {
		out[i] = t.mergedFrom(s)
	}
	return out
}

// mergedFrom returns the dataset whose records merge side s carries.
func (t *Topology) mergedFrom(s *Dataset) *Dataset {
	for _, d := range t.Datasets {
		for _, m := range d.Merges {
			if m.Source == s.MergeOf && m.Source.Sides[m.Side] == s {
				return d
			}
		}
	}
	return s // unreachable for a compiled side
}

// insertMerge makes keyed pipe p read its inputs from one merge topic, and
// returns the source that reads it.
func (c *compiler) insertMerge(t *Topology, p *Pipe) *Dataset {
	name := p.Name + "-merge"
	m := &Dataset{
		Name:        name,
		Description: fmt.Sprintf("the inputs of %s, brought together by key", p.Name),
		Topic:       t.MergeTopic(p.Name),
		KeyFormat:   p.Inputs[0].KeyFormat,
		Readers:     []*Pipe{p},
		Pos:         p.Pos,
	}
	names := []string{name}
	for i, in := range p.Inputs {
		s := &Dataset{
			Name:        fmt.Sprintf("%s-%d-%s", name, i, in.Name),
			Description: fmt.Sprintf("records of %s, read back from merge topic %s", in.Name, m.Topic),
			KeyFormat:   in.KeyFormat,
			ValueFormat: in.ValueFormat,
			SchemaFile:  in.SchemaFile,
			Subject:     in.Subject,
			Codec:       in.Codec,
			Schema:      in.Schema,
			Readers:     []*Pipe{p},
			MergeOf:     m,
			Pos:         in.Pos,
		}
		in.Readers = slices.DeleteFunc(slices.Clone(in.Readers), func(q *Pipe) bool { return q == p })
		in.Merges = append(in.Merges, MergeTarget{Source: m, Side: i})
		p.Inputs[i] = s
		m.Sides = append(m.Sides, s)
		names = append(names, s.Name)
	}
	for _, n := range names {
		if other, ok := t.Datasets[n]; ok {
			c.d.add(other.Pos, "dataset %q has the name of a dataset the compiler makes to merge the inputs of pipe %q: rename it", n, p.Name)
		}
	}
	t.Datasets[name] = m
	for _, s := range m.Sides {
		t.Datasets[s.Name] = s
	}
	// partitions: on an in-memory input sets the count, as on a re-keyed
	// dataset for its repartition topic; else a table joined in the task.
	for _, in := range t.Feeding(m) {
		if in.Producer != nil {
			m.Partitions = max(m.Partitions, in.Partitions)
		}
	}
	if m.Partitions == 0 {
		m.Partitions = tablePartitions(t, t.TaskPipes(m))
	}
	return m
}

// tablePartitions returns the partition count of the partitioned tables
// that pipes join, or 0: an internal topic whose task runs those pipes takes
// it as its default, so that the user need not repeat it (and a merge
// topic's count cannot be declared).
func tablePartitions(t *Topology, pipes []*Pipe) int {
	n := 0
	for _, p := range pipes {
		for _, name := range p.Tables {
			if tb := t.Datasets[name]; tb != nil && tb.Table == TablePartitioned && tb.DeclaredPartitions() > 0 {
				n = tb.DeclaredPartitions()
			}
		}
	}
	return n
}

// insertRepartition splits dataset d into the sink that writes its
// repartition topic (d itself) and a new source that reads it back, and
// returns that source.
func (c *compiler) insertRepartition(t *Topology, d *Dataset) *Dataset {
	name := d.Name + "-repartition"
	if other, ok := t.Datasets[name]; ok {
		c.d.add(other.Pos, "dataset %q has the name of the repartition dataset the compiler makes for dataset %q: rename it", name, d.Name)
		return d
	}
	r := &Dataset{
		Name:          name,
		Description:   fmt.Sprintf("records of %s, re-keyed by %s, read back from its repartition topic", d.Name, d.Producer.Name),
		Topic:         t.RepartitionTopic(d.Name),
		KeyFormat:     d.KeyFormat,
		ValueFormat:   d.ValueFormat,
		SchemaFile:    d.SchemaFile,
		Codec:         d.Codec,
		Schema:        d.Schema,
		Partitions:    d.Partitions,
		Readers:       d.Readers,
		RepartitionOf: d,
		Pos:           d.Pos,
	}
	for _, p := range r.Readers {
		for i, in := range p.Inputs {
			if in == d {
				p.Inputs[i] = r
			}
		}
	}
	d.Topic, d.Readers, d.Repartition = r.Topic, nil, r
	t.Datasets[name] = r
	if r.Partitions == 0 {
		r.Partitions = tablePartitions(t, t.TaskPipes(r))
	}
	return r
}

// subTopologies groups the pipes into the parts that run in one task: two
// pipes are in one part when one reads what the other writes in memory, or
// both read the same source (a merge topic's sides count as it). A source
// that no pipe reads, only forwarded to merge topics, is a part of its own.
func subTopologies(t *Topology) []*SubTopology {
	parent := map[*Pipe]*Pipe{}
	var find func(p *Pipe) *Pipe
	find = func(p *Pipe) *Pipe {
		if q, ok := parent[p]; ok && q != p {
			root := find(q)
			parent[p] = root
			return root
		}
		parent[p] = p
		return p
	}
	union := func(a, b *Pipe) { parent[find(a)] = find(b) }
	source := func(in *Dataset) *Dataset {
		if in.MergeOf != nil {
			return in.MergeOf
		}
		if in.IsSource() {
			return in
		}
		return nil
	}
	bySource := map[*Dataset]*Pipe{}
	for _, p := range t.Pipes {
		find(p)
		for _, in := range p.Inputs {
			src := source(in)
			switch {
			case in.Producer != nil:
				union(p, in.Producer)
			case src != nil && bySource[src] != nil:
				union(p, bySource[src])
			case src != nil:
				bySource[src] = p
			}
		}
	}
	var out []*SubTopology
	byRoot := map[*Pipe]*SubTopology{}
	sink := func(st *SubTopology, d *Dataset) {
		if d.IsSink() && !slices.Contains(st.Sinks, d) {
			st.Sinks = append(st.Sinks, d)
		}
		for _, m := range d.Merges {
			if !slices.Contains(st.Sinks, m.Source) {
				st.Sinks = append(st.Sinks, m.Source)
			}
		}
	}
	for _, p := range t.Pipes {
		root := find(p)
		st := byRoot[root]
		if st == nil {
			st = &SubTopology{ID: len(out) + 1}
			byRoot[root] = st
			out = append(out, st)
		}
		st.Pipes = append(st.Pipes, p)
		for _, in := range p.Inputs {
			if src := source(in); src != nil && !slices.Contains(st.Sources, src) {
				st.Sources = append(st.Sources, src)
				sink(st, src) // a source read by pipes may be forwarded too
			}
		}
		for _, o := range p.Outputs {
			sink(st, o)
		}
	}
	for _, d := range t.Sources() {
		if len(d.Readers) == 0 { // only forwarded
			st := &SubTopology{ID: len(out) + 1, Sources: []*Dataset{d}}
			sink(st, d)
			out = append(out, st)
		}
	}
	return out
}

// TaskPipes returns the pipes that a task of source src runs, in DAG order:
// those its records reach through in-memory datasets (from a merge source,
// through its sides).
func (t *Topology) TaskPipes(src *Dataset) []*Pipe {
	reach := map[*Dataset]bool{src: true}
	for _, s := range src.Sides {
		reach[s] = true
	}
	var out []*Pipe
	for _, p := range t.Pipes {
		if !slices.ContainsFunc(p.Inputs, func(d *Dataset) bool { return reach[d] }) {
			continue
		}
		for _, o := range p.Outputs {
			reach[o] = true
		}
		out = append(out, p)
	}
	return out
}

// SubTopologyOf returns the sub-topology that pipe p runs in, or nil.
func (t *Topology) SubTopologyOf(p *Pipe) *SubTopology {
	for _, st := range t.SubTopologies {
		if slices.Contains(st.Pipes, p) {
			return st
		}
	}
	return nil
}
