package topology

import (
	"cmp"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
)

// Option changes how a topology compiles.
type Option func(*compiler)

// WithRegistry gives the compiler a schema registry: datasets declaring
// registry: get wire-format codecs, their schemas can come from the
// registry, and sink schemas are checked for compatibility with the
// subject's latest version.
func WithRegistry(r *serde.Registry) Option { return func(c *compiler) { c.registry = r } }

// WithGroup sets the consumer group, in place of the file's group: (or
// streamer-<name>). The group names the transactional ids and every topic
// the job makes for itself (repartition, merge and changelog topics), so a
// run under another group (a benchmark round, a backfill) shares no state
// with the job.
func WithGroup(group string) Option { return func(c *compiler) { c.group = group } }

// WithPipes sets the pipe types a topology may use, in place of
// pipes.DefaultEnvironment(): a test can compile against an isolated set.
// A nil env means the default.
func WithPipes(env *pipes.Environment) Option { return func(c *compiler) { c.types = env } }

// Load reads and compiles a topology file. Schema files are resolved relative
// to the file's directory. A returned *Error lists every problem.
func Load(file string, opts ...Option) (*Topology, error) {
	src, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	return Compile(file, src, os.DirFS(filepath.Dir(file)), opts...)
}

// Compile compiles the topology in src. name is used in diagnostics; schema
// files are read from fsys.
func Compile(name string, src []byte, fsys fs.FS, opts ...Option) (*Topology, error) {
	c := &compiler{d: diags{file: name}, fsys: fsys}
	for _, o := range opts {
		o(c)
	}
	if c.types == nil {
		c.types = pipes.DefaultEnvironment()
	}
	t := c.compile(src)
	if c.d.failed() {
		return nil, &Error{Diagnostics: c.d.sorted()}
	}
	t.File = name
	t.Warnings = c.d.sorted()
	return t, nil
}

type compiler struct {
	d        diags
	fsys     fs.FS
	registry *serde.Registry
	group    string             // WithGroup
	types    *pipes.Environment // WithPipes, else pipes.DefaultEnvironment()
	cyclic   bool               // the pipes form a cycle: no plan to insert topics into
	// testKeys (WithTestKeys) and the keyset it uses
	testKeys   bool
	testKeyset []byte
	// registered are the datasets with registry:, for the compatibility
	// check once producers are known.
	registered []registered
	// misspelled maps a dataset to the first unknown reference that a
	// did-you-mean pointed at it from.
	misspelled map[string]unknownRef
	// unbuilt maps a dataset to how the pipes that could not be built
	// (no pipe type, or one not linked) would have used it.
	unbuilt map[string]unbuiltUse
}

type registered struct {
	d       *Dataset
	subject string
	schema  string
	pos     spec.Pos
}

func (c *compiler) compile(src []byte) *Topology {
	doc, errs := spec.Parse(src)
	if len(errs) > 0 {
		c.d.addAll(errs)
		return nil
	}
	root := doc
	var f fileSpec
	c.d.addAll(spec.Decode(root, &f))

	t := &Topology{
		Name:              f.Name,
		Description:       f.Description,
		Group:             f.Group,
		Datasets:          map[string]*Dataset{},
		CommitInterval:    f.Processing.CommitInterval,
		MinCommitInterval: f.Processing.MinCommitInterval,
		StartOffset:       f.Processing.StartOffset,
		MaxPollRecords:    f.Processing.MaxPollRecords,
		Compression:       f.Processing.Compression,
	}
	if c.group != "" {
		t.Group = c.group
	}
	if t.Group == "" && t.Name != "" {
		t.Group = "streamer-" + t.Name
	}
	c.processing(t, root)
	// The defaults of processing's fields, for a file without the block.
	t.StartOffset = cmp.Or(t.StartOffset, "earliest")
	t.Compression = cmp.Or(t.Compression, "snappy")
	c.datasets(t, &f.Datasets)
	c.encryptionCodecs(t)
	ps := c.pipes(t, &f.Pipes)
	c.deadLetter(t, f.DeadLetter)
	c.edges(t, ps)
	c.compatibility()
	order := c.order(ps)
	c.build(t, order, f.Defaults.OnError)
	t.Pipes = order
	c.checkEncryption(t)
	if !c.cyclic {
		// Even with errors elsewhere, so that one run reports them all.
		c.repartition(t)
		c.graceAfterInternal(t)
	}
	c.tables(t)
	c.names(t, root, &f)
	t.SubTopologies = subTopologies(t)
	return t
}

