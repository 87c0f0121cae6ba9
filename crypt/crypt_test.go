package crypt

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
)

// testKey writes a fresh local keyset in a temp dir.
func testKey(t *testing.T) Key {
	t.Helper()
	ks, err := NewLocalKeyset()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "kek.json"), ks, 0o600); err != nil {
		t.Fatal(err)
	}
	return Key{KMS: "local", URI: "kek.json", Dir: dir}
}

func detKeyset(t *testing.T, k Key) []byte {
	t.Helper()
	kek, err := Open(context.Background(), k)
	if err != nil {
		t.Fatal(err)
	}
	b, err := NewDeterministicKeyset(kek)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jsonCodec(t *testing.T) serde.Codec {
	t.Helper()
	c, err := serde.New("json", "")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestFieldsRoundTrip(t *testing.T) {
	k := testKey(t)
	c := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, detKeyset(t, k)),
		Spec{Fields: []string{"email", "address.street", "missing", "note"}, Deterministic: []string{"email"}})
	in := map[string]any{"email": "ann@example.com", "address": map[string]any{"street": "1 Elm St", "city": "Oslo"}, "n": int64(3), "note": nil}
	hs := []kgo.RecordHeader{{Key: "trace", Value: []byte("x")}, {Key: HeaderDEK, Value: []byte("stale")}}
	b, outHs, err := c.AppendEncodeRecord(nil, in, hs)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"ann@example.com", "1 Elm St"} {
		if bytes.Contains(b, []byte(secret)) {
			t.Fatalf("encoded value holds %q in clear: %s", secret, b)
		}
	}
	if !bytes.Contains(b, []byte("Oslo")) {
		t.Fatalf("a field not declared encrypted was encrypted: %s", b)
	}
	if in["email"] != "ann@example.com" || in["address"].(map[string]any)["street"] != "1 Elm St" {
		t.Fatalf("encoding modified its input: %v", in)
	}
	var keys []string
	for _, h := range outHs {
		keys = append(keys, h.Key)
	}
	if got := strings.Join(keys, ","); got != "trace,"+HeaderDEK+","+HeaderDeterministicDEK {
		t.Fatalf("headers %s", got)
	}
	// A second reader, with only the keyset file, decrypts.
	r := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), Spec{Fields: []string{"email", "address.street", "note"}, Deterministic: []string{"email"}})
	v, rest, err := r.DecodeRecord(b, outHs)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if m["email"] != "ann@example.com" || m["address"].(map[string]any)["street"] != "1 Elm St" || m["n"] != int64(3) || m["note"] != nil {
		t.Fatalf("decoded %v", m)
	}
	if len(rest) != 1 || rest[0].Key != "trace" {
		t.Fatalf("pipes see headers %v", rest)
	}
}

func TestDeterministic(t *testing.T) {
	k := testKey(t)
	det := detKeyset(t, k)
	// Two writers (two replicas) with the same deterministic keyset.
	enc := func(c *Codec, v string) string {
		b, _, err := c.AppendEncodeRecord(nil, map[string]any{"email": v, "name": v}, nil)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := jsonCodec(t).Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		m := v2.(map[string]any)
		return m["email"].(string) + "|" + m["name"].(string)
	}
	s := Spec{Fields: []string{"name"}, Deterministic: []string{"email"}}
	a := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, det), s)
	b := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, det), s)
	x, y := strings.Split(enc(a, "ann"), "|"), strings.Split(enc(b, "ann"), "|")
	if x[0] != y[0] {
		t.Fatal("a deterministic field encrypts differently in two writers")
	}
	if x[1] == y[1] {
		t.Fatal("a randomized field encrypts equal values equally")
	}
	if z := strings.Split(enc(a, "bob"), "|"); z[0] == x[0] {
		t.Fatal("different values, equal ciphertexts")
	}
}

