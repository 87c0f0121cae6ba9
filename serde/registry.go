package serde

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamerio/streamer/internal/unavailable"
	"github.com/streamerio/streamer/schema"
)

// ErrUnavailable marks failures that are not the record's fault, such as an
// unreachable schema registry after retries. It is pipes.ErrUnavailable
// (both are internal/unavailable.Err, so serde need not import pipes): the
// engine aborts the transaction, waits and reads the records again, instead
// of dead-lettering them.
var ErrUnavailable = unavailable.Err

// Subject naming strategies, as Confluent's serializers name them.
const (
	TopicName       = "topic"        // <topic>-value
	RecordName      = "record"       // <namespace>.<name> of the record
	TopicRecordName = "topic-record" // <topic>-<namespace>.<name>
)

// SubjectName returns the subject of a topic's values under a strategy.
func SubjectName(strategy, topic, schema string) (string, error) {
	full := ""
	if strategy != TopicName && strategy != "" {
		c, err := newAvro([]byte(schema))
		if err != nil {
			return "", err
		}
		full = c.(*avroCodec).root.name
		if full == "" {
			return "", fmt.Errorf("the %s strategy needs a named record schema", strategy)
		}
	}
	switch strategy {
	case TopicName, "":
		return topic + "-value", nil
	case RecordName:
		return full, nil
	case TopicRecordName:
		return topic + "-" + full, nil
	}
	return "", fmt.Errorf("unknown subject strategy %q (want topic, record or topic-record)", strategy)
}

// Registry is a schema registry client with the retries and caching the
// codecs need. It is safe for concurrent use.
type Registry struct {
	cl *sr.Client
	// Attempts and Backoff bound the retries of a request that fails for
	// reasons other than the registry's answer (network, 5xx).
	Attempts int
	Backoff  time.Duration

	mu      sync.Mutex
	writers map[int]*avroCodec
}

// NewRegistry returns a client for the registry at url (Confluent API).
func NewRegistry(url string, opts ...sr.ClientOpt) (*Registry, error) {
	cl, err := sr.NewClient(append([]sr.ClientOpt{sr.URLs(url)}, opts...)...)
	if err != nil {
		return nil, err
	}
	return &Registry{cl: cl, Attempts: 5, Backoff: 200 * time.Millisecond, writers: map[int]*avroCodec{}}, nil
}

// Client returns the underlying pkg/sr client.
func (r *Registry) Client() *sr.Client { return r.cl }

// retry runs f until it succeeds, the registry answers with an error
// retrying cannot help (a 4xx other than 408 and 429), or the attempts run
// out, backing off exponentially. Exhausted attempts, and 401 and 403 (the
// registry refuses these credentials: misconfigured, not the record's
// fault), wrap ErrUnavailable so the engine pauses and tries again.
func (r *Registry) retry(what string, f func(ctx context.Context) error) error {
	backoff := r.Backoff
	var err error
	for i := 0; i < max(1, r.Attempts); i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = f(ctx)
		cancel()
		var re *sr.ResponseError
		if errors.As(err, &re) && (re.StatusCode == http.StatusUnauthorized || re.StatusCode == http.StatusForbidden) {
			return fmt.Errorf("%w: schema registry: %s: HTTP %d %s: %v", ErrUnavailable, what, re.StatusCode, http.StatusText(re.StatusCode), err)
		}
		if err == nil || (re != nil && re.StatusCode >= 400 && re.StatusCode < 500 &&
			re.StatusCode != http.StatusRequestTimeout && re.StatusCode != http.StatusTooManyRequests) {
			return err
		}
		if i+1 < r.Attempts {
			time.Sleep(backoff)
			backoff *= 2
		}
	}
	return fmt.Errorf("%w: schema registry: %s: %v (after %d attempts)", ErrUnavailable, what, err, max(1, r.Attempts))
}