func (c *compiler) datasets(t *Topology, n *yaml.Node) {
	if n.Kind == 0 {
		return // missing: already reported
	}
	if n.Kind != yaml.MappingNode {
		c.d.add(spec.PosOf(n), "datasets: want a mapping of dataset names to declarations")
		return
	}
	byTopic := map[string]*Dataset{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		name := k.Value
		if _, dup := t.Datasets[name]; dup {
			c.d.add(spec.PosOf(k), "dataset %q is declared twice", name)
			continue
		}
		var ds datasetSpec
		c.d.addAll(spec.Decode(v, &ds))
		d := &Dataset{
			Name: name, Description: ds.Description, Topic: ds.Topic,
			KeyFormat: ds.Key, ValueFormat: ds.Value, Partitions: ds.Partitions, Table: ds.Table, Pos: spec.PosOf(k),
		}
		t.Datasets[name] = d
		c.declareEncryption(d, ds)
		if ds.Table != "" && ds.Topic == "" {
			c.d.add(spec.PosOf(k), "dataset %q is a table but has no topic: a table is read from a compacted topic", name)
		}
		if ds.Topic != "" {
			if other, ok := byTopic[ds.Topic]; ok {
				c.d.add(spec.PosOf(k), "dataset %q uses topic %q, already used by dataset %q", name, ds.Topic, other.Name)
			}
			byTopic[ds.Topic] = d
		}
		if ds.Create != nil {
			if ds.Topic == "" {
				c.d.add(spec.PosOf(k), "dataset %q has create: but no topic", name)
			}
			if ds.Create.Partitions <= 0 {
				c.d.add(spec.PosOf(v), "dataset %q: create.partitions must be at least 1", name)
			}
			if r := ds.Create.Replication; r == 0 || r < -1 {
				c.d.add(posOr(mappingValue(mappingValue(v, "create"), "replication"), spec.PosOf(v)), "dataset %q: create.replication must be at least 1, or -1 for the broker's default, not %d", name, r)
			}
			if ds.Partitions > 0 && ds.Partitions != ds.Create.Partitions {
				c.d.add(spec.PosOf(v), "dataset %q: partitions %d differs from create.partitions %d", name, ds.Partitions, ds.Create.Partitions)
			}
			d.Create = &Create{Partitions: ds.Create.Partitions, Replication: ds.Create.Replication, Config: ds.Create.Config}
		}
		var schema []byte
		if ds.Schema != nil {
			d.SchemaFile = ds.Schema.Name
			b, err := fs.ReadFile(c.fsys, path.Clean(filepath.ToSlash(ds.Schema.Name)))
			if err != nil {
				c.d.add(ds.Schema.Pos, "schema file: %v", err)
				continue
			}
			schema = b
		}
		if ds.Registry != nil {
			c.registryCodec(d, ds, schema, spec.PosOf(k))
			continue
		}
		codec, err := serde.NewFromSchema(d.ValueFormat, schema)
		if err != nil {
			pos := spec.PosOf(k)
			if ds.Schema != nil {
				pos = ds.Schema.Pos
			}
			c.d.add(pos, "dataset %q: %v", name, err)
			continue
		}
		d.Codec = codec
		d.Schema = codec.Schema()
	}
}

