package crypt

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
)

// Spec is what a dataset declares encrypted.
type Spec struct {
	// Fields are encrypted with AES-256-GCM: equal values give different
	// ciphertexts. Dotted paths name nested fields.
	Fields []string
	// Deterministic fields are encrypted with AES-SIV: equal values give
	// equal ciphertexts under one key, so they can key, join and group.
	Deterministic []string
	// Payload encrypts the whole encoded value with AES-256-GCM.
	Payload bool
}

// Codec wraps the codec of a dataset's format with its encryption. Records
// go through DecodeRecord and AppendEncodeRecord (serde.HeaderCodec), which
// read and write the wrapped data keys in headers. Decode and AppendEncode
// are for values kept apart from records (a stream join's state): they
// frame the headers and the encrypted value together, so stored values stay
// encrypted. It is safe for concurrent use.
type Codec struct {
	inner   serde.Codec
	env     *Envelope
	fields  []path
	det     []path
	payload bool
	// stored frames values kept apart from records: every field
	// randomized, so a reader that holds no deterministic keyset can
	// store records too.
	stored *Codec
}

var _ serde.HeaderCodec = (*Codec)(nil)

type path struct {
	name  string   // the associated data of its ciphertexts
	parts []string // name split at dots
}

// NewCodec returns inner with the encryption of s, keys from env.
func NewCodec(inner serde.Codec, env *Envelope, s Spec) *Codec {
	c := &Codec{inner: inner, env: env, payload: s.Payload}
	det := map[string]bool{}
	for _, f := range s.Deterministic {
		det[f] = true
		c.det = append(c.det, path{f, strings.Split(f, ".")})
	}
	for _, f := range s.Fields {
		if !det[f] {
			c.fields = append(c.fields, path{f, strings.Split(f, ".")})
		}
	}
	c.stored = &Codec{inner: inner, env: env, payload: s.Payload, fields: append(slices.Clone(c.fields), c.det...)}
	return c
}

// Inner returns the codec of the dataset's format.
func (c *Codec) Inner() serde.Codec { return c.inner }

// Envelope returns the dataset's keys.
func (c *Codec) Envelope() *Envelope { return c.env }

// Schema returns the schema of the format's codec: encryption keeps it.
func (c *Codec) Schema() *pipes.Schema { return c.inner.Schema() }

// splitHeaders returns the last wrapped keys among hs, and hs without any
// header of this package (a new slice when there were some).
func splitHeaders(hs []kgo.RecordHeader) (dekH, detH []byte, rest []kgo.RecordHeader) {
	rest = hs
	for i, h := range hs {
		if !strings.HasPrefix(h.Key, HeaderPrefix) {
			continue
		}
		if len(rest) == len(hs) {
			rest = append(make([]kgo.RecordHeader, 0, len(hs)), hs[:i]...)
		}
		switch h.Key {
		case HeaderDEK:
			dekH = h.Value
		case HeaderDeterministicDEK:
			detH = h.Value
		}
	}
	if len(rest) < len(hs) {
		for _, h := range hs[len(rest):] {
			if !strings.HasPrefix(h.Key, HeaderPrefix) {
				rest = append(rest, h)
			}
		}
	}
	return dekH, detH, rest
}

// DecodeRecord decrypts and decodes a record's value. An error never
// holds a decrypted value.
func (c *Codec) DecodeRecord(b []byte, hs []kgo.RecordHeader) (any, []kgo.RecordHeader, error) {
	dekH, detH, rest := splitHeaders(hs)
	if c.payload {
		if dekH == nil {
			return nil, nil, fmt.Errorf("encrypted payload: the record has no %s header", HeaderDEK)
		}
		a, err := c.env.readAEAD(dekH)
		if err != nil {
			return nil, nil, fmt.Errorf("encrypted payload: %w", err)
		}
		pt, err := a.Decrypt(b, nil)
		if err != nil {
			return nil, nil, fmt.Errorf("encrypted payload: decryption failed (wrong key, unknown key version or tampered value): %w", err)
		}
		v, err := c.inner.Decode(pt)
		if err != nil {
			// The decoder's message could quote the plaintext.
			return nil, nil, errors.New("encrypted payload: the decrypted value does not decode in the dataset's format")
		}
		return v, rest, nil
	}
	v, err := c.inner.Decode(b)
	if err != nil {
		return nil, nil, err
	}
	if err := c.decryptFields(v, dekH, detH); err != nil {
		return nil, nil, err
	}
	return v, rest, nil
}

