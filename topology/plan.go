package topology

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
)

// Formats accepted by WritePlan.
var PlanFormats = []string{"text", "dot", "mermaid"}

// WritePlan writes the compiled DAG in a format: text (for people), dot
// (Graphviz) or mermaid. replica is used to show the transactional id.
func (t *Topology) WritePlan(w io.Writer, format, replica string) error {
	switch format {
	case "text", "":
		return t.planText(w, replica)
	case "dot":
		return t.planDot(w)
	case "mermaid":
		return t.planMermaid(w)
	}
	return fmt.Errorf("unknown plan format %q (want one of %s)", format, strings.Join(PlanFormats, ", "))
}

func (t *Topology) planText(w io.Writer, replica string) error {
	p := &printer{w: w}
	p.f("topology        %s\n", t.Name)
	if t.Description != "" {
		p.f("description     %s\n", t.Description)
	}
	p.f("consumer group  %s\n", t.Group)
	p.f("transactional id %s (one per replica: <group>-<replica id>)\n", t.TransactionalID(replica))
	p.f("commit interval %s (%s once caught up), start offset %s, read_committed, %s compression\n", t.CommitInterval, min(t.MinCommitInterval, t.CommitInterval), t.StartOffset, t.Compression)
	p.f("\ntopics read     %s\n", list(t.TopicsRead()))
	p.f("topics written  %s\n", list(t.TopicsWritten()))
	var created []string
	for _, d := range t.Owned() {
		repl := fmt.Sprintf("replication %d", d.Create.Replication)
		if d.Create.Replication < 0 {
			repl = "the broker's default replication"
		}
		created = append(created, fmt.Sprintf("%s (%d partitions, %s)", d.Topic, d.Create.Partitions, repl))
	}
	p.f("topics created  %s (if missing)\n", list(created))
	if t.DeadLetter != nil {
		p.f("dead letters    %s → %s\n", t.DeadLetter.Name, t.DeadLetter.Topic)
	}
	for _, s := range t.Stores() {
		p.f("state store     %s → changelog %s (compacted, one partition per source partition)\n", s, t.ChangelogTopic(s))
	}
	for _, d := range t.Tables() {
		how := "global: every replica reads all of it"
		if d.Table == TablePartitioned {
			var srcs []string
			for _, j := range t.Joiners(d) {
				for _, s := range t.UpstreamSources(j) {
					if !slices.Contains(srcs, s.Name) {
						srcs = append(srcs, s.Name)
					}
				}
			}
			how = "partitioned: co-partitioned with " + list(srcs)
		}
		p.f("table           %s ← topic %s (%s), looked up by %s\n", d.Name, d.Topic, how, pipeNames(t.Joiners(d)))
	}
	for _, r := range t.Repartitions() {
		parts := "partitions of its sources"
		if r.Partitions > 0 {
			parts = fmt.Sprintf("%d partitions", r.Partitions)
		}
		p.f("repartition     %s (written by %s) → topic %s (%s, partitioned by the new key) → %s, read by %s\n",
			r.RepartitionOf.Name, r.RepartitionOf.Producer.Name, r.Topic, parts, r.Name, pipeNames(r.Readers))
	}
	for _, m := range t.Merges() {
		parts := "partitions of its sources"
		if m.Partitions > 0 {
			parts = fmt.Sprintf("%d partitions", m.Partitions)
		}
		var ins []string
		for _, s := range m.Sides {
			ins = append(ins, s.Name+" ← "+t.mergedFrom(s).Name)
		}
		p.f("merge           %s → topic %s (%s, partitioned by key) → %s, read by %s\n",
			datasets(t.Feeding(m)), m.Topic, parts, strings.Join(ins, ", "), pipeNames(m.Readers))
	}
	p.f("\nDAG, in processing order:\n")
	for _, pp := range t.Pipes {
		in := datasets(pp.Inputs)
		for _, tb := range pp.Tables {
			in += " ⋈ table " + tb
		}
		p.f("  %-16s %-8s %s → %s  (on_error: %s)\n", pp.Name, pp.Type, in, datasets(pp.Outputs), pp.OnError)
	}
	if len(t.Internal()) > 0 {
		p.f("\nsub-topologies (a repartition or merge topic ends one and starts another):\n")
		for _, st := range t.SubTopologies {
			ps := pipeNames(st.Pipes)
			if ps == "" {
				ps = "(forwarded as consumed)"
			}
			p.f("  %d  %s → %s → %s\n", st.ID, datasets(st.Sources), ps, datasets(st.Sinks))
		}
	}
	p.f("\ndatasets:\n")
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		where := "in memory"
		switch {
		case d.Table != "":
			where = d.Table + " table, topic " + d.Topic
		case d.RepartitionOf != nil:
			where = "repartition source " + d.Topic
		case d.Repartition != nil:
			where = "repartition sink " + d.Topic
		case d.Sides != nil:
			where = "merge source " + d.Topic
		case d.MergeOf != nil:
			where = "merge side of " + d.MergeOf.Topic
		case d.IsSource():
			where = "source topic " + d.Topic
		case d.Topic != "":
			where = "topic " + d.Topic
		case len(d.Merges) > 0:
			where = "in memory, merged"
		}
		value := d.ValueFormat
		if d.Sides != nil {
			value = "per side"
		}
		schema := "no schema"
		if d.SchemaFile != "" {
			schema = "schema " + d.SchemaFile
		} else if d.Schema != nil {
			schema = "schema derived"
		}
		p.f("  %-16s %-28s key %s, value %s, %s\n", d.Name, where, d.KeyFormat, value, schema)
	}
	for _, wd := range t.Warnings {
		p.f("\n%s", wd)
	}
	return p.err
}