// checkDeclared compares what a pipe emits (its derived schema) with the
// schema its output dataset declares: a field the declaration needs but the
// pipe does not produce is an error, and so is a field of another kind; a
// field the pipe adds that the declaration lacks is a warning, because it
// will not be written.
func (c *compiler) checkDeclared(p *Pipe, o *Dataset, derived *pipes.Schema) {
	if derived == nil || o.Topic == "" {
		return
	}
	for _, f := range o.Schema.Fields {
		d, ok := derived.Field(f.Name)
		switch {
		case !ok && !f.Nullable:
			c.d.add(p.Pos, "pipe %q writes dataset %q without field %q, which its schema requires", p.Name, o.Name, f.Name)
		case ok && !kindsFit(d.Kind, f.Kind):
			c.d.add(p.Pos, "pipe %q writes field %q of dataset %q as %s, but its schema says %s", p.Name, f.Name, o.Name, d.Kind, f.Kind)
		}
	}
	for _, f := range derived.Fields {
		if _, ok := o.Schema.Field(f.Name); !ok {
			c.d.warn(p.Pos, "pipe %q emits field %q, which the schema of dataset %q lacks: it is not written", p.Name, f.Name, o.Name)
		}
	}
}

// kindsFit reports whether a value of kind from can be written where the
// schema says to: unknown kinds fit anything, and numbers fit numbers
// (the encoder converts them, and reports a value that does not fit).
func kindsFit(from, to pipes.Kind) bool {
	if from == pipes.Any || to == pipes.Any || from == to {
		return true
	}
	num := func(k pipes.Kind) bool {
		return k == pipes.Int32 || k == pipes.Int64 || k == pipes.Float32 || k == pipes.Float64
	}
	return num(from) && num(to)
}

// registryCodec sets up a dataset whose values are in the schema-registry
// wire format.
func (c *compiler) registryCodec(d *Dataset, ds datasetSpec, schema []byte, pos spec.Pos) {
	r := ds.Registry
	if ds.Schema != nil {
		pos = ds.Schema.Pos
	}
	if d.ValueFormat != "avro" {
		c.d.add(pos, "dataset %q: registry: needs value: avro", d.Name)
		return
	}
	if d.Topic == "" {
		c.d.add(pos, "dataset %q: registry: needs a topic", d.Name)
		return
	}
	subject := r.Subject
	if subject == "" {
		if len(schema) == 0 && r.Strategy != serde.TopicName {
			c.d.add(pos, "dataset %q: the %s strategy needs a schema file or an explicit subject", d.Name, r.Strategy)
			return
		}
		var err error
		if subject, err = serde.SubjectName(r.Strategy, d.Topic, string(schema)); err != nil {
			c.d.add(pos, "dataset %q: %v", d.Name, err)
			return
		}
	}
	d.Subject = subject
	if c.registry == nil {
		if len(schema) == 0 {
			c.d.add(pos, "dataset %q: no schema file, and no registry to fetch subject %q from: give schema: or --registry", d.Name, subject)
			return
		}
		codec, err := serde.NewFromSchema("avro", schema)
		if err != nil {
			c.d.add(pos, "dataset %q: %v", d.Name, err)
			return
		}
		d.Schema = codec.Schema()
		d.Codec = serde.NeedsRegistry(d.Name, codec.Schema())
		c.d.warn(pos, "dataset %q: no schema registry given (--registry): types are checked against the schema file, compatibility with subject %q is not", d.Name, subject)
		return
	}
	if len(schema) == 0 {
		text, err := c.registry.Latest(subject, r.Version)
		if err != nil {
			c.d.add(pos, "dataset %q: %v", d.Name, err)
			return
		}
		schema = []byte(text)
	}
	codec, err := serde.NewRegistryAvro(c.registry, subject, string(schema), r.Register)
	if err != nil {
		c.d.add(pos, "dataset %q: %v", d.Name, err)
		return
	}
	d.Codec, d.Schema = codec, codec.Schema()
	c.registered = append(c.registered, registered{d: d, subject: subject, schema: string(schema), pos: pos})
}