// notFound reports whether the registry answered 404: no such subject
// (40401), version (40402) or schema (40403).
func notFound(err error) bool {
	var re *sr.ResponseError
	return errors.As(err, &re) && re.StatusCode == http.StatusNotFound
}

// writer returns the codec of a schema id, fetching it once.
func (r *Registry) writer(id int) (*avroCodec, error) {
	r.mu.Lock()
	c, ok := r.writers[id]
	r.mu.Unlock()
	if ok {
		return c, nil
	}
	var s sr.Schema
	err := r.retry(fmt.Sprintf("schema id %d", id), func(ctx context.Context) (err error) {
		s, err = r.cl.SchemaByID(ctx, id)
		return err
	})
	if notFound(err) {
		return nil, fmt.Errorf("avro: schema id %d is not in the registry", id)
	}
	if err != nil {
		return nil, err
	}
	if s.Type != sr.TypeAvro {
		return nil, fmt.Errorf("avro: schema id %d is %s, not Avro", id, s.Type)
	}
	codec, err := newAvro([]byte(s.Schema))
	if err != nil {
		return nil, fmt.Errorf("avro: schema id %d: %w", id, err)
	}
	c = codec.(*avroCodec)
	r.mu.Lock()
	r.writers[id] = c
	r.mu.Unlock()
	return c, nil
}

// Latest returns the text of a subject's schema at a version; version -1 is
// the latest.
func (r *Registry) Latest(subject string, version int) (string, error) {
	var s sr.SubjectSchema
	err := r.retry("subject "+subject, func(ctx context.Context) (err error) {
		s, err = r.cl.SchemaByVersion(ctx, subject, version)
		return err
	})
	if notFound(err) {
		return "", fmt.Errorf("subject %q has no version %s in the registry", subject, versionText(version))
	}
	return s.Schema.Schema, err
}

func versionText(v int) string {
	if v < 0 {
		return "latest"
	}
	return fmt.Sprint(v)
}

