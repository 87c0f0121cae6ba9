package topology

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/streamerio/streamer/crypt"
	"github.com/streamerio/streamer/internal/builtin"
	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/pipes"
)

// encryptionSpec is a dataset's encryption: see docs/ENCRYPTION.md.
type encryptionSpec struct {
	Fields        []spec.Field `yaml:"fields" doc:"Fields encrypted with AES-256-GCM (equal values, different ciphertexts). A dotted path names a nested field (address.street). Each must be a string (or avro bytes) in the schema."`
	Deterministic []spec.Field `yaml:"deterministic" doc:"Fields encrypted with AES-SIV: equal values give equal ciphertexts under one key, so consumers can join or group on them without decrypting. Needs key.deterministic_keyset to write."`
	Payload       bool         `yaml:"payload" doc:"Encrypt the whole encoded value with AES-256-GCM, instead of fields."`
	Key           *keySpec     `yaml:"key" required:"true" doc:"The key-encryption key that wraps the data keys, and where it is."`
	Rotate        rotateSpec   `yaml:"rotate" doc:"When a writer replaces its data key. Old records stay readable: each carries its wrapped data key."`
	Pos           spec.Pos     `yaml:"-" spec:"pos"`
}

type keySpec struct {
	KMS                 string      `yaml:"kms" required:"true" enum:"local,aws,gcp,vault" doc:"Where the key-encryption key is: local (a tink JSON keyset file; tests and small deployments), aws, gcp or vault (HashiCorp Vault transit)."`
	URI                 string      `yaml:"uri" required:"true" doc:"The key: local, the keyset file relative to the topology file (or the keyset JSON itself); aws-kms://arn:aws:kms:...; gcp-kms://projects/.../cryptoKeys/...; hcvault://host/transit/keys/name."`
	Credentials         string      `yaml:"credentials" doc:"aws: a credentials file; gcp: a service account key file (default: the SDK's chain); vault: the token (default: $VAULT_TOKEN)."`
	DeterministicKeyset *spec.Field `yaml:"deterministic_keyset" doc:"File of the deterministic data keyset (AES-SIV), wrapped by the key-encryption key (tink JSON), relative to the topology file. Shared by every writer so that equal values encrypt equally."`
	Pos                 spec.Pos    `yaml:"-" spec:"pos"`
}

type rotateSpec struct {
	Age     time.Duration `yaml:"age" default:"24h" doc:"Make a new data key when the current one is this old."`
	Records int64         `yaml:"records" default:"0" doc:"Make a new data key after this many records; 0: no count limit."`
}

// Encryption is a dataset's compiled encryption.
type Encryption struct {
	crypt.Spec
	Key    crypt.Key
	Rotate crypt.Rotation
	// DeterministicKeyset is the wrapped deterministic keyset, or nil.
	DeterministicKeyset []byte
	Pos                 spec.Pos
	// positions of the declared fields, for diagnostics
	fieldPos map[string]spec.Pos
}

// Encrypts reports whether the dataset writes field (a dotted path)
// encrypted.
func (e *Encryption) Encrypts(field string) bool {
	if e == nil {
		return false
	}
	return e.Payload || slices.Contains(e.Fields, field) || slices.Contains(e.Deterministic, field)
}

// WithTestKeys replaces the key-encryption key of every encrypted dataset
// with one fresh local key held in memory, and gives datasets with
// deterministic fields a fresh deterministic keyset: `streamer test` and
// the Go test driver run encrypted topologies without a KMS.
func WithTestKeys() Option { return func(c *compiler) { c.testKeys = true } }

