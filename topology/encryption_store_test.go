package topology_test

import (
	"testing"
	"testing/fstest"

	"github.com/streamerio/streamer/topology"
)

// TestStoreEnvelope: the stores of stateful pipes fed by encrypted data
// (a source, through pipes that drop the fields too, or a join with an
// encrypted table) are encrypted; those fed by plaintext only are not,
// nor a stream join's, which frames its inputs itself.
func TestStoreEnvelope(t *testing.T) {
	fsys := fstest.MapFS{
		"signup.json":   {Data: []byte(`{"type":"object","properties":{"user":{"type":"string"},"email":{"type":"string"},"city":{"type":"string"}}}`)},
		"customer.json": {Data: []byte(`{"type":"object","properties":{"name":{"type":"string"}}}`)},
	}
	top, err := topology.Compile("t.yaml", []byte(`
name: stores
datasets:
  signups:
    topic: signups
    schema: signup.json
    encryption: {fields: [email], key: {kms: local, uri: unused.json}}
  plain: {topic: plain, schema: signup.json}
  customers:
    topic: customers
    table: global
    schema: customer.json
    encryption: {fields: [name], key: {kms: local, uri: unused.json}}
  cities: {}
  joined: {}
  by-city: {topic: by-city, create: {partitions: 1}}
  by-city-plain: {topic: by-city-plain, create: {partitions: 1}}
  by-name: {topic: by-name, create: {partitions: 1}, plaintext: [cname]}
  pairs: {topic: pairs, create: {partitions: 1}, plaintext: [email]}
pipes:
  drop-email:
    from: signups
    to: cities
    map: {drop: [email]}
  count-cities:
    from: cities
    to: by-city
    aggregate: {fields: {n: {op: count}}}
  count-plain:
    from: plain
    to: by-city-plain
    aggregate: {fields: {n: {op: count}}}
  join-customer:
    from: plain
    to: joined
    join: {table: customers, on: user, fields: {cname: name}}
  last-name:
    from: joined
    to: by-name
    aggregate: {fields: {last: {op: last, of: cname}}}
  pair:
    from: [signups, plain]
    to: pairs
    stream_join: {window: 1h, fields: {city2: city}}
`), fsys, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	for store, want := range map[string]bool{"count-cities": true, "count-plain": false, "last-name": true, "pair": false} {
		if got := top.StoreEnvelope(store) != nil; got != want {
			t.Errorf("store %s encrypted: %v, want %v", store, got, want)
		}
	}
}
