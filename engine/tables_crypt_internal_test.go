package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

type skipRecorder struct {
	mu   sync.Mutex
	rows map[string]int
}

func (r *skipRecorder) OnTableRowSkipped(table string, _ int32) {
	r.mu.Lock()
	r.rows[table]++
	r.mu.Unlock()
}

// syncBuffer is a log sink safe for the table loads' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const encryptedTableTopology = `
name: enctable
datasets:
  orders:    {topic: orders}
  customers:
    topic: customers
    table: partitioned
    schema: customer.json
    encryption:
      fields: [name]
      deterministic: [email]
      key: {kms: local, uri: unused.json}
  out: {topic: out, create: {partitions: 1}, plaintext: [cname, contact]}
pipes:
  customer: {from: orders, to: out, join: {table: customers, fields: {cname: name, contact: email}}}
`

const customerSchema = `{"type": "object", "properties": {"name": {"type": "string"}, "email": {"type": "string"}, "tier": {"type": "string"}}}`

// TestEncryptedTable: the rows of an encrypted table are stored as
// consumed, still encrypted, and looked up in plaintext; a row that does
// not decrypt is skipped (its key keeps its previous value), logged by
// topic, partition and offset without its value, and counted.
func TestEncryptedTable(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "orders", "customers"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	top, err := topology.Compile("t.yaml", []byte(encryptedTableTopology), fstest.MapFS{"customer.json": {Data: []byte(customerSchema)}}, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	hc := top.Datasets["customers"].Codec.(serde.HeaderCodec)
	row := func(key, name, email string) *kgo.Record {
		t.Helper()
		b, hs, err := hc.AppendEncodeRecord(nil, map[string]any{"name": name, "email": email, "tier": "gold"}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &kgo.Record{Topic: "customers", Key: []byte(key), Value: b, Headers: hs}
	}
	good := row("c1", "Annabel Lee", "ann@example.com")
	kept := row("c2", "Bobby Ray", "bob@example.com")
	tampered := row("c2", "Mallory Evil", "mal@example.com") // an update of c2 that does not decrypt
	tampered.Value = bytes.Replace(tampered.Value, []byte(`"name":"`), []byte(`"name":"AAAA`), 1)
	noKey := row("c3", "Carol King", "carol@example.com")
	noKey.Headers = nil // no wrapped data key
	pcl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer pcl.Close()
	if err := pcl.ProduceSync(context.Background(), good, kept, tampered, noKey).FirstErr(); err != nil {
		t.Fatal(err)
	}

	logs := &syncBuffer{}
	skips := &skipRecorder{rows: map[string]int{}}
	o := Options{Brokers: brokers, StateDir: t.TempDir(), Logger: slog.New(slog.NewTextHandler(logs, nil))}
	m := newMaterialiser(top, &o)
	defer m.close()
	s := newTableSyncer(top, &o, m, sortHooks([]Hook{skips}))
	defer s.stop()
	tbl, err := s.OpenTable("customers", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer tbl.(io.Closer).Close()
	poll := kgo.Fetches{{Topics: []kgo.FetchTopic{{Topic: "orders", Partitions: []kgo.FetchPartition{{Partition: 0, Records: []*kgo.Record{{Topic: "orders"}}}}}}}}
	if err := s.sync(context.Background(), poll); err != nil {
		t.Fatal(err)
	}

	// Lookups see plaintext.
	v, ok, err := tbl.Get([]byte("c1"))
	if err != nil || !ok {
		t.Fatalf("c1: %v %v", ok, err)
	}
	if m := v.(map[string]any); m["name"] != "Annabel Lee" || m["email"] != "ann@example.com" || m["tier"] != "gold" {
		t.Fatalf("c1: %v", v)
	}
	if v, ok, err := tbl.Get([]byte("c2")); err != nil || !ok || v.(map[string]any)["name"] != "Bobby Ray" {
		t.Fatalf("c2 after an update that does not decrypt: %v %v %v, want its previous value", v, ok, err)
	}
	if v, ok, err := tbl.Get([]byte("c3")); err != nil || ok {
		t.Fatalf("c3, whose only row does not decrypt: %v %v %v, want no row", v, ok, err)
	}

	// The store holds the rows encrypted, in a directory of its own.
	tp := s.parts[tableKey{"customers", 0}]
	if tp.part.name != "table-customers@encrypted" {
		t.Errorf("store directory %q: want table-customers@encrypted, apart from a plain table's", tp.part.name)
	}
	for _, k := range []string{"c1", "c2"} {
		raw, ok, err := tp.get([]byte(k))
		if err != nil || !ok {
			t.Fatalf("stored %s: %v %v", k, ok, err)
		}
		for _, secret := range []string{"Annabel", "ann@", "Bobby", "bob@"} {
			if bytes.Contains(raw, []byte(secret)) {
				t.Errorf("the store holds %q in clear under %s: %q", secret, k, raw)
			}
		}
		if !bytes.Contains(raw, []byte(`"tier":"gold"`)) {
			t.Errorf("stored %s: %q, want the value as consumed", k, raw)
		}
	}

	// Skips: counted, logged by offset, without values.
	if skips.rows["customers"] != 2 {
		t.Errorf("skipped rows counted: %v, want 2 of customers", skips.rows)
	}
	log := logs.String()
	for _, want := range []string{"offset=2", "offset=3", "topic=customers"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log does not say %s:\n%s", want, log)
		}
	}
	for _, secret := range []string{"Mallory", "mal@", "Carol", "carol@"} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds %q:\n%s", secret, log)
		}
	}
}

// TestEncryptedTableOutage: a key-encryption key that does not answer
// while a table is read is an outage (the engine pauses and retries), not
// a row to skip.
func TestEncryptedTableOutage(t *testing.T) {
	top, err := topology.Compile("t.yaml", []byte(encryptedTableTopology), fstest.MapFS{"customer.json": {Data: []byte(customerSchema)}}, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	d := top.Datasets["customers"]
	b, hs, err := d.Codec.(serde.HeaderCodec).AppendEncodeRecord(nil, map[string]any{"name": "Annabel Lee", "email": "ann@example.com"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Codec = outageCodec{d.Codec}
	skips := &skipRecorder{rows: map[string]int{}}
	s := &tableSyncer{log: slog.New(slog.NewTextHandler(io.Discard, nil)), skips: []TableSkipHook{skips}}
	tp := &tablePart{ds: d, key: tableKey{"customers", 0}}
	_, err = s.framedRows(tp, []*kgo.Record{{Key: []byte("c1"), Value: b, Headers: hs}})
	if !errors.Is(err, pipes.ErrUnavailable) || skips.rows["customers"] != 0 {
		t.Fatalf("framing with the kms down: %v, %v skipped; want an outage, nothing skipped", err, skips.rows)
	}
}

// outageCodec frames nothing: its KMS is down.
type outageCodec struct{ serde.Codec }

func (outageCodec) AppendFramedRecord(dst, _ []byte, _ []kgo.RecordHeader) ([]byte, error) {
	return dst, serde.ErrUnavailable
}