// declareEncryption compiles a dataset's encryption: and plaintext:.
func (c *compiler) declareEncryption(d *Dataset, ds datasetSpec) {
	for _, f := range ds.Plaintext {
		d.Plaintext = append(d.Plaintext, f.Name)
	}
	es := ds.Encryption
	if es == nil || es.Key == nil {
		return // a missing key: is reported by the decoder
	}
	e := &Encryption{Pos: es.Pos, Rotate: crypt.Rotation{Age: es.Rotate.Age, Records: es.Rotate.Records}, fieldPos: map[string]spec.Pos{}}
	e.Payload = es.Payload
	for _, f := range es.Fields {
		e.Fields = append(e.Fields, f.Name)
		e.fieldPos[f.Name] = f.Pos
	}
	for _, f := range es.Deterministic {
		e.Deterministic = append(e.Deterministic, f.Name)
		e.fieldPos[f.Name] = f.Pos
		if !slices.Contains(e.Fields, f.Name) {
			e.Fields = append(e.Fields, f.Name)
		}
	}
	switch {
	case d.Topic == "":
		c.d.add(es.Pos, "dataset %q: encryption needs a topic (an in-memory dataset is never written)", d.Name)
	case e.Payload && len(e.Fields) > 0:
		c.d.add(es.Pos, "dataset %q: encryption: payload: true encrypts the whole value; leave fields and deterministic out", d.Name)
	case !e.Payload && len(e.Fields) == 0:
		c.d.add(es.Pos, "dataset %q: encryption encrypts nothing: list fields, deterministic, or set payload: true", d.Name)
	case !e.Payload && (d.ValueFormat == "string" || d.ValueFormat == "bytes"):
		c.d.add(es.Pos, "dataset %q: %s values have no fields to encrypt: set payload: true", d.Name, d.ValueFormat)
	}
	e.Key = crypt.Key{KMS: es.Key.KMS, URI: es.Key.URI, Credentials: es.Key.Credentials}
	if c.testKeys {
		e.Key = c.testKey()
	} else if e.Key.KMS == "local" {
		text, err := c.readKeyFile(e.Key.URI)
		if err == nil {
			_, err = crypt.ParseKeyset(text)
		}
		if err != nil {
			c.d.add(es.Key.Pos, "dataset %q: key: %v", d.Name, err)
		}
		e.Key.URI = string(text)
	}
	if f := es.Key.DeterministicKeyset; f != nil && !c.testKeys {
		b, err := c.readKeyFile(f.Name)
		if err != nil {
			c.d.add(f.Pos, "dataset %q: deterministic_keyset: %v", d.Name, err)
		}
		e.DeterministicKeyset = b
	}
	if c.testKeys && len(e.Deterministic) > 0 {
		kek, err := crypt.ParseKeyset([]byte(e.Key.URI))
		if err == nil {
			e.DeterministicKeyset, err = crypt.NewDeterministicKeyset(kek)
		}
		if err != nil {
			c.d.add(es.Pos, "dataset %q: test keys: %v", d.Name, err)
		}
	}
	d.Encryption = e
}

// testKey returns the compilation's in-memory local key, made once.
func (c *compiler) testKey() crypt.Key {
	if c.testKeyset == nil {
		ks, err := crypt.NewLocalKeyset()
		if err != nil {
			panic(fmt.Sprintf("topology: making a test keyset: %v", err)) // only a broken random source fails
		}
		c.testKeyset = ks
	}
	return crypt.Key{KMS: "local", URI: string(c.testKeyset)}
}

// readKeyFile reads a key file named in the topology: the JSON itself when
// the value is a document (a resolved ${file:...} reference), an absolute
// path as it is, a relative one from the topology's directory and only
// below it.
func (c *compiler) readKeyFile(name string) ([]byte, error) {
	if strings.HasPrefix(strings.TrimSpace(name), "{") {
		return []byte(name), nil
	}
	if filepath.IsAbs(name) {
		return os.ReadFile(name)
	}
	p := path.Clean(filepath.ToSlash(name))
	if !fs.ValidPath(p) {
		return nil, fmt.Errorf("%q is not a path below the topology's directory (use an absolute path)", name)
	}
	return fs.ReadFile(c.fsys, p)
}

