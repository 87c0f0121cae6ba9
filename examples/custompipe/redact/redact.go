// Package redact is an example of a custom pipe: one file that registers a
// pipe type with a typed config, built into a custom streamer binary by
// importing it (see ../main.go).
//
// The redact pipe replaces personal data in chosen fields with a salted hash
// (so joins on the field still work) or a fixed mask.
package redact

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"

	"github.com/streamerio/streamer/pipes"
)

// Config is the redact pipe's config block. Its tags are the whole spec: the
// YAML decoding, the errors with line and column, and the JSON Schema come
// from them.
type Config struct {
	Fields []pipes.Field `yaml:"fields" required:"true" doc:"Fields to redact (dotted paths reach nested fields)."`
	Mode   string        `yaml:"mode" default:"hash" enum:"hash,mask" doc:"hash: a salted SHA-256 prefix, stable across records; mask: the fixed string ***."`
	Salt   string        `yaml:"salt" doc:"Secret mixed into hashes, so they cannot be reversed by guessing."`
	// Masks is a mapping whose keys keep their positions (pipes.KV), so
	// that a key naming no field of fields: is reported at its own
	// line:col.
	Masks []pipes.KV[string] `yaml:"masks" doc:"For mode mask: the replacement of a field instead of ***, field: replacement; each field is one of fields."`
}

// Type is the redact pipe type, for registering into an environment of
// one's own (a test's, say): env.MustRegister(redact.Type).
var Type = pipes.MustNewType("redact", pipes.Spec{
	Summary: "Replaces personal data in fields with a salted hash or a mask.",
	Example: "fields: [email, address.street]\nmode: hash\nsalt: s3cret",
}, New)

// init registers the type into the process-wide environment, so a binary
// that imports this package has the pipe in every command.
func init() { pipes.DefaultEnvironment().MustRegister(Type) }

type redact struct {
	fields []string
	masks  map[string]string // field -> replacement, for mode mask
	mask   bool
	salt   []byte
	schema *pipes.Schema
}

// New builds a redact pipe; the engine calls it once per partition task.
func New(c Config, env *pipes.Env) (pipes.Pipe, error) {
	r := &redact{mask: c.Mode == "mask", salt: []byte(c.Salt), masks: map[string]string{}}
	for _, f := range c.Fields {
		if err := env.CheckField(f); err != nil {
			return nil, err
		}
		r.fields = append(r.fields, f.Name)
	}
	var errs []error
	for _, m := range c.Masks {
		switch {
		case !r.mask:
			errs = append(errs, pipes.Errorf(m.KeyPos, "masks: apply to mode: mask only"))
		case !slices.Contains(r.fields, m.Key):
			errs = append(errs, pipes.Errorf(m.KeyPos, "masks: %q is not one of fields %v", m.Key, r.fields))
		default:
			r.masks[m.Key] = m.Value
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if in := env.InputSchema(); in != nil {
		r.schema = in.Clone()
		for _, f := range r.fields {
			if sf, ok := r.schema.Field(f); ok {
				sf.Kind = pipes.String
				r.schema.Set(sf)
			}
		}
	}
	return r, nil
}

// Process redacts each record in place. A record that is not an object is a
// per-record failure; the pipe's on_error decides its fate.
func (r *redact) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	for _, rec := range b.Records {
		if _, ok := rec.Value.(map[string]any); !ok {
			out.Fail(rec, fmt.Errorf("redact needs a record with fields, got %T", rec.Value))
			continue
		}
		for _, f := range r.fields {
			v, ok := pipes.GetPath(rec.Value, f)
			if !ok || v == nil {
				continue
			}
			pipes.SetPath(rec.Value, f, r.redact(f, v))
		}
		out.Emit(0, rec)
	}
	return nil
}

func (r *redact) redact(field string, v any) string {
	if r.mask {
		if m, ok := r.masks[field]; ok {
			return m
		}
		return "***"
	}
	h := sha256.New()
	h.Write(r.salt)
	fmt.Fprint(h, v)
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// OutputSchema tells the compiler that redacted fields are strings, so
// expressions downstream are checked against the right types.
func (r *redact) OutputSchema(int) *pipes.Schema { return r.schema }

var (
	_ pipes.Pipe          = (*redact)(nil)
	_ pipes.SchemaDeriver = (*redact)(nil)
)
