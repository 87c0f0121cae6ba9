package integration

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/crypt"
	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/state"
)

// encryptedTableTopology enriches plaintext orders from a table of
// customers whose name and email are encrypted, and writes them encrypted.
const encryptedTableTopology = `
name: {{.ID}}
processing:
  commit_interval: 100ms
datasets:
  orders:
    topic: {{topic "orders"}}
    schema: order.json
  customers:
    topic: {{topic "customers"}}
    table: partitioned
    schema: customer.json
    encryption:
      fields: [name]
      deterministic: [email]
      key: {kms: local, uri: kek.json}
  enriched:
    topic: {{topic "enriched"}}
    create: {partitions: 2}
    encryption:
      fields: [cname, contact]
      key: {kms: local, uri: kek.json}
pipes:
  enrich:
    from: orders
    to: enriched
    join: {table: customers, type: left, fields: {cname: name, contact: email, tier: tier}}
`

const orderSchema = `{"type":"object","required":["order","customer"],"properties":{"order":{"type":"string"},"customer":{"type":"string"},"amount":{"type":"integer"}}}`

const customerTableSchema = `{"type":"object","required":["name","email"],"properties":{"name":{"type":"string"},"email":{"type":"string"},"tier":{"type":"string"}}}`

// TestEncryptedTableJoin (issue 17): a join against a table whose dataset
// is encrypted, on a real broker. The joined output decrypts to the
// customers' plaintext; no topic of the job, and neither the table's
// Pebble stores (read back) nor any file of the replica's state
// directory, holds a plaintext of the encrypted fields; a table row that
// does not decrypt is skipped (its orders join nothing), logged by offset.
func TestEncryptedTableJoin(t *testing.T) {
	requireIntegration(t)
	e := newEnv(t)
	e.createTopic("orders", 2)
	e.createTopic("customers", 2)
	key := keyFiles(t, e.dir)
	file := e.writeTopology(encryptedTableTopology, map[string]string{"customer.json": customerTableSchema, "order.json": orderSchema})
	det, err := os.ReadFile(filepath.Join(e.dir, "email-siv.json"))
	if err != nil {
		t.Fatal(err)
	}
	jsonc, _ := serde.New("json", "")
	customers := crypt.NewCodec(jsonc, crypt.NewEnvelope(key, crypt.Rotation{Records: 30}, det), crypt.Spec{Fields: []string{"name"}, Deterministic: []string{"email"}})
	const n = 100
	var secrets []string
	var rows []*kgo.Record
	for i := range n {
		name, email := fmt.Sprintf("Customer Name%03d", i), fmt.Sprintf("cust%03d@mail.example", i)
		secrets = append(secrets, name, email)
		b, hs, err := customers.AppendEncodeRecord(nil, map[string]any{"name": name, "email": email, "tier": []string{"gold", "basic"}[i%2]}, nil)
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, &kgo.Record{Key: []byte(fmt.Sprintf("c%03d", i)), Value: b, Headers: hs})
	}
	// A row whose name's ciphertext was altered.
	b, hs, err := customers.AppendEncodeRecord(nil, map[string]any{"name": "Tampered Customer", "email": "tampered@mail.example"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	secrets = append(secrets, "Tampered Customer", "tampered@mail.example")
	b = bytes.Replace(b, []byte(`"name":"`), []byte(`"name":"AAAA`), 1)
	rows = append(rows, &kgo.Record{Key: []byte("c-bad"), Value: b, Headers: hs})
	e.produce("customers", rows)

	var orders []*kgo.Record
	for i := range 2 * n {
		c := fmt.Sprintf("c%03d", i%n)
		if i == 2*n-1 {
			c = "c-bad"
		}
		orders = append(orders, &kgo.Record{Key: []byte(c), Value: []byte(fmt.Sprintf(`{"order":"o%d","customer":%q,"amount":%d}`, i, c, i))})
	}
	e.produce("orders", orders)

	r := e.startArgs(file, "r1", "--metrics-addr", "off", "--purge-interval", "off")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	waitFor(t, "the orders to be enriched", 3*time.Minute, func() bool {
		c, err := topicread.Count(ctx, brokers, e.topic("enriched"))
		return err == nil && int(c[e.topic("enriched")]) >= len(orders)
	})
	if _, code := r.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.logText())
	}
	var faults []string

	// The output, decrypted by a reader holding only the KEK.
	reader := crypt.NewCodec(jsonc, crypt.NewEnvelope(key, crypt.Rotation{}, nil), crypt.Spec{Fields: []string{"cname", "contact"}})
	got := map[string]bool{}
	err = topicread.All(ctx, brokers, 3*time.Second, func(rec *kgo.Record) {
		raw := string(rec.Key) + string(rec.Value)
		for _, h := range rec.Headers {
			raw += string(h.Value)
		}
		for _, s := range secrets {
			if strings.Contains(raw, s) {
				faults = append(faults, fmt.Sprintf("%s@%d holds %q in clear", rec.Topic, rec.Offset, s))
			}
		}
		v, _, err := reader.DecodeRecord(rec.Value, rec.Headers)
		if err != nil {
			faults = append(faults, fmt.Sprintf("output does not decrypt: %v", err))
			return
		}
		m := v.(map[string]any)
		order := m["order"].(string)
		got[order] = true
		if m["customer"] == "c-bad" {
			if m["cname"] != nil || m["contact"] != nil {
				faults = append(faults, fmt.Sprintf("%s joined the row that does not decrypt: %v", order, m))
			}
			return
		}
		var i int
		fmt.Sscanf(m["customer"].(string), "c%d", &i)
		if m["cname"] != fmt.Sprintf("Customer Name%03d", i) || m["contact"] != fmt.Sprintf("cust%03d@mail.example", i) || m["tier"] != []string{"gold", "basic"}[i%2] {
			faults = append(faults, fmt.Sprintf("output %v: not the plaintext of its customer", m))
		}
	}, e.topic("enriched"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(orders) {
		faults = append(faults, fmt.Sprintf("%d distinct outputs, want %d", len(got), len(orders)))
	}

	// The table's stores, read back: every row, still encrypted.
	stateDir := filepath.Join(e.dir, "state", "r1")
	stored := 0
	for p := range int32(2) {
		st, err := state.OpenPebble(state.Dir(stateDir, "streamer-"+e.id, "table-customers", p))
		if err != nil {
			t.Fatal(err)
		}
		err = st.Range(nil, nil, func(k, v []byte) bool {
			stored++
			for _, s := range secrets {
				if bytes.Contains(v, []byte(s)) {
					faults = append(faults, fmt.Sprintf("table store %d key %s holds %q in clear", p, k, s))
				}
			}
			return true
		})
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if stored != n {
		faults = append(faults, fmt.Sprintf("the table stores hold %d rows, want %d (the row that does not decrypt skipped)", stored, n))
	}
	// And every file of the state directory, raw (WAL, tables, manifests).
	files := 0
	err = filepath.WalkDir(stateDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				faults = append(faults, fmt.Sprintf("%s holds %q in clear", path, s))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	log := r.logText()
	if !strings.Contains(log, "a table row does not decrypt") || !strings.Contains(log, e.topic("customers")) || !strings.Contains(log, "offset") {
		faults = append(faults, "the log does not report the row that does not decrypt, with its topic and offset")
	}
	for _, s := range secrets {
		if strings.Contains(log, s) {
			faults = append(faults, fmt.Sprintf("the replica's log holds %q", s))
		}
	}
	t.Logf("%d outputs, %d table rows stored, %d state files scanned", len(got), stored, files)
	if len(faults) > 0 {
		t.Fatalf("%d faults; the first:\n%s", len(faults), strings.Join(faults[:min(10, len(faults))], "\n"))
	}
}