func TestPayloadAndFrame(t *testing.T) {
	k := testKey(t)
	c := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), Spec{Payload: true})
	b, hs, err := c.AppendEncodeRecord([]byte("prefix"), map[string]any{"email": "ann@example.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("prefix")) || bytes.Contains(b, []byte("ann")) {
		t.Fatalf("payload %q", b)
	}
	v, _, err := c.DecodeRecord(b[len("prefix"):], hs)
	if err != nil || v.(map[string]any)["email"] != "ann@example.com" {
		t.Fatalf("decoded %v, %v", v, err)
	}
	// The framed form (stores) is self-contained.
	f, err := c.AppendEncode(nil, map[string]any{"email": "ann@example.com"})
	if err != nil || bytes.Contains(f, []byte("ann")) {
		t.Fatalf("framed %q, %v", f, err)
	}
	// A reader without the deterministic keyset stores records with
	// deterministic fields too (a stream join on an encrypted source).
	fc := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), Spec{Fields: []string{"name"}, Deterministic: []string{"email"}})
	f2, err := fc.AppendEncode(nil, map[string]any{"email": "ann@example.com", "name": "Ann"})
	if err != nil || bytes.Contains(f2, []byte("ann@")) || bytes.Contains(f2, []byte("Ann")) {
		t.Fatalf("framed fields %q, %v", f2, err)
	}
	if v, err := fc.Decode(f2); err != nil || v.(map[string]any)["email"] != "ann@example.com" || v.(map[string]any)["name"] != "Ann" {
		t.Fatalf("framed fields decoded %v, %v", v, err)
	}
	other := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), Spec{Payload: true})
	if v, err := other.Decode(f); err != nil || v.(map[string]any)["email"] != "ann@example.com" {
		t.Fatalf("frame decoded %v, %v", v, err)
	}
	if _, err := other.Decode(f[:len(f)-3]); err == nil {
		t.Fatal("a truncated frame decoded")
	}
}

// TestBadRecords: every way a record cannot be decrypted is an error of
// the record (dead letter), not an outage, and quotes no plaintext.
func TestBadRecords(t *testing.T) {
	k := testKey(t)
	s := Spec{Fields: []string{"email"}}
	c := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), s)
	good, hs, err := c.AppendEncodeRecord(nil, map[string]any{"email": "ann@example.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	field := func(b []byte) string {
		v, _ := jsonCodec(t).Decode(b)
		return v.(map[string]any)["email"].(string)
	}
	ct, _ := base64.StdEncoding.DecodeString(field(good))
	tampered := bytes.Clone(ct)
	tampered[len(tampered)-1] ^= 1
	unknownVersion := bytes.Clone(ct)
	unknownVersion[1] ^= 0xff // the key id of tink's prefix
	wrong := testKey(t)       // another key-encryption key
	wrongReader := NewCodec(jsonCodec(t), NewEnvelope(wrong, Rotation{}, nil), s)
	enc := func(b []byte) []byte {
		return []byte(`{"email":"` + base64.StdEncoding.EncodeToString(b) + `"}`)
	}
	cases := map[string]struct {
		c  *Codec
		b  []byte
		hs []kgo.RecordHeader
	}{
		"wrong key":       {wrongReader, good, hs},
		"tampered":        {c, enc(tampered), hs},
		"unknown version": {c, enc(unknownVersion), hs},
		"no header":       {c, good, nil},
		"plaintext":       {c, []byte(`{"email":"ann@example.com"}`), hs},
		"not base64ish":   {c, []byte(`{"email":"ann@example"}`), hs},
		"number":          {c, []byte(`{"email":42}`), hs},
		"bad header":      {c, good, []kgo.RecordHeader{{Key: HeaderDEK, Value: []byte("junk")}}},
	}
	for name, tc := range cases {
		_, _, err := tc.c.DecodeRecord(tc.b, tc.hs)
		if err == nil {
			t.Errorf("%s: decoded", name)
			continue
		}
		if serde.IsUnavailable(err) {
			t.Errorf("%s: an outage, want the record's fault: %v", name, err)
		}
		if strings.Contains(err.Error(), "ann@") {
			t.Errorf("%s: the error quotes plaintext: %v", name, err)
		}
	}
}

