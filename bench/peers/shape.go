package main

import (
	"encoding/json"
	"fmt"
	"hash/fnv"

	"github.com/streamerio/streamer/bench/internal/benchkit"
)

// shape is the hand-written programs' filter + map of bench/topology.yaml,
// written as a Go team would with encoding/json: it reports false for an
// order the filter drops (amount <= -1000000).
func shape(value []byte) ([]byte, bool, error) {
	var o map[string]any
	if err := json.Unmarshal(value, &o); err != nil {
		return nil, false, err
	}
	amount, ok := o["amount"].(float64)
	if !ok {
		return nil, false, fmt.Errorf("amount is %T, not a number", o["amount"])
	}
	if !(amount > -1000000) {
		return nil, false, nil
	}
	if o["currency"] == "EUR" {
		o["amount_eur"] = amount
	} else {
		o["amount_eur"] = amount * 0.92
	}
	items, _ := o["items"].([]any)
	o["item_count"] = len(items)
	o["pipeline"] = "bench"
	if c, ok := o["customer_id"]; ok {
		o["customer"] = c
		delete(o, "customer_id")
	}
	delete(o, "debug")
	b, err := json.Marshal(o)
	return b, true, err
}

// fingerprint is an order-independent digest of a multiset of records:
// their count and the sum and xor of a hash of each key and canonical value
// (JSON decoded and re-encoded: object keys sorted, numbers as float64).
type fingerprint struct {
	n        int64
	sum, xor uint64
	bad      int64 // values that are not JSON objects
	input    bool  // the digest of the input itself (the passthrough's check)
}

func (f *fingerprint) add(key, value []byte) {
	f.n++
	var v any
	if err := json.Unmarshal(value, &v); err != nil {
		f.bad++
		return
	}
	canon, err := json.Marshal(v)
	if err != nil {
		f.bad++
		return
	}
	h := fnv.New64a()
	h.Write(key)
	h.Write([]byte{0})
	h.Write(canon)
	x := h.Sum64()
	f.sum += x
	f.xor ^= x
}

func (f fingerprint) String() string {
	return fmt.Sprintf("%d records, digest %016x/%016x", f.n, f.sum, f.xor)
}

// expected is the oracle: what bench/topology.yaml must make of the input,
// built from the generator's own fields (amount and item count as
// generated, not parsed), independently of shape.
func expected(in benchkit.Input) fingerprint {
	g := in.Orders()
	var f fingerprint
	for i := 0; i < in.Records; i++ {
		o := g.Next()
		if !(o.Amount > -1000000) {
			continue
		}
		var v map[string]any
		if err := json.Unmarshal(o.Value, &v); err != nil {
			panic(err) // the generator makes no bad records here
		}
		eur := o.Amount
		if v["currency"] != "EUR" {
			eur = o.Amount * 0.92
		}
		v["amount_eur"] = eur
		v["item_count"] = o.Items
		v["pipeline"] = "bench"
		v["customer"] = v["customer_id"]
		delete(v, "customer_id")
		delete(v, "debug")
		b, _ := json.Marshal(v)
		f.add(o.Key, b)
	}
	return f
}

// inputDigest is the fingerprint of the input unchanged: what the
// passthrough, which does no work, must have copied.
func inputDigest(in benchkit.Input) fingerprint {
	g := in.Orders()
	f := fingerprint{input: true}
	for i := 0; i < in.Records; i++ {
		o := g.Next()
		f.add(o.Key, o.Value)
	}
	return f
}