// compatibility checks that what the job will write is compatible with the
// latest schema of each sink's subject, under the subject's compatibility
// level, before anything runs.
func (c *compiler) compatibility() {
	for _, r := range c.registered {
		if !r.d.IsSink() {
			continue
		}
		msgs, err := c.registry.Compatible(r.subject, r.schema)
		if err != nil {
			c.d.add(r.pos, "dataset %q: %v", r.d.Name, err)
			continue
		}
		for _, m := range msgs {
			c.d.add(r.pos, "dataset %q: the schema is not compatible with subject %q: %s", r.d.Name, r.subject, m)
		}
	}
}

func (c *compiler) pipes(t *Topology, n *yaml.Node) []*pipeDecl {
	if n.Kind == 0 {
		return nil
	}
	if n.Kind != yaml.MappingNode {
		c.d.add(spec.PosOf(n), "pipes: want a mapping of pipe names to pipe blocks")
		return nil
	}
	if len(n.Content) == 0 {
		c.d.add(spec.PosOf(n), "pipes: the topology has no pipes")
	}
	envelope := spec.Keys(reflectPipeSpec)
	seen := map[string]bool{}
	var out []*pipeDecl
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if seen[k.Value] {
			c.d.add(spec.PosOf(k), "pipe %q is declared twice", k.Value)
			continue
		}
		seen[k.Value] = true
		p := &pipeDecl{Pipe: &Pipe{Name: k.Value, Pos: spec.PosOf(k), fsys: c.fsys}}
		if v.Kind != yaml.MappingNode {
			c.d.add(spec.PosOf(v), "pipe %q: want a mapping with from:, to: and a pipe type", k.Value)
			continue
		}
		// Split the block into the envelope keys and the one type key.
		env := &yaml.Node{Kind: yaml.MappingNode, Line: v.Line, Column: v.Column}
		var typeKey, typeVal *yaml.Node
		notLinked := false
		for j := 0; j+1 < len(v.Content); j += 2 {
			kk, vv := v.Content[j], v.Content[j+1]
			if slices.Contains(envelope, kk.Value) {
				env.Content = append(env.Content, kk, vv)
				continue
			}
			if _, ok := c.types.Lookup(kk.Value); !ok {
				if why := pipes.NotLinked(kk.Value); why != "" {
					c.d.add(spec.PosOf(kk), "pipe %q: %s", k.Value, why)
					notLinked = true // then "has no type" would only repeat it
					continue
				}
				c.d.add(spec.PosOf(kk), "pipe %q: unknown field or pipe type %q%s", k.Value, kk.Value,
					spec.DidYouMean(kk.Value, append(envelope, c.types.TypeNames()...)))
				continue
			}
			if typeKey != nil {
				c.d.add(spec.PosOf(kk), "pipe %q has two types, %q and %q: a pipe has exactly one", k.Value, typeKey.Value, kk.Value)
				continue
			}
			typeKey, typeVal = kk, vv
		}
		var ps pipeSpec
		c.d.addAll(spec.Decode(env, &ps))
		p.Description = ps.Description
		p.OnError = OnError(ps.OnError)
		p.from, p.to = ps.From, ps.To
		if typeKey == nil {
			c.unbuiltPipe(ps.From, ps.To)
			if notLinked {
				continue
			}
			c.d.add(spec.PosOf(k), "pipe %q has no type: add one of %s", k.Value, strings.Join(c.types.TypeNames(), ", "))
			continue
		}
		typ, _ := c.types.Lookup(typeKey.Value)
		p.Type = typ.Name
		p.typ = typ
		cfg, errs := typ.Decode(typeVal)
		c.d.addAll(errs)
		if len(errs) > 0 {
			p.bad = true
		}
		p.Config = cfg
		p.cfgPos = spec.PosOf(typeVal)
		out = append(out, p)
	}
	return out
}

// pipeDecl is a pipe while it is being compiled.
type pipeDecl struct {
	*Pipe
	typ      *pipes.Type
	from, to []spec.Field
}