func TestRotation(t *testing.T) {
	k := testKey(t)
	env := NewEnvelope(k, Rotation{Records: 3, Age: time.Hour}, nil)
	now := time.Unix(1000, 0)
	env.Now = func() time.Time { return now }
	c := NewCodec(jsonCodec(t), env, Spec{Fields: []string{"email"}})
	var wrapped [][]byte
	var values [][]byte
	var headers [][]kgo.RecordHeader
	for i := 0; i < 8; i++ {
		if i == 7 {
			now = now.Add(time.Hour) // past the age limit
		}
		b, hs, err := c.AppendEncodeRecord(nil, map[string]any{"email": "ann"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		wrapped = append(wrapped, hs[0].Value)
		values, headers = append(values, b), append(headers, hs)
	}
	distinct := func(i, j int) bool { return !bytes.Equal(wrapped[i], wrapped[j]) }
	if distinct(0, 2) || !distinct(2, 3) || distinct(3, 5) || !distinct(5, 6) || !distinct(6, 7) {
		t.Fatal("data keys did not rotate every 3 records and at the age limit")
	}
	// Old records stay readable: each says its key.
	r := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), Spec{Fields: []string{"email"}})
	for i := range values {
		if v, _, err := r.DecodeRecord(values[i], headers[i]); err != nil || v.(map[string]any)["email"] != "ann" {
			t.Fatalf("record %d: %v %v", i, v, err)
		}
	}
}

// outageKEK is a remote KEK whose service stopped answering.
type outageKEK struct{}

var errDown = errors.New("dial tcp: connection refused")

func (outageKEK) Encrypt(_, _ []byte) ([]byte, error) { return nil, errDown }
func (outageKEK) Decrypt(_, _ []byte) ([]byte, error) { return nil, errDown }

type flakyDriver struct{ down *bool }

func (d flakyDriver) Open(ctx context.Context, k Key) (KEK, error) {
	if *d.down {
		return KEK{}, ErrUnreachable
	}
	kek, err := local{}.Open(ctx, k)
	return kek, err
}

func TestOutages(t *testing.T) {
	if _, err := Open(context.Background(), Key{KMS: "nope"}); !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("unknown kms: %v", err)
	}
	down := true
	Register("test-flaky", flakyDriver{&down})
	k := testKey(t)
	k.KMS = "test-flaky"
	env := NewEnvelope(k, Rotation{}, nil)
	if err := env.Start(context.Background()); !errors.Is(err, pipes.ErrUnavailable) {
		t.Fatalf("start with the kms down: %v", err)
	}
	c := NewCodec(jsonCodec(t), env, Spec{Fields: []string{"email"}})
	if _, _, err := c.AppendEncodeRecord(nil, map[string]any{"email": "a"}, nil); !serde.IsUnavailable(err) {
		t.Fatalf("encode with the kms down: %v", err)
	}
	down = false
	b, hs, err := c.AppendEncodeRecord(nil, map[string]any{"email": "a"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// A remote key that stops answering mid-run: unwrapping a new data key
	// is an outage, not the record's fault.
	kek := KEK{AEAD: outageKEK{}, Outage: func(err error) bool { return errors.Is(err, errDown) }}
	r := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), Spec{Fields: []string{"email"}})
	r.env.kek = &kek
	if _, _, err := r.DecodeRecord(b, hs); !serde.IsUnavailable(err) {
		t.Fatalf("decode with the kms down: %v", err)
	}
}

// TestAvro: in avro, an encrypted string field holds base64 text and an
// encrypted bytes field the raw ciphertext; the schema stays the same.
func TestAvro(t *testing.T) {
	avro, err := serde.NewFromSchema("avro", []byte(`{"type":"record","name":"person","fields":[
		{"name":"email","type":"string"},{"name":"ssn","type":"bytes"},{"name":"age","type":"long"},
		{"name":"note","type":["null","string"],"default":null}]}`))
	if err != nil {
		t.Fatal(err)
	}
	k := testKey(t)
	c := NewCodec(avro, NewEnvelope(k, Rotation{}, nil), Spec{Fields: []string{"email", "ssn", "note"}})
	in := map[string]any{"email": "ann@example.com", "ssn": []byte("123-45-6789"), "age": int64(40), "note": nil}
	b, hs, err := c.AppendEncodeRecord(nil, in, nil)
	if err != nil {
		t.Fatal(err)
	}
	noPlain := func(b []byte) {
		t.Helper()
		if bytes.Contains(b, []byte("ann@")) || bytes.Contains(b, []byte("123-45")) {
			t.Fatalf("avro value holds plaintext: %q", b)
		}
	}
	noPlain(b)
	raw, err := avro.Decode(b) // the ciphertext as any avro reader sees it
	if err != nil {
		t.Fatal(err)
	}
	if _, err := base64.StdEncoding.DecodeString(raw.(map[string]any)["email"].(string)); err != nil {
		t.Fatalf("the string field is not base64: %v", err)
	}
	v, _, err := c.DecodeRecord(b, hs)
	if err != nil {
		t.Fatal(err)
	}
	m := v.(map[string]any)
	if m["email"] != "ann@example.com" || string(m["ssn"].([]byte)) != "123-45-6789" || m["age"] != int64(40) || m["note"] != nil {
		t.Fatalf("decoded %v", m)
	}
}