func (c *Codec) decryptFields(v any, dekH, detH []byte) error {
	for i, ps := range [2][]path{c.fields, c.det} {
		for _, p := range ps {
			m, leaf := lookup(v, p.parts)
			if m == nil || m[leaf] == nil {
				continue // absent or null: nothing was encrypted
			}
			ct, isString, err := ciphertext(m[leaf], p.name)
			if err != nil {
				return err
			}
			var pt []byte
			if i == 0 {
				if dekH == nil {
					return fmt.Errorf("encrypted field %s: the record has no %s header", p.name, HeaderDEK)
				}
				a, err := c.env.readAEAD(dekH)
				if err != nil {
					return fmt.Errorf("encrypted field %s: %w", p.name, err)
				}
				pt, err = a.Decrypt(ct, []byte(p.name))
				if err != nil {
					return fmt.Errorf("encrypted field %s: decryption failed (wrong key, unknown key version or tampered ciphertext): %w", p.name, err)
				}
			} else {
				if detH == nil {
					return fmt.Errorf("deterministic field %s: the record has no %s header", p.name, HeaderDeterministicDEK)
				}
				d, err := c.env.readDAEAD(detH)
				if err != nil {
					return fmt.Errorf("deterministic field %s: %w", p.name, err)
				}
				pt, err = d.DecryptDeterministically(ct, []byte(p.name))
				if err != nil {
					return fmt.Errorf("deterministic field %s: decryption failed (wrong key, unknown key version or tampered ciphertext): %w", p.name, err)
				}
			}
			if isString {
				m[leaf] = string(pt)
			} else {
				m[leaf] = pt
			}
		}
	}
	return nil
}

// lookup returns the map holding the field at parts, and its key there;
// nil when a parent is missing or not an object.
func lookup(v any, parts []string) (map[string]any, string) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, ""
	}
	for _, p := range parts[:len(parts)-1] {
		if m, ok = m[p].(map[string]any); !ok {
			return nil, ""
		}
	}
	return m, parts[len(parts)-1]
}

// ciphertext reads an encrypted field: base64 text in a string, raw in
// bytes.
func ciphertext(v any, name string) ([]byte, bool, error) {
	switch x := v.(type) {
	case string:
		b, err := base64.StdEncoding.DecodeString(x)
		if err != nil {
			return nil, false, fmt.Errorf("encrypted field %s: not base64 ciphertext", name)
		}
		return b, true, nil
	case []byte:
		return x, false, nil
	}
	return nil, false, fmt.Errorf("encrypted field %s: holds %T, not the string or bytes of a ciphertext", name, v)
}

// AppendEncodeRecord encrypts v's fields, encodes it, encrypts the payload
// when declared, and returns the headers with the wrapped data keys.
func (c *Codec) AppendEncodeRecord(dst []byte, v any, hs []kgo.RecordHeader) ([]byte, []kgo.RecordHeader, error) {
	_, _, rest := splitHeaders(hs)
	var d *dek
	var dk *detKey
	var err error
	if len(c.fields) > 0 || c.payload {
		if d, err = c.env.writeKey(); err != nil {
			return dst, nil, err
		}
	}
	if len(c.det) > 0 {
		if dk, err = c.env.deterministicKey(); err != nil {
			return dst, nil, err
		}
	}
	if len(c.fields)+len(c.det) > 0 {
		if v, err = c.encryptFields(v, d, dk); err != nil {
			return dst, nil, err
		}
	}
	start := len(dst)
	out, err := c.inner.AppendEncode(dst, v)
	if err != nil {
		return dst, nil, err
	}
	if c.payload {
		ct, err := d.aead.Encrypt(out[start:], nil)
		if err != nil {
			return dst, nil, err
		}
		out = append(out[:start], ct...)
	}
	headers := make([]kgo.RecordHeader, len(rest), len(rest)+2)
	copy(headers, rest)
	if d != nil {
		headers = append(headers, kgo.RecordHeader{Key: HeaderDEK, Value: d.wrapped})
	}
	if dk != nil {
		headers = append(headers, kgo.RecordHeader{Key: HeaderDeterministicDEK, Value: dk.wrapped})
	}
	return out, headers, nil
}

// encryptFields returns v with its declared fields encrypted; the maps on
// the way to them are copied, so v is not modified.
func (c *Codec) encryptFields(v any, d *dek, dk *detKey) (any, error) {
	top, ok := v.(map[string]any)
	if !ok {
		if v == nil {
			return nil, nil
		}
		return nil, fmt.Errorf("encrypted fields need an object value, got %T", v)
	}
	top = maps.Clone(top)
	for i, ps := range [2][]path{c.fields, c.det} {
		for _, p := range ps {
			m := top
			for _, part := range p.parts[:len(p.parts)-1] {
				child, ok := m[part].(map[string]any)
				if !ok {
					m = nil
					break
				}
				child = maps.Clone(child)
				m[part] = child
				m = child
			}
			leaf := p.parts[len(p.parts)-1]
			if m == nil || m[leaf] == nil {
				continue
			}
			var pt []byte
			isString := false
			switch x := m[leaf].(type) {
			case string:
				pt, isString = []byte(x), true
			case []byte:
				pt = x
			default:
				return nil, fmt.Errorf("encrypted field %s: holds %T; only strings and bytes can be encrypted", p.name, m[leaf])
			}
			var ct []byte
			var err error
			if i == 0 {
				ct, err = d.aead.Encrypt(pt, []byte(p.name))
			} else {
				ct, err = dk.daead.EncryptDeterministically(pt, []byte(p.name))
			}
			if err != nil {
				return nil, fmt.Errorf("encrypted field %s: %w", p.name, err)
			}
			if isString {
				m[leaf] = base64.StdEncoding.EncodeToString(ct)
			} else {
				m[leaf] = ct
			}
		}
	}
	return top, nil
}