// Compatible checks an Avro schema against a subject's latest version under
// the subject's compatibility level. A subject with no versions accepts any
// schema.
func (r *Registry) Compatible(subject, schema string) ([]string, error) {
	var res sr.CheckCompatibilityResult
	err := r.retry("compatibility of "+subject, func(ctx context.Context) (err error) {
		res, err = r.cl.CheckCompatibility(ctx, subject, -1, sr.Schema{Schema: schema, Type: sr.TypeAvro})
		return err
	})
	if notFound(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if res.Is {
		return nil, nil
	}
	if len(res.Messages) == 0 {
		return []string{"not compatible with the latest version"}, nil
	}
	return res.Messages, nil
}

// RegistryAvro is the Avro codec in the Confluent wire format: a zero magic
// byte, the 4-byte big-endian schema id, then the Avro binary. It decodes
// records written with any registered schema into the reader schema
// (schema evolution), and encodes with the reader schema, registered under
// its subject on first use when Register is set, or looked up otherwise.
type RegistryAvro struct {
	reg      *Registry
	reader   *avroCodec
	text     string
	Subject  string
	Register bool

	mu       sync.Mutex   // serialises lookups of the reader schema's id
	readerID atomic.Int64 // the reader schema's id once known, else -1
	header   sr.ConfluentHeader
}

var _ Codec = (*RegistryAvro)(nil)

// NewRegistryAvro returns the wire-format codec of a subject whose reader
// schema is schema.
func NewRegistryAvro(reg *Registry, subject, schema string, register bool) (*RegistryAvro, error) {
	c, err := newAvro([]byte(schema))
	if err != nil {
		return nil, err
	}
	ra := &RegistryAvro{reg: reg, reader: c.(*avroCodec), text: schema, Subject: subject, Register: register}
	ra.readerID.Store(-1)
	return ra, nil
}

// Schema returns the reader schema's fields.
func (c *RegistryAvro) Schema() *schema.Schema { return c.reader.schema }

// Decode reads the header, decodes with the writer's schema and resolves
// into the reader schema.
func (c *RegistryAvro) Decode(b []byte) (any, error) {
	id, rest, err := c.header.DecodeID(b)
	if err != nil {
		if len(b) == 0 {
			return nil, errors.New("wire format: empty value")
		}
		if b[0] != 0 {
			return nil, fmt.Errorf("wire format: magic byte %#x, want 0x00 (not a schema-registry record)", b[0])
		}
		return nil, fmt.Errorf("wire format: %d bytes, too short for the 5-byte header", len(b))
	}
	w, err := c.reg.writer(id)
	if err != nil {
		return nil, err
	}
	v, err := w.Decode(rest)
	if err != nil {
		return nil, fmt.Errorf("schema id %d: %w", id, err)
	}
	if int64(id) == c.readerID.Load() {
		return v, nil // written with the reader schema: nothing to resolve
	}
	out, err := conform(c.reader.root, v)
	if err != nil {
		return nil, fmt.Errorf("avro: written with schema id %d, which does not resolve into the reader schema: %w", id, err)
	}
	return out, nil
}

// resolveID returns the reader schema's id, looking it up (or registering
// it) until that succeeds. Only a success is kept: after an outage the next
// record asks again, so a replica recovers without a restart.
func (c *RegistryAvro) resolveID() (int, error) {
	if id := c.readerID.Load(); id >= 0 {
		return int(id), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id := c.readerID.Load(); id >= 0 {
		return int(id), nil // another caller looked it up meanwhile
	}
	s := sr.Schema{Schema: c.text, Type: sr.TypeAvro}
	var id int
	err := c.reg.retry("subject "+c.Subject, func(ctx context.Context) error {
		var ss sr.SubjectSchema
		var err error
		if c.Register {
			ss, err = c.reg.cl.CreateSchema(ctx, c.Subject, s)
		} else {
			ss, err = c.reg.cl.LookupSchema(ctx, c.Subject, s)
		}
		id = ss.ID
		return err
	})
	switch {
	case err == nil:
		c.readerID.Store(int64(id))
		return id, nil
	case notFound(err) && !c.Register:
		// A configuration error, not an outage: retrying cannot help.
		return 0, fmt.Errorf("schema registry: the schema is not registered under subject %q (%v); register it, or set register: true to register it on write", c.Subject, err)
	case IsUnavailable(err):
		return 0, err
	}
	return 0, fmt.Errorf("schema registry: subject %q: %w", c.Subject, err)
}

// AppendEncode writes the header with the reader schema's id, then the
// Avro binary.
func (c *RegistryAvro) AppendEncode(dst []byte, v any) ([]byte, error) {
	id, err := c.resolveID()
	if err != nil {
		return dst, err
	}
	dst, _ = c.header.AppendEncode(dst, id, nil)
	return c.reader.AppendEncode(dst, v)
}

// IsUnavailable reports whether err means a dependency, not the record,
// failed.
func IsUnavailable(err error) bool { return errors.Is(err, ErrUnavailable) }

// NeedsRegistry returns a codec for a registry-backed dataset compiled
// without a registry (as `streamer validate` may be): it knows the schema
// for type checks, and fails every use with ErrUnavailable.
func NeedsRegistry(dataset string, schema *schema.Schema) Codec {
	return unconnected{dataset: dataset, schema: schema}
}

type unconnected struct {
	dataset string
	schema  *schema.Schema
}

func (u unconnected) err() error {
	return fmt.Errorf("%w: dataset %q uses a schema registry: pass --registry or set STREAMER_REGISTRY_URL", ErrUnavailable, u.dataset)
}
func (u unconnected) Decode([]byte) (any, error)                     { return nil, u.err() }
func (u unconnected) AppendEncode(dst []byte, _ any) ([]byte, error) { return dst, u.err() }
func (u unconnected) Schema() *schema.Schema                         { return u.schema }