// TestFramedRecord: a table row is stored as consumed, framed with its
// wrapped keys: still encrypted, deterministic fields included, and read
// back in plaintext; a row that does not decrypt is refused, and an outage
// says so.
func TestFramedRecord(t *testing.T) {
	k := testKey(t)
	s := Spec{Fields: []string{"name"}, Deterministic: []string{"email"}}
	w := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, detKeyset(t, k)), s)
	in := map[string]any{"email": "ann@example.com", "name": "Annabel", "tier": "gold"}
	b, hs, err := w.AppendEncodeRecord(nil, in, []kgo.RecordHeader{{Key: "trace", Value: []byte("t1")}})
	if err != nil {
		t.Fatal(err)
	}
	r := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), s) // a reader: no deterministic keyset
	f, err := r.AppendFramedRecord([]byte("x"), b, hs)
	if err != nil {
		t.Fatal(err)
	}
	if f[0] != 'x' || f[1] != frameRecord || bytes.Contains(f, []byte("ann@")) || bytes.Contains(f, []byte("Annabel")) {
		t.Fatalf("framed %q", f)
	}
	if !bytes.Contains(f, b) {
		t.Fatal("the frame does not hold the value as consumed")
	}
	v, err := r.Decode(f[1:])
	if err != nil {
		t.Fatal(err)
	}
	if m := v.(map[string]any); m["email"] != "ann@example.com" || m["name"] != "Annabel" || m["tier"] != "gold" {
		t.Fatalf("decoded %v", v)
	}
	if _, err := r.Decode(f[1 : len(f)-4]); err == nil {
		t.Fatal("a truncated frame decoded")
	}

	// Rows that do not decrypt are refused, as the record's fault.
	v0, _ := jsonCodec(t).Decode(b)
	m0 := v0.(map[string]any)
	ct, _ := base64.StdEncoding.DecodeString(m0["name"].(string))
	ct[len(ct)-1] ^= 1
	m0["name"] = base64.StdEncoding.EncodeToString(ct)
	tampered, _ := jsonCodec(t).AppendEncode(nil, m0)
	wrong := NewCodec(jsonCodec(t), NewEnvelope(testKey(t), Rotation{}, nil), s)
	for name, tc := range map[string]struct {
		c  *Codec
		b  []byte
		hs []kgo.RecordHeader
	}{
		"tampered":  {r, tampered, hs},
		"wrong key": {wrong, b, hs},
		"no header": {r, b, nil},
		"plaintext": {r, []byte(`{"email":"ann@example.com","name":"Annabel"}`), hs},
	} {
		got, err := tc.c.AppendFramedRecord(nil, tc.b, tc.hs)
		if err == nil || got != nil {
			t.Errorf("%s: framed %q, %v", name, got, err)
			continue
		}
		if serde.IsUnavailable(err) || strings.Contains(err.Error(), "ann@") || strings.Contains(err.Error(), "Annabel") {
			t.Errorf("%s: %v", name, err)
		}
	}

	// A key-encryption key that does not answer is an outage.
	kek := KEK{AEAD: outageKEK{}, Outage: func(err error) bool { return errors.Is(err, errDown) }}
	down := NewCodec(jsonCodec(t), NewEnvelope(k, Rotation{}, nil), s)
	down.env.kek = &kek
	if _, err := down.AppendFramedRecord(nil, b, hs); !serde.IsUnavailable(err) {
		t.Fatalf("framing with the kms down: %v", err)
	}
}