func (c *compiler) dataset(t *Topology, f spec.Field, what string) *Dataset {
	if d, ok := t.Datasets[f.Name]; ok {
		return d
	}
	mean := spec.DidYouMean(f.Name, slices.Sorted(maps.Keys(t.Datasets)))
	if mean == "" {
		mean = ": declare it under datasets:"
		if strings.HasPrefix(what, "pipe ") {
			mean += fmt.Sprintf(" (%s: {} passes records in memory between pipes; give it a topic: to store them in Kafka)", f.Name)
		}
	} else if meant, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(mean, " (did you mean "), "?)")); err == nil {
		if c.misspelled == nil {
			c.misspelled = map[string]unknownRef{}
		}
		if _, ok := c.misspelled[meant]; !ok {
			c.misspelled[meant] = unknownRef{f.Name, f.Pos}
		}
	}
	c.d.add(f.Pos, "%s: unknown dataset %q%s", what, f.Name, mean)
	return nil
}

// edges resolves from: and to: and checks that every dataset has one producer.
func (c *compiler) edges(t *Topology, ps []*pipeDecl) {
	for _, p := range ps {
		for _, f := range p.from {
			if d := c.dataset(t, f, fmt.Sprintf("pipe %q reads", p.Name)); d != nil && d.Table != "" {
				c.d.add(f.Pos, "pipe %q reads table %q in from:, but a table is not a stream: look records up in it with a join pipe's table:", p.Name, d.Name)
				p.bad = true
			} else if d != nil {
				p.Inputs = append(p.Inputs, d)
				d.Readers = append(d.Readers, p.Pipe)
			} else {
				p.bad = true
			}
		}
		for _, f := range p.to {
			d := c.dataset(t, f, fmt.Sprintf("pipe %q writes", p.Name))
			if d == nil {
				p.bad = true
				continue
			}
			if d.Table != "" {
				c.d.add(f.Pos, "pipe %q writes table %q: a table is an input, read from its topic; write to another dataset", p.Name, d.Name)
				continue
			}
			if d.Producer != nil {
				c.d.add(f.Pos, "dataset %q is written by pipes %q and %q: a dataset has exactly one producer", d.Name, d.Producer.Name, p.Name)
				continue
			}
			if d.Topic != "" && d == t.DeadLetter {
				c.d.add(f.Pos, "pipe %q writes the dead_letter dataset %q: only failing records go there", p.Name, d.Name)
			}
			d.Producer = p.Pipe
			p.Outputs = append(p.Outputs, d)
		}
		s := p.typ.Spec
		switch n := len(p.to); {
		case n < s.MinOutputs:
			c.d.add(p.Pos, "pipe %q (%s) writes %d datasets; it needs at least %d in to:", p.Name, p.Type, n, s.MinOutputs)
		case s.MaxOutputs > 0 && n > s.MaxOutputs:
			c.d.add(p.Pos, "pipe %q (%s) writes %d datasets; it takes at most %d", p.Name, p.Type, n, s.MaxOutputs)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		u := c.unbuilt[name] // the pipe that is not built would change these
		switch {
		case d == t.DeadLetter, d.Table != "": // tables: checked once the joins are built
		case u.writes && d.Producer == nil, u.reads && len(d.Readers) == 0:
		case len(d.Readers) > 0 && d.Producer == nil && d.Topic == "":
			c.datasetDiag(d, false, "dataset %q is read by pipe %q but nothing produces it: give it a topic, or write it from a pipe", d.Name, d.Readers[0].Name)
		case len(d.Readers) > 0 && d.Producer != nil && d.Topic != "" && d.Create == nil:
			// A pipe writes a topic that other pipes also read in memory: fine.
		case d.Producer != nil && len(d.Readers) == 0 && d.Topic == "":
			c.datasetDiag(d, false, "dataset %q is written by pipe %q but neither read by a pipe nor stored in a topic", d.Name, d.Producer.Name)
		case d.Producer == nil && len(d.Readers) == 0:
			c.datasetDiag(d, true, "dataset %q is declared but no pipe reads or writes it", d.Name)
		}
	}
}

func (c *compiler) deadLetter(t *Topology, f *spec.Field) {
	if f == nil {
		return
	}
	d := c.dataset(t, *f, "dead_letter")
	if d == nil {
		return
	}
	if d.Topic == "" {
		c.d.add(f.Pos, "dead_letter dataset %q needs a topic", d.Name)
	}
	t.DeadLetter = d
}

// order sorts pipes topologically and reports cycles.
func (c *compiler) order(ps []*pipeDecl) []*Pipe {
	indeg := map[*Pipe]int{}
	byPipe := map[*Pipe]*pipeDecl{}
	for _, p := range ps {
		byPipe[p.Pipe] = p
		for _, in := range p.Inputs {
			if in.Producer != nil {
				indeg[p.Pipe]++
			}
		}
	}
	var queue, out []*Pipe
	for _, p := range ps { // file order among independent pipes
		if indeg[p.Pipe] == 0 {
			queue = append(queue, p.Pipe)
		}
	}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		out = append(out, p)
		for _, o := range p.Outputs {
			for _, r := range o.Readers {
				if indeg[r]--; indeg[r] == 0 {
					queue = append(queue, r)
				}
			}
		}
	}
	if len(out) < len(ps) {
		left := map[*Pipe]bool{}
		for _, p := range ps {
			if indeg[p.Pipe] > 0 {
				left[p.Pipe] = true
				out = append(out, p.Pipe)
			}
		}
		c.cyclic = true
		cyc := findCycle(ps, left)
		c.d.add(cyc[0].Pos, "the pipes form a cycle, %s: a topology must be a DAG", cycleString(cyc))
	}
	return out
}

