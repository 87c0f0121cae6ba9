package streamertest_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamerio/streamer/streamertest"
)

// TestDriverTables feeds table rows from Go between inputs: each input sees
// the rows written before it, a later row of a key replaces the earlier, and
// a nil value deletes the key.
func TestDriverTables(t *testing.T) {
	d, err := streamertest.Load("../examples/enrichment-join/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	order := func(id, customer, country string) streamertest.Record {
		return streamertest.Record{Key: streamertest.Key(customer), Value: map[string]any{"order_id": id, "customer_id": customer, "country": country, "amount": 1}}
	}
	steps := []struct {
		table, key string
		value      any
		order      streamertest.Record
	}{
		{"countries", "DE", map[string]any{"name": "Germany", "region": "EU"}, streamertest.Record{}},
		{"customers", "c-1", map[string]any{"name": "Ada", "segment": "basic"}, order("o-1", "c-1", "DE")},
		{"customers", "c-1", map[string]any{"name": "Ada", "segment": "gold"}, order("o-2", "c-1", "DE")},
		{"countries", "DE", nil, order("o-3", "c-1", "DE")},
		{"customers", "c-1", nil, order("o-4", "c-1", "DE")},
	}
	for _, s := range steps {
		if err := d.Table(s.table, s.key, s.value); err != nil {
			t.Fatal(err)
		}
		if s.order.Key != nil {
			if err := d.Input("orders", s.order); err != nil {
				t.Fatal(err)
			}
		}
	}
	out, err := d.Output("enriched")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out {
		v := r.Value.(map[string]any)
		got = append(got, strings.Join([]string{v["order_id"].(string), show(v["segment"]), show(v["country_name"])}, " "))
	}
	// o-4: its customer was deleted, and the customer join is inner.
	want := "o-1 basic Germany, o-2 gold Germany, o-3 gold <nil>"
	if strings.Join(got, ", ") != want {
		t.Errorf("got %s\nwant %s", strings.Join(got, ", "), want)
	}
	if err := d.Table("orders", "c-1", map[string]any{}); err == nil || !strings.Contains(err.Error(), `dataset "orders" is not a table`) {
		t.Errorf("Table on a stream: %v", err)
	}
}

func show(v any) string {
	if v == nil {
		return "<nil>"
	}
	return v.(string)
}

// TestTablesSectionErrors: a tables: section naming something other than a
// table, or a row without a key, is reported at its position.
func TestTablesSectionErrors(t *testing.T) {
	abs, _ := filepath.Abs("../examples/enrichment-join/topology.yaml")
	src := "topology: " + abs + `
cases:
  - name: bad tables
    tables:
      orders:
        - key: c-1
          value: {name: x}
      customers:
        - value: {name: x}
    input:
      orders: []
`
	file := filepath.Join(t.TempDir(), "x.test.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	r := streamertest.RunFile(file, streamertest.Options{})
	var fe *streamertest.FileError
	if !errors.As(r.Err, &fe) {
		t.Fatalf("err = %v, want a *FileError", r.Err)
	}
	for _, want := range []string{
		`x.test.yaml:5:7: tables: "orders" is not a table dataset of the topology (tables: countries, customers)`,
		`x.test.yaml:9:11: a table row needs a key`,
	} {
		if !strings.Contains(r.Err.Error(), want) {
			t.Errorf("error:\n%v\nwant it to contain %q", r.Err, want)
		}
	}
}

// TestDriverTablesCoPartitioned: a partitioned table that declares no
// partition count is spread like the stream joining it, so every key finds
// its row whatever partition its records go to.
func TestDriverTablesCoPartitioned(t *testing.T) {
	src := `name: t
datasets:
  orders: {topic: orders, partitions: 5}
  customers: {topic: customers, table: partitioned}
  out: {topic: out, partitions: 5}
pipes:
  j: {from: orders, to: out, on_error: fail, join: {table: customers, fields: {name: name}}}
`
	file := filepath.Join(t.TempDir(), "t.yaml")
	if err := os.WriteFile(file, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := streamertest.Load(file)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	const keys = 50
	parts := map[int32]bool{}
	for i := range keys {
		k := "c" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		if err := d.Table("customers", k, map[string]any{"name": k}); err != nil {
			t.Fatal(err)
		}
		if err := d.Input("orders", streamertest.Record{Key: streamertest.Key(k), Value: map[string]any{"id": i}}); err != nil {
			t.Fatal(err)
		}
	}
	out, err := d.Output("out")
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out {
		parts[r.Partition] = true
		if r.Value.(map[string]any)["name"] != *r.Key {
			t.Errorf("key %s joined %v", *r.Key, r.Value)
		}
	}
	if len(out) != keys || len(parts) < 2 {
		t.Errorf("%d of %d orders matched, over %d partitions", len(out), keys, len(parts))
	}
}
