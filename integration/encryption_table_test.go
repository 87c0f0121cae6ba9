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
  named: {}
  stats:
    topic: {{topic "stats"}}
    create: {partitions: 2}
    encryption:
      fields: [last_name]
      key: {kms: local, uri: kek.json}
pipes:
  enrich:
    from: orders
    to: enriched
    join: {table: customers, type: left, fields: {cname: name, contact: email, tier: tier}}
  name:
    from: orders
    to: named
    join: {table: customers, fields: {cname: name}}
  per-customer:
    from: named
    to: stats
    aggregate:
      fields:
        orders: {op: count}
        last_name: {op: last, of: cname}
`

const orderSchema = `{"type":"object","required":["order","customer"],"properties":{"order":{"type":"string"},"customer":{"type":"string"},"amount":{"type":"integer"}}}`

const customerTableSchema = `{"type":"object","required":["name","email"],"properties":{"name":{"type":"string"},"email":{"type":"string"},"tier":{"type":"string"}}}`

// TestEncryptedTableJoin (issue 17): a join against a table whose dataset
// is encrypted, and an aggregate of what it joined, on a real broker. The
// outputs decrypt to the customers' plaintext; no topic of the job (the
// aggregate's changelog included), and neither the table's and the
// aggregate's Pebble stores (read back) nor any file of the replica's
// state directory, holds a plaintext of the encrypted fields; a table row
// that does not decrypt is skipped (its orders join nothing), logged; a
// replica with an empty state directory restores the encrypted aggregate
// from its changelog and counts on.
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
	waitFor(t, "the statistics", time.Minute, func() bool {
		c, err := topicread.Count(ctx, brokers, e.topic("stats"))
		return err == nil && int(c[e.topic("stats")]) >= len(orders)-1 // c-bad joins nothing
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

	// The statistics, decrypted: the last count of each customer, and its name.
	statsReader := crypt.NewCodec(jsonc, crypt.NewEnvelope(key, crypt.Rotation{}, nil), crypt.Spec{Fields: []string{"last_name"}})
	// readCounts decrypts the statistics, calls check on each, and returns
	// the last count of each customer.
	readCounts := func(check func(key []byte, m map[string]any)) map[string]float64 {
		counts := map[string]float64{}
		err := topicread.All(ctx, brokers, 3*time.Second, func(rec *kgo.Record) {
			v, _, err := statsReader.DecodeRecord(rec.Value, rec.Headers)
			if err != nil {
				faults = append(faults, fmt.Sprintf("statistics do not decrypt: %v", err))
				return
			}
			m := v.(map[string]any)
			check(rec.Key, m)
			var c float64
			fmt.Sscan(fmt.Sprint(m["orders"]), &c) // int64 or float64, as json decodes it
			counts[string(rec.Key)] = max(counts[string(rec.Key)], c)
		}, e.topic("stats"))
		if err != nil {
			t.Fatal(err)
		}
		return counts
	}
	counts := readCounts(func(key []byte, m map[string]any) {
		var i int
		fmt.Sscanf(string(key), "c%d", &i)
		if m["last_name"] != fmt.Sprintf("Customer Name%03d", i) {
			faults = append(faults, fmt.Sprintf("statistics of %s: %v, not its customer's name", key, m))
		}
	})
	for i := range n {
		if want := float64(2 - i/(n-1)); counts[fmt.Sprintf("c%03d", i)] != want {
			faults = append(faults, fmt.Sprintf("c%03d counted %v orders, want %v", i, counts[fmt.Sprintf("c%03d", i)], want))
		}
	}

	// Every topic of the job, read raw: sources, sinks, the changelog.
	topics, err := e.admin.ListTopics(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var mine []string
	for _, name := range topics.Names() {
		if strings.Contains(name, e.id) {
			mine = append(mine, name)
		}
	}
	perTopic := map[string]int{}
	err = topicread.All(ctx, brokers, 3*time.Second, func(rec *kgo.Record) {
		perTopic[rec.Topic]++
		raw := string(rec.Key) + string(rec.Value)
		for _, h := range rec.Headers {
			raw += string(h.Value)
		}
		for _, s := range secrets {
			if strings.Contains(raw, s) {
				faults = append(faults, fmt.Sprintf("%s[%d]@%d holds %q in clear", rec.Topic, rec.Partition, rec.Offset, s))
			}
		}
	}, mine...)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{e.topic("orders"), e.topic("customers"), e.topic("enriched"), e.topic("stats"), "streamer-" + e.id + "-per-customer-changelog"} {
		if perTopic[name] == 0 {
			faults = append(faults, fmt.Sprintf("topic %s has no records (per topic: %v): the check checked nothing there", name, perTopic))
		}
	}
	t.Logf("records read raw per topic: %v", perTopic)

	// The aggregate's stores, read back: values encrypted.
	group := "streamer-" + e.id
	aggValues, leaks := scanStores(t, filepath.Join(e.dir, "state", "r1"), group, "per-customer", 2, secrets, "aggregate")
	faults = append(faults, leaks...)
	if aggValues < n {
		faults = append(faults, fmt.Sprintf("the aggregate's stores hold %d values, want at least %d", aggValues, n))
	}

	// The table's stores, read back: every row, still encrypted.
	stateDir := filepath.Join(e.dir, "state", "r1")
	stored, leaks := scanStores(t, stateDir, group, "table-customers@encrypted", 2, secrets, "table")
	faults = append(faults, leaks...)
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

	// Another replica with an empty state directory restores the
	// aggregate from its changelog, data key included, and counts on.
	var more []*kgo.Record
	for i := range n {
		c := fmt.Sprintf("c%03d", i)
		more = append(more, &kgo.Record{Key: []byte(c), Value: []byte(fmt.Sprintf(`{"order":"p%d","customer":%q,"amount":1}`, i, c))})
	}
	e.produce("orders", more)
	r2 := e.startArgs(file, "r2", "--metrics-addr", "off", "--purge-interval", "off")
	waitFor(t, "the statistics after a restore", 2*time.Minute, func() bool {
		c, err := topicread.Count(ctx, brokers, e.topic("stats"))
		return err == nil && int(c[e.topic("stats")]) >= len(orders)-1+n
	})
	if _, code := r2.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r2.logText())
	}
	counts = readCounts(func([]byte, map[string]any) {})
	for i := range n {
		if want := float64(3 - i/(n-1)); counts[fmt.Sprintf("c%03d", i)] != want {
			faults = append(faults, fmt.Sprintf("after a restore, c%03d counted %v orders, want %v", i, counts[fmt.Sprintf("c%03d", i)], want))
		}
	}
	if len(faults) > 0 {
		t.Fatalf("%d faults; the first:\n%s", len(faults), strings.Join(faults[:min(10, len(faults))], "\n"))
	}
}

// scanStores reads back the Pebble stores of store (partitions 0..parts-1)
// of group under stateDir and returns how many values they hold and a
// fault for each value that holds one of secrets in clear.
func scanStores(t *testing.T, stateDir, group, store string, parts int32, secrets []string, what string) (values int, faults []string) {
	t.Helper()
	for p := range parts {
		st, err := state.OpenPebble(state.Dir(stateDir, group, store, p))
		if err != nil {
			t.Fatal(err)
		}
		err = st.Range(nil, nil, func(k, v []byte) bool {
			values++
			for _, s := range secrets {
				if bytes.Contains(v, []byte(s)) {
					faults = append(faults, fmt.Sprintf("%s store %d key %q holds %q in clear", what, p, k, s))
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
	return values, faults
}