func (t *Topology) planDot(w io.Writer) error {
	p := &printer{w: w}
	p.f("digraph %q {\n  rankdir=LR;\n  node [fontname=\"Helvetica\"];\n", t.Name)
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		label := d.Name
		shape := "note"
		if d.Table != "" {
			label += "\\n(" + d.Topic + ", " + d.Table + " table)"
			shape = "box3d"
		} else if d.Topic != "" {
			label += "\\n(" + d.Topic + ")"
			shape = "cylinder"
		}
		if d.Repartition != nil || d.RepartitionOf != nil {
			label += "\\nrepartition"
		}
		if d.Sides != nil {
			label += "\\nmerge"
		}
		p.f("  %q [shape=%s, label=%q];\n", "ds:"+d.Name, shape, label)
		for _, m := range d.Merges {
			p.f("  %q -> %q [label=%q];\n", "ds:"+d.Name, "ds:"+m.Source.Name, fmt.Sprintf("side %d", m.Side))
		}
		if d.MergeOf != nil {
			p.f("  %q -> %q;\n", "ds:"+d.MergeOf.Name, "ds:"+d.Name)
		}
	}
	for _, pp := range t.Pipes {
		p.f("  %q [shape=box, style=rounded, label=%q];\n", "pipe:"+pp.Name, pp.Name+"\\n"+pp.Type)
		for _, in := range pp.Inputs {
			p.f("  %q -> %q;\n", "ds:"+in.Name, "pipe:"+pp.Name)
		}
		for _, tb := range pp.Tables {
			p.f("  %q -> %q [style=dotted, arrowhead=diamond, label=\"table\"];\n", "ds:"+tb, "pipe:"+pp.Name)
		}
		for _, o := range pp.Outputs {
			p.f("  %q -> %q;\n", "pipe:"+pp.Name, "ds:"+o.Name)
		}
		if pp.OnError == DeadLetter && t.DeadLetter != nil {
			p.f("  %q -> %q [style=dashed, label=\"errors\"];\n", "pipe:"+pp.Name, "ds:"+t.DeadLetter.Name)
		}
	}
	if len(t.Internal()) > 0 {
		for _, st := range t.SubTopologies {
			if len(st.Pipes) == 0 {
				continue // a source only forwarded: no pipe to group
			}
			p.f("  subgraph cluster_%d {\n    label=\"sub-topology %d\";\n    style=dashed;\n", st.ID, st.ID)
			for _, pp := range st.Pipes {
				p.f("    %q;\n", "pipe:"+pp.Name)
			}
			p.f("  }\n")
		}
	}
	p.f("}\n")
	return p.err
}