// Versions of the frames Decode reads.
const (
	// frameVersion starts a value framed by AppendEncode: encrypted by
	// the stored codec (every field randomized).
	frameVersion = 1
	// frameRecord starts a record framed by AppendFramedRecord: its value
	// as consumed, decrypted by the dataset's own codec.
	frameRecord = 2
)

// AppendEncode encodes v apart from any record: a version byte, then the
// record headers AppendEncodeRecord would write (each as a uvarint length
// and bytes: the data key, then the deterministic key, empty when absent),
// then the encrypted value. Deterministic fields are encrypted randomized
// there: stored values are only read back by streamer.
func (c *Codec) AppendEncode(dst []byte, v any) ([]byte, error) {
	val, hs, err := c.stored.AppendEncodeRecord(nil, v, nil)
	if err != nil {
		return dst, err
	}
	return appendFrame(dst, frameVersion, hs, val), nil
}

var _ serde.RecordFramer = (*Codec)(nil)

// AppendFramedRecord checks that a consumed record (value b, headers hs)
// decrypts and decodes, and appends it framed as AppendEncode frames a
// value, with its own version byte: the wrapped data keys of hs, then b as
// consumed, still encrypted (deterministic fields keep their deterministic
// ciphertext). Decode reads it back. Table stores keep rows this way: the
// check costs a decryption, re-encrypting would cost an encryption more and
// a data key wrapped by the KMS at every rotation. The error of a record
// that does not decrypt is DecodeRecord's, and wraps pipes.ErrUnavailable
// when the KMS did not answer.
func (c *Codec) AppendFramedRecord(dst, b []byte, hs []kgo.RecordHeader) ([]byte, error) {
	if _, _, err := c.DecodeRecord(b, hs); err != nil {
		return dst, err
	}
	return appendFrame(dst, frameRecord, hs, b), nil
}

// appendFrame appends a version byte, the wrapped keys among hs and val.
func appendFrame(dst []byte, version byte, hs []kgo.RecordHeader, val []byte) []byte {
	dekH, detH, _ := splitHeaders(hs)
	dst = append(dst, version)
	dst = binary.AppendUvarint(dst, uint64(len(dekH)))
	dst = append(dst, dekH...)
	dst = binary.AppendUvarint(dst, uint64(len(detH)))
	dst = append(dst, detH...)
	return append(dst, val...)
}

// Decode decodes a value AppendEncode or AppendFramedRecord framed.
func (c *Codec) Decode(b []byte) (any, error) {
	if len(b) == 0 || (b[0] != frameVersion && b[0] != frameRecord) {
		return nil, errors.New("encrypted value: not framed by this codec")
	}
	version := b[0]
	b = b[1:]
	var hs []kgo.RecordHeader
	for _, key := range []string{HeaderDEK, HeaderDeterministicDEK} {
		n, k := binary.Uvarint(b)
		if k <= 0 || uint64(len(b)-k) < n {
			return nil, errors.New("encrypted value: truncated frame")
		}
		if n > 0 {
			hs = append(hs, kgo.RecordHeader{Key: key, Value: b[k : k+int(n)]})
		}
		b = b[k+int(n):]
	}
	r := c.stored
	if version == frameRecord {
		r = c
	}
	v, _, err := r.DecodeRecord(b, hs)
	return v, err
}

var _ serde.Redactor = (*Codec)(nil)

// Redact replaces in msg the plaintext of every encrypted field of v (a
// decoded value, or one a pipe made from it) with a marker naming the
// field; with payload encryption, every string in v. It is a best effort
// for errors about records: a pipe's message can only quote values it
// holds, but it may quote them transformed.
func (c *Codec) Redact(v any, msg string) string {
	var secrets []string
	if c.payload {
		secrets = strings_(v, secrets)
	} else {
		for _, p := range append(slices.Clone(c.fields), c.det...) {
			if m, leaf := lookup(v, p.parts); m != nil {
				switch x := m[leaf].(type) {
				case string:
					secrets = append(secrets, x)
				case []byte:
					secrets = append(secrets, string(x))
				}
			}
		}
	}
	slices.SortFunc(secrets, func(a, b string) int { return len(b) - len(a) }) // longest first
	for _, s := range secrets {
		if len(s) >= minRedacted {
			msg = strings.ReplaceAll(msg, s, "[encrypted]")
		}
	}
	return msg
}

// minRedacted is the shortest secret Redact replaces: a shorter one would
// blank out ordinary words of the message, and says little.
const minRedacted = 3

// strings_ appends every string in v.
func strings_(v any, out []string) []string {
	switch x := v.(type) {
	case string:
		out = append(out, x)
	case map[string]any:
		for _, e := range x {
			out = strings_(e, out)
		}
	case []any:
		for _, e := range x {
			out = strings_(e, out)
		}
	}
	return out
}