// encryptionCodecs wraps the codecs of encrypted datasets.
func (c *compiler) encryptionCodecs(t *Topology) {
	for _, d := range t.Datasets {
		if d.Encryption == nil || d.Codec == nil {
			continue
		}
		e := d.Encryption
		env := crypt.NewEnvelope(e.Key, e.Rotate, e.DeterministicKeyset)
		d.Codec = crypt.NewCodec(d.Codec, env, e.Spec)
	}
}

// checkEncryption checks encrypted fields against the schemas once the
// pipes have derived them, and looks for leaks: an encrypted field of a
// source that reaches a sink which writes it in clear.
func (c *compiler) checkEncryption(t *Topology) {
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		e := d.Encryption
		if e == nil || (d.Producer != nil && d.Producer.bad) {
			continue // a pipe that did not build derived no schema
		}
		if d.IsSink() && len(e.Deterministic) > 0 && e.DeterministicKeyset == nil {
			c.d.add(e.Pos, "dataset %q: writing deterministic fields needs key.deterministic_keyset, the keyset every writer shares", d.Name)
		}
		if e.Payload || len(e.Fields) == 0 {
			continue
		}
		if d.Schema == nil {
			c.d.add(e.Pos, "dataset %q: encrypted fields need a schema to be checked against: give schema:, or set payload: true", d.Name)
			continue
		}
		for _, f := range e.Fields {
			fd, ok := schemaPath(d.Schema, f)
			switch {
			case !ok:
				c.d.add(e.fieldPos[f], "dataset %q: encrypted field %q is not in its schema (fields: %s)", d.Name, f, strings.Join(d.Schema.Names(), ", "))
			case fd.Kind != pipes.String && fd.Kind != pipes.Bytes && fd.Kind != pipes.Any:
				c.d.add(e.fieldPos[f], "dataset %q: encrypted field %q is %s; only strings and bytes can be encrypted (encrypt the whole value with payload: true)", d.Name, f, fd.Kind)
			}
		}
	}
	c.leaks(t)
	c.encryptInMemory(t)
}

// encryptInMemory wraps the codec of every in-memory dataset that holds
// fields encrypted upstream, with the upstream source's keys: when the
// compiler turns it into a repartition or merge topic, or a stream join
// stores its records, those fields stay encrypted at rest. All of them are
// encrypted randomized (AES-GCM): only streamer reads them back. A field
// the dataset's schema does not know as a string (a table's value joined
// whole with into:) makes it encrypt the whole value, as does an unknown
// schema. A dataset that several encrypted inputs reach takes the keys of
// the first by name, for all their fields.
func (c *compiler) encryptInMemory(t *Topology) {
	type wrap struct {
		env    *crypt.Envelope
		fields []string
		whole  bool
	}
	wraps := map[*Dataset]*wrap{}
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		src := t.Datasets[name]
		cc, ok := src.Codec.(*crypt.Codec)
		if !ok || src.Producer != nil {
			continue
		}
		for _, r := range reaches(t, src) {
			for _, d := range r.datasets {
				if d.Topic != "" || d.Codec == nil {
					continue
				}
				if _, done := d.Codec.(*crypt.Codec); done {
					continue
				}
				w := wraps[d]
				if w == nil {
					w = &wrap{env: cc.Envelope()}
					wraps[d] = w
				}
				if d.Schema == nil || slices.Contains(r.names, allFields) {
					w.whole = true
					continue
				}
				for _, f := range r.names {
					fd, ok := schemaPath(d.Schema, f)
					switch {
					case !ok:
					case fd.Kind == pipes.String || fd.Kind == pipes.Bytes:
						if !slices.Contains(w.fields, f) {
							w.fields = append(w.fields, f)
						}
					case fd.Kind == pipes.Any || fd.Kind == pipes.Struct:
						w.whole = true
					}
				}
			}
		}
	}
	for d, w := range wraps {
		s := crypt.Spec{Payload: w.whole}
		if !w.whole {
			s.Fields = w.fields
		}
		if s.Payload && d.ValueFormat != "json" && d.ValueFormat != "avro" && d.ValueFormat != "" {
			continue
		}
		if s.Payload || len(s.Fields) > 0 {
			d.Codec = crypt.NewCodec(d.Codec, w.env, s)
		}
	}
}