func (t *Topology) planMermaid(w io.Writer) error {
	p := &printer{w: w}
	id := map[string]string{}
	n := 0
	node := func(key string) string {
		if v, ok := id[key]; ok {
			return v
		}
		n++
		id[key] = fmt.Sprintf("n%d", n)
		return id[key]
	}
	p.f("flowchart LR\n")
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		if d.Repartition != nil || d.RepartitionOf != nil {
			p.f("  %s[(\"%s<br/>%s<br/>repartition\")]\n", node("ds:"+d.Name), d.Name, d.Topic)
		} else if d.Sides != nil {
			p.f("  %s[(\"%s<br/>%s<br/>merge\")]\n", node("ds:"+d.Name), d.Name, d.Topic)
		} else if d.Table != "" {
			p.f("  %s[[\"%s<br/>%s<br/>%s table\"]]\n", node("ds:"+d.Name), d.Name, d.Topic, d.Table)
		} else if d.Topic != "" {
			p.f("  %s[(\"%s<br/>%s\")]\n", node("ds:"+d.Name), d.Name, d.Topic)
		} else {
			p.f("  %s[\"%s\"]\n", node("ds:"+d.Name), d.Name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		for _, m := range d.Merges {
			p.f("  %s -- side %d --> %s\n", node("ds:"+d.Name), m.Side, node("ds:"+m.Source.Name))
		}
		if d.MergeOf != nil {
			p.f("  %s --> %s\n", node("ds:"+d.MergeOf.Name), node("ds:"+d.Name))
		}
	}
	for _, pp := range t.Pipes {
		p.f("  %s([\"%s<br/>%s\"])\n", node("pipe:"+pp.Name), pp.Name, pp.Type)
		for _, in := range pp.Inputs {
			p.f("  %s --> %s\n", node("ds:"+in.Name), node("pipe:"+pp.Name))
		}
		for _, tb := range pp.Tables {
			p.f("  %s -. table .-> %s\n", node("ds:"+tb), node("pipe:"+pp.Name))
		}
		for _, o := range pp.Outputs {
			p.f("  %s --> %s\n", node("pipe:"+pp.Name), node("ds:"+o.Name))
		}
		if pp.OnError == DeadLetter && t.DeadLetter != nil {
			p.f("  %s -. errors .-> %s\n", node("pipe:"+pp.Name), node("ds:"+t.DeadLetter.Name))
		}
	}
	if len(t.Internal()) > 0 {
		for _, st := range t.SubTopologies {
			if len(st.Pipes) == 0 {
				continue
			}
			p.f("  subgraph st%d[\"sub-topology %d\"]\n", st.ID, st.ID)
			for _, pp := range st.Pipes {
				p.f("    %s\n", node("pipe:"+pp.Name))
			}
			p.f("  end\n")
		}
	}
	return p.err
}

type printer struct {
	w   io.Writer
	err error
}

func (p *printer) f(format string, args ...any) {
	if p.err == nil {
		_, p.err = fmt.Fprintf(p.w, format, args...)
	}
}

func list(ss []string) string {
	if len(ss) == 0 {
		return "-"
	}
	return strings.Join(ss, ", ")
}

func datasets(ds []*Dataset) string {
	names := make([]string, len(ds))
	for i, d := range ds {
		names[i] = d.Name
	}
	return strings.Join(names, ", ")
}

func pipeNames(ps []*Pipe) string {
	names := make([]string, len(ps))
	for i, p := range ps {
		names[i] = p.Name
	}
	return strings.Join(names, ", ")
}
