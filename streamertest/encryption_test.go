package streamertest_test

import (
	"bytes"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/streamerio/streamer/crypt"
	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/streamertest"
	"github.com/streamerio/streamer/topology"
)

// secrets are the plaintexts of encrypted fields the tests feed.
var secrets = []string{"ann@example.com", "Ann Lee", "1 Elm St", "bob@example.com"}

func noSecrets(t *testing.T, where string, b []byte) {
	t.Helper()
	for _, s := range secrets {
		if bytes.Contains(b, []byte(s)) {
			t.Errorf("%s holds %q in clear: %q", where, s, b)
		}
	}
}

// TestEncryptedExample runs the example through the driver with test keys:
// what reaches the sink's topic is encrypted, with its data keys in
// headers, and decrypts to the expected plaintext.
func TestEncryptedExample(t *testing.T) {
	d, err := streamertest.Load("../examples/encrypted-signups/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ann := map[string]any{"user_id": "u-1", "email": "ann@example.com", "name": "Ann Lee", "address": map[string]any{"street": "1 Elm St", "city": "Oslo"}, "marketing": true}
	if err := d.Input("signups", streamertest.Record{Key: streamertest.Key("u-1"), Value: ann}); err != nil {
		t.Fatal(err)
	}
	raw := d.RawOutput("mailing-list")
	if len(raw) != 1 {
		t.Fatalf("%d records on mailing-list", len(raw))
	}
	noSecrets(t, "mailing-list's value", raw[0].Value)
	var keys []string
	for _, h := range raw[0].Headers {
		keys = append(keys, h.Key)
	}
	if !slices.Contains(keys, crypt.HeaderDEK) || !slices.Contains(keys, crypt.HeaderDeterministicDEK) {
		t.Fatalf("mailing-list's headers %v lack the wrapped data keys", keys)
	}
	out, err := d.Output("mailing-list")
	if err != nil {
		t.Fatal(err)
	}
	if got := out[0].Value.(map[string]any); got["email"] != "ann@example.com" || got["name"] != "Ann Lee" {
		t.Fatalf("decrypted %v", got)
	}
	if len(out[0].Headers) != 0 {
		t.Fatalf("a reader sees the data key headers: %v", out[0].Headers)
	}
}

const encryptedJoin = `
name: encrypted-join
dead_letter: dlq
datasets:
  signups:
    topic: signups
    partitions: 3
    schema: signup.json
    encryption: {fields: [name, email], key: {kms: aws, uri: "aws-kms://arn:aws:kms:eu-west-1:1:key/x"}}
  consents:
    topic: consents
    partitions: 2
    schema: consent.json
    encryption: {deterministic: [email], key: {kms: gcp, uri: "gcp-kms://projects/p/locations/l/keyRings/r/cryptoKeys/k"}}
  joined:
    topic: joined
    encryption:
      fields: [name]
      deterministic: [email, consent_email]
      key: {kms: local, uri: kek.json}
  dlq: {topic: dlq, value: bytes}
pipes:
  join:
    from: [signups, consents]
    to: joined
    stream_join:
      window: 1h
      time: ts
      fields: {consent_email: email, channel: channel}
`

// TestEncryptedStreamJoin joins two encrypted streams of different
// partition counts: the compiler brings them together through a merge
// topic, and the join keeps waiting records in a store. Neither the merge
// topic, nor the sink, nor the store holds a plaintext; the test keys
// stand in for an AWS and a GCP key without either.
func TestEncryptedStreamJoin(t *testing.T) {
	fsys := fstest.MapFS{
		"signup.json":  {Data: []byte(`{"type":"object","properties":{"email":{"type":"string"},"name":{"type":"string"},"ts":{"type":"string"}}}`)},
		"consent.json": {Data: []byte(`{"type":"object","properties":{"email":{"type":"string"},"channel":{"type":"string"},"ts":{"type":"string"}}}`)},
	}
	top, err := topology.Compile("join.yaml", []byte(encryptedJoin), fsys, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	k := streamertest.Key("u-1")
	if err := d.Input("signups", streamertest.Record{Key: k, Value: map[string]any{"email": "ann@example.com", "name": "Ann Lee", "ts": "2026-01-01T10:00:00Z"}}); err != nil {
		t.Fatal(err)
	}
	if err := d.Input("consents", streamertest.Record{Key: k, Value: map[string]any{"email": "ann@example.com", "channel": "mail", "ts": "2026-01-01T10:01:00Z"}}); err != nil {
		t.Fatal(err)
	}
	out, err := d.Output("joined")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 {
		t.Fatalf("joined: %v", out)
	}
	v := out[0].Value.(map[string]any)
	if v["email"] != "ann@example.com" || v["consent_email"] != "ann@example.com" || v["name"] != "Ann Lee" || v["channel"] != "mail" {
		t.Fatalf("joined %v", v)
	}
	for _, name := range slices.Sorted(maps.Keys(top.Datasets)) {
		for _, r := range d.RawOutput(name) {
			noSecrets(t, "topic "+r.Topic, r.Value)
		}
	}
	stores := 0
	for _, p := range top.Pipes {
		for _, s := range p.Stores {
			for part := range int32(3) {
				_ = d.State(s, part, func(key, value []byte) bool { // partitions without records have no store
					stores++
					noSecrets(t, "store "+s, value)
					return true
				})
			}
		}
	}
	if stores == 0 {
		t.Fatal("the join stored nothing: the store check checked nothing")
	}
}

const failing = `
name: failing
dead_letter: dlq
datasets:
  in:
    topic: in
    schema: signup.json
    encryption: {fields: [name, email], key: {kms: local, uri: kek.json}}
  out: {topic: out, plaintext: [name, email]}
  dlq: {topic: dlq, value: bytes}
pipes:
  parse:
    from: in
    to: out
    map:
      compute: {n: 'int(name ?? "")'}
`

// TestEncryptedErrorsRedacted: a pipe failing on a decrypted value says
// why without the value: the dead letter's reason is redacted, and its
// value is the record as consumed (encrypted).
func TestEncryptedErrorsRedacted(t *testing.T) {
	fsys := fstest.MapFS{"signup.json": {Data: []byte(`{"type":"object","properties":{"email":{"type":"string"},"name":{"type":"string"}}}`)}}
	top, err := topology.Compile("failing.yaml", []byte(failing), fsys, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	if err := d.Input("in", streamertest.Record{Value: map[string]any{"email": "ann@example.com", "name": "Ann Lee"}}); err != nil {
		t.Fatal(err)
	}
	dead := d.DeadLetters()
	if len(dead) != 1 {
		t.Fatalf("%d dead letters", len(dead))
	}
	t.Logf("reason: %s", dead[0].Error)
	if !strings.Contains(dead[0].Error, "[encrypted]") {
		t.Errorf("the reason %q does not show the redaction: the test checks nothing", dead[0].Error)
	}
	noSecrets(t, "the dead letter's reason", []byte(dead[0].Error))
	raw := d.RawOutput("dlq")
	if len(raw) != 1 {
		t.Fatalf("%d raw dead letters", len(raw))
	}
	noSecrets(t, "the dead letter's value", raw[0].Value)
}

const vaultDown = `
name: vault-down
dead_letter: dlq
datasets:
  in:
    topic: in
    schema: signup.json
    encryption: {fields: [email], key: {kms: vault, uri: "hcvault://127.0.0.1:1/transit/keys/k", credentials: token}}
  out: {topic: out, plaintext: [email]}
  dlq: {topic: dlq, value: bytes}
pipes:
  copy:
    from: in
    to: out
    filter: {when: "true"}
`

// TestKMSOutageIsNotTheRecordsFault: when the KMS does not answer while a
// data key must be unwrapped, the batch fails as unavailable (the engine
// aborts, pauses and reads it again) and nothing is dead-lettered.
func TestKMSOutageIsNotTheRecordsFault(t *testing.T) {
	fsys := fstest.MapFS{"signup.json": {Data: []byte(`{"type":"object","properties":{"email":{"type":"string"}}}`)}}
	top, err := topology.Compile("down.yaml", []byte(vaultDown), fsys) // the real keys: no WithTestKeys
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	raw := `{"email":"AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="}`
	err = d.Input("in", streamertest.Record{Raw: []byte(raw), Headers: map[string]string{crypt.HeaderDEK: "wrapped"}})
	if !errors.Is(err, pipes.ErrUnavailable) {
		t.Fatalf("got %v, want an error wrapping pipes.ErrUnavailable", err)
	}
	if n := len(d.DeadLetters()); n != 0 {
		t.Fatalf("%d dead letters: an outage must not dead-letter the stream", n)
	}
}

const rekeyed = `
name: rekeyed
datasets:
  signups:
    topic: signups
    partitions: 3
    schema: signup.json
    encryption: {fields: [name, email], key: {kms: local, uri: kek.json}}
  by-city: {}
  counts: {topic: counts}
pipes:
  rekey:
    from: signups
    to: by-city
    map:
      key: city
  count:
    from: by-city
    to: counts
    aggregate:
      fields:
        n: {op: count}
`

// TestEncryptedRepartition: records of an encrypted source re-keyed in
// memory go through a repartition topic; the fields encrypted on the
// source stay encrypted there (the compiler gives the in-memory dataset
// the source's keys).
func TestEncryptedRepartition(t *testing.T) {
	fsys := fstest.MapFS{"signup.json": {Data: []byte(`{"type":"object","properties":{"email":{"type":"string"},"name":{"type":"string"},"city":{"type":"string"}}}`)}}
	top, err := topology.Compile("rekeyed.yaml", []byte(rekeyed), fsys, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	for i, u := range []string{"u1", "u2", "u3"} {
		v := map[string]any{"email": secrets[0], "name": secrets[1], "city": []string{"Oslo", "Oslo", "Rome"}[i]}
		if err := d.Input("signups", streamertest.Record{Key: streamertest.Key(u), Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	r := top.Datasets["by-city-repartition"]
	if r == nil {
		t.Fatal("no repartition dataset: the test checks nothing")
	}
	raw := d.RawOutput(r.Name)
	if len(raw) != 3 {
		t.Fatalf("%d records on the repartition topic", len(raw))
	}
	for _, rec := range raw {
		noSecrets(t, "repartition topic", rec.Value)
	}
	out, err := d.Output("counts")
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]any{}
	for _, o := range out {
		last[*o.Key] = o.Value.(map[string]any)["n"]
	}
	if last["Oslo"] != int64(2) || last["Rome"] != int64(1) {
		t.Fatalf("counts %v", last)
	}
}

// TestEncryptedTable: the driver runs a join with an encrypted table under
// test keys, rows given in plaintext as for any table.
func TestEncryptedTable(t *testing.T) {
	fsys := fstest.MapFS{
		"order.json":    {Data: []byte(`{"type":"object","properties":{"order":{"type":"string"}}}`)},
		"customer.json": {Data: []byte(`{"type":"object","properties":{"name":{"type":"string"},"email":{"type":"string"}}}`)},
	}
	top, err := topology.Compile("table.yaml", []byte(`
name: table
datasets:
  orders: {topic: orders, schema: order.json}
  customers:
    topic: customers
    table: partitioned
    schema: customer.json
    encryption: {fields: [name], deterministic: [email], key: {kms: aws, uri: "aws-kms://arn:aws:kms:eu-west-1:1:key/x"}}
  out:
    topic: out
    encryption: {fields: [name, email], key: {kms: aws, uri: "aws-kms://arn:aws:kms:eu-west-1:1:key/x"}}
pipes:
  enrich: {from: orders, to: out, join: {table: customers, fields: {name: name, email: email}}}
`), fsys, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	d := streamertest.New(top)
	defer d.Close()
	if err := d.Table("customers", "c1", map[string]any{"name": "Ann Lee", "email": "ann@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := d.Input("orders", streamertest.Record{Key: streamertest.Key("c1"), Value: map[string]any{"order": "o1"}}); err != nil {
		t.Fatal(err)
	}
	out, err := d.Output("out")
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 1 || out[0].Value.(map[string]any)["name"] != "Ann Lee" || out[0].Value.(map[string]any)["email"] != "ann@example.com" {
		t.Fatalf("out: %v", out)
	}
	for _, r := range d.RawOutput("out") {
		noSecrets(t, "topic out", r.Value)
	}
}