// reach is where the encrypted fields of a source or table go: the
// datasets its records, or values, reach through pipes, and the names the
// fields have there.
type reach struct {
	names    []string // allFields: every field, the schema being unknown
	datasets []*Dataset
}

// reaches returns where the encrypted fields of src go: for a source, its
// encrypted fields (all of a payload one) reach the datasets downstream of
// it, by their names; for a table, each pipe joining it copies them into
// its records under the names it writes (joinedNames), and they reach the
// outputs of that pipe and the datasets downstream of them.
func reaches(t *Topology, src *Dataset) []reach {
	e := src.Encryption
	if e == nil {
		return nil
	}
	secret := e.Fields
	if e.Payload {
		secret = src.Schema.Names()
		if src.Schema == nil {
			secret = []string{allFields}
		}
	}
	if src.Table == "" {
		return []reach{{secret, downstream(src.Readers, src)}}
	}
	var out []reach
	for _, p := range t.Joiners(src) {
		jc, ok := p.Config.Value().(builtin.JoinConfig)
		if !ok {
			continue
		}
		if names := joinedNames(&jc, secret); len(names) > 0 {
			out = append(out, reach{names, downstream([]*Pipe{p}, src)})
		}
	}
	return out
}

// joinedNames returns the output fields through which a join copies the
// secret fields of its table's values: the fields: that take one of them
// (or a field holding one: address for address.street gives out.street),
// or into:'s, prefixed.
func joinedNames(jc *builtin.JoinConfig, secret []string) []string {
	var out []string
	add := func(n string) {
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	for _, f := range secret {
		if jc.Into != nil {
			if f == allFields {
				add(jc.Into.Name)
			} else {
				add(jc.Into.Name + "." + f)
			}
			continue
		}
		for _, o := range slices.Sorted(maps.Keys(jc.Fields)) {
			from := jc.Fields[o].Name
			switch {
			case f == allFields, from == f, strings.HasPrefix(f+".", from+"."), strings.HasPrefix(from, f+"."):
				add(o)
			case strings.HasPrefix(f, from+"."):
				add(o + f[len(from):])
			}
		}
	}
	return out
}

// schemaPath finds a dotted path in a schema.
func schemaPath(s *pipes.Schema, p string) (pipes.SchemaField, bool) {
	parts := strings.Split(p, ".")
	for i, part := range parts {
		f, ok := s.Field(part)
		if !ok {
			return f, false
		}
		if i == len(parts)-1 {
			return f, true
		}
		if f.Kind != pipes.Struct || f.Fields == nil {
			return f, f.Kind == pipes.Any // unknown inside: assume it may be there
		}
		s = f.Fields
	}
	return pipes.SchemaField{}, false
}

// allFields stands for every field of a payload-encrypted source whose
// schema is unknown.
const allFields = "*"

// leaks follows each encrypted source's and table's fields downstream,
// by name, to the sinks they reach.
func (c *compiler) leaks(t *Topology) {
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		src := t.Datasets[name]
		if src.Producer != nil {
			continue
		}
		for _, r := range reaches(t, src) {
			for _, sink := range r.datasets {
				if sink.Topic == "" || (sink.Producer != nil && sink.Producer.bad) {
					continue
				}
				c.leaksTo(src, sink, r.names)
			}
		}
	}
}

