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

// repartition inserts a repartition topic wherever records whose key a pipe
// changed reach, through in-memory datasets, a pipe that needs them
// partitioned by key. The re-keyed dataset D stops being read in memory: the
// pipe that writes it produces to <group>-D-repartition, partitioned by the
// new key, and a new source dataset D-repartition reads that topic for D's
// readers. A key change that feeds only stateless pipes and sinks is left
// alone: nothing downstream depends on where a key's records are.
func (c *compiler) repartition(t *Topology) {
	// rekeyed maps a dataset whose records may carry changed keys to the
	// pipe that changed them.
	rekeyed := map[*Dataset]*Pipe{}
	for _, p := range t.Pipes {
		needs := t.keyedByPartition(p)
		var changer *Pipe
		for _, in := range slices.Clone(p.Inputs) {
			k := rekeyed[in]
			switch {
			case k == nil:
			case !needs:
				changer = k
			case in.Topic != "":
				c.d.add(in.Pos, "pipe %q needs records partitioned by key, but dataset %q, which it reads in memory, carries keys changed by pipe %q, and a repartition topic can only replace an in-memory dataset: give the re-keyed records a dataset without a topic", p.Name, in.Name, k.Name)
			default:
				c.insertRepartition(t, in)
			}
		}
		for _, o := range p.Outputs {
			switch {
			case p.ChangesKey:
				rekeyed[o] = p
			case changer != nil:
				rekeyed[o] = changer
			}
		}
	}
}

// insertRepartition splits dataset d into the sink that writes its
// repartition topic (d itself) and a new source that reads it back.
func (c *compiler) insertRepartition(t *Topology, d *Dataset) {
	name := d.Name + "-repartition"
	if other, ok := t.Datasets[name]; ok {
		c.d.add(other.Pos, "dataset %q has the name of the repartition dataset the compiler makes for dataset %q: rename it", name, d.Name)
		return
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
	if r.Partitions == 0 {
		// A join with a partitioned table needs the table's count: take
		// it as the default, so that the user need not repeat it.
		for _, p := range r.Readers {
			for _, name := range p.Tables {
				if tb := t.Datasets[name]; tb != nil && tb.Table == TablePartitioned && tb.DeclaredPartitions() > 0 {
					r.Partitions = tb.DeclaredPartitions()
				}
			}
		}
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
}

// subTopologies groups the pipes into the parts that run in one task: two
// pipes are in one part when one reads what the other writes in memory, or
// both read the same source.
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
	bySource := map[*Dataset]*Pipe{}
	for _, p := range t.Pipes {
		find(p)
		for _, in := range p.Inputs {
			switch {
			case in.Producer != nil:
				union(p, in.Producer)
			case bySource[in] != nil:
				union(p, bySource[in])
			default:
				bySource[in] = p
			}
		}
	}
	var out []*SubTopology
	byRoot := map[*Pipe]*SubTopology{}
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
			if in.IsSource() && !slices.Contains(st.Sources, in) {
				st.Sources = append(st.Sources, in)
			}
		}
		for _, o := range p.Outputs {
			if o.IsSink() {
				st.Sinks = append(st.Sinks, o)
			}
		}
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