// findCycle returns the pipes of one cycle among those Kahn's sort could not
// order (which also holds pipes merely downstream of a cycle).
func findCycle(ps []*pipeDecl, left map[*Pipe]bool) []*Pipe {
	const (
		unseen = iota
		onPath
		done
	)
	state := map[*Pipe]int{}
	var path []*Pipe
	var visit func(p *Pipe) []*Pipe
	visit = func(p *Pipe) []*Pipe {
		state[p] = onPath
		path = append(path, p)
		for _, o := range p.Outputs {
			for _, r := range o.Readers {
				if !left[r] {
					continue
				}
				switch state[r] {
				case onPath:
					for i, q := range path {
						if q == r {
							return append([]*Pipe(nil), path[i:]...)
						}
					}
				case unseen:
					if c := visit(r); c != nil {
						return c
					}
				}
			}
		}
		path = path[:len(path)-1]
		state[p] = done
		return nil
	}
	for _, p := range ps {
		if left[p.Pipe] && state[p.Pipe] == unseen {
			if c := visit(p.Pipe); c != nil {
				return c
			}
		}
	}
	return nil // unreachable: Kahn's sort left pipes only because of a cycle
}

func cycleString(cyc []*Pipe) string {
	var b strings.Builder
	for _, p := range cyc {
		b.WriteString(strconv.Quote(p.Name) + " → ")
	}
	return b.String() + strconv.Quote(cyc[0].Name)
}