// leaksTo reports the fields among secret, encrypted on src, that sink
// writes in clear.
func (c *compiler) leaksTo(src, sink *Dataset, secret []string) {
	for _, f := range secret {
		if sink.Encryption.Encrypts(f) || slices.Contains(sink.Plaintext, f) || (sink.Encryption != nil && sink.Encryption.Payload) {
			continue
		}
		if f == allFields {
			c.d.add(sink.Pos, "dataset %q receives records of %q, whose whole value is encrypted and whose schema is unknown, and writes them without payload encryption: set encryption.payload: true, or allow it with plaintext: [\"*\"]", sink.Name, src.Name)
			continue
		}
		if sink.Schema != nil {
			if _, ok := schemaPath(sink.Schema, f); !ok {
				continue // the field does not reach it
			}
		}
		how := "writes it"
		if sink.Schema == nil {
			how = "may write it (its schema is unknown)"
		}
		c.d.add(sink.Pos, "dataset %q receives field %q, encrypted on dataset %q, and %s in clear: encrypt it (encryption.fields), or allow it with plaintext: [%s]", sink.Name, f, src.Name, how, f)
	}
}

// downstream returns the datasets that the outputs of the pipes readers
// lead to (their outputs, and on through the pipes reading those), not
// src, sorted by name.
func downstream(readers []*Pipe, src *Dataset) []*Dataset {
	seen := map[*Dataset]bool{src: true}
	var out []*Dataset
	var queue []*Dataset
	visit := func(ps []*Pipe) {
		for _, p := range ps {
			for _, o := range p.Outputs {
				if seen[o] {
					continue
				}
				seen[o] = true
				queue = append(queue, o)
				out = append(out, o)
			}
		}
	}
	visit(readers)
	for len(queue) > 0 {
		d := queue[0]
		queue = queue[1:]
		visit(d.Readers)
	}
	slices.SortFunc(out, func(a, b *Dataset) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// StartEncryption opens the key-encryption key of every encrypted dataset
// and checks it: `streamer run` calls it before the engine starts, so
// that a KMS that does not answer is a clear error at start rather than a
// pause later. ctx bounds the calls.
func (t *Topology) StartEncryption(ctx context.Context) error {
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(t.Datasets)) {
		d := t.Datasets[name]
		cc, ok := d.Codec.(*crypt.Codec)
		if !ok || d.Encryption == nil {
			continue // sides and repartition copies share their dataset's codec
		}
		if err := cc.Envelope().Start(ctx); err != nil {
			errs = append(errs, fmt.Errorf("dataset %q: %w", d.Name, err))
		}
	}
	return errors.Join(errs...)
}

// StoreEnvelope returns the keys that encrypt the values of state store
// name (crypt.Store), or nil when they are kept as the pipes write them.
// A store is encrypted when a pipe using it is fed, through any chain of
// pipes, by an encrypted dataset, or by a pipe joining an encrypted table;
// it takes the keys of the first such dataset met. Stream join stores are
// not: their pipes already store encrypted inputs framed (crypt.Codec).
func (t *Topology) StoreEnvelope(name string) *crypt.Envelope {
	for _, p := range t.Pipes {
		if !slices.Contains(p.Stores, name) || p.Type == "stream_join" {
			continue
		}
		if env := t.inputEnvelope(p); env != nil {
			return env
		}
	}
	return nil
}

// inputEnvelope returns the keys of an encrypted dataset whose records
// or values reach pipe p, or nil.
func (t *Topology) inputEnvelope(p *Pipe) *crypt.Envelope {
	seen := map[*Pipe]bool{}
	var walk func(p *Pipe) *crypt.Envelope
	walk = func(p *Pipe) *crypt.Envelope {
		if seen[p] {
			return nil
		}
		seen[p] = true
		for _, name := range p.Tables {
			if cc, ok := t.Datasets[name].Codec.(*crypt.Codec); ok {
				return cc.Envelope()
			}
		}
		for _, in := range p.Inputs {
			for _, d := range []*Dataset{in, in.MergeOf} {
				if d == nil {
					continue
				}
				if cc, ok := d.Codec.(*crypt.Codec); ok {
					return cc.Envelope()
				}
			}
			if in.Producer != nil {
				if env := walk(in.Producer); env != nil {
					return env
				}
			}
		}
		return nil
	}
	return walk(p)
}