// build runs every constructor once, in DAG order, so config and expression
// errors surface now, and derives the schemas of in-memory datasets.
func (c *compiler) build(t *Topology, order []*Pipe, defaultOnError string) {
	for _, p := range order {
		if p.OnError == "" {
			p.OnError = OnError(defaultOnError)
		}
		if p.OnError == "" {
			p.OnError = Fail
			if t.DeadLetter != nil {
				p.OnError = DeadLetter
			}
		}
		if p.OnError == DeadLetter && t.DeadLetter == nil {
			c.d.add(p.Pos, "pipe %q sends failures to the dead-letter dataset, but the topology has no dead_letter: declare one, or set on_error to skip or fail", p.Name)
		}
		if len(p.Inputs) == 0 {
			continue // unknown datasets: already reported
		}
		env := p.Env(-1)
		env.Stores = func(name string) (pipes.Store, error) {
			if !slices.Contains(p.Stores, name) {
				p.Stores = append(p.Stores, name)
			}
			return pipes.NewMemoryStore(), nil
		}
		env.Tables = func(name string) (pipes.Table, error) {
			d, ok := t.Datasets[name]
			if !ok {
				return nil, fmt.Errorf("unknown dataset %q%s", name, spec.DidYouMean(name, slices.Sorted(maps.Keys(t.Datasets))))
			}
			if d.Table == "" {
				return nil, fmt.Errorf("dataset %q is not a table: declare it with table: partitioned or table: global", name)
			}
			if !slices.Contains(p.Tables, name) {
				p.Tables = append(p.Tables, name)
			}
			return EmptyTable(d), nil
		}
		pipe, err := p.Config.New(env)
		if err != nil {
			for _, e := range spec.Flatten(err, p.Pos) {
				if !p.bad || c.ownError(p, e.Pos) {
					c.d.add(e.Pos, "pipe %q: %s", p.Name, e.Msg)
				}
			}
			c.keepSchema(p)
			continue
		}
		if kc, ok := pipe.(pipes.KeyChanger); ok {
			p.ChangesKey = kc.ChangesKey()
		}
		if g, ok := pipe.(pipes.GracePeriod); ok {
			p.noGrace = g.Grace() == 0
		}
		sd, ok := pipe.(pipes.SchemaDeriver)
		for i, o := range p.Outputs {
			var derived *pipes.Schema
			if ok {
				derived = sd.OutputSchema(i)
			}
			if derived == nil && o.Schema == nil && env.InputSchema() != nil {
				c.lostSchema(p, ok, o)
			}
			if !ok {
				continue
			}
			if o.Schema == nil {
				o.Schema = derived
				continue
			}
			c.checkDeclared(p, o, derived)
		}
		if cl, ok := pipe.(pipes.Closer); ok {
			_ = cl.Close()
		}
	}
}

// tables checks the table datasets once the joins have named them: each is
// used by a pipe, and a partitioned one is co-partitioned with every source
// stream that reaches a pipe joining it, as far as the file declares
// partition counts (the engine checks the real ones at start).
func (c *compiler) tables(t *Topology) {
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		if d.Table == "" {
			continue
		}
		joiners := t.Joiners(d)
		if len(joiners) == 0 {
			c.d.warn(d.Pos, "table %q is declared but no pipe looks records up in it (a join pipe's table:)", d.Name)
			continue
		}
		if d.Table != TablePartitioned {
			continue
		}
		nt := d.DeclaredPartitions()
		reported := map[*Dataset]bool{} // one report per stream, however many joins
		for _, p := range joiners {
			for _, src := range t.UpstreamSources(p) {
				ns := src.DeclaredPartitions()
				if nt == 0 || ns == 0 || nt == ns || reported[src] {
					continue
				}
				reported[src] = true
				// Both ends get a diagnostic, each naming the other's
				// position: either may be the one to change.
				c.d.add(d.Pos, "partitioned table %q has %d partitions, but stream %q (at %s), which pipe %q joins with it, has %d: a partitioned table must be co-partitioned with its stream (same partition count, same key); make the counts equal, or declare the table global",
					d.Name, nt, src.Name, src.Pos, p.Name, ns)
				c.d.add(src.Pos, "stream %q has %d partitions, but partitioned table %q (at %s), which pipe %q joins it with, has %d: they must be co-partitioned",
					src.Name, ns, d.Name, d.Pos, p.Name, nt)
			}
		}
	}
}

// EmptyTable is the table a pipe gets while the topology is validated: no
// rows, with the dataset's schema and kind.
func EmptyTable(d *Dataset) pipes.Table { return emptyTable{d} }

type emptyTable struct{ d *Dataset }

var _ pipes.Table = emptyTable{}

func (emptyTable) Get([]byte) (any, bool, error) { return nil, false, nil }
func (e emptyTable) Schema() *pipes.Schema       { return e.d.Schema }
func (e emptyTable) Partitioned() bool           { return e.d.Table == TablePartitioned }
