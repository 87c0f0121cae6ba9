package serde_test

import (
	"os"
	"testing"

	hamba "github.com/hamba/avro/v2"
	"github.com/linkedin/goavro/v2"

	"github.com/streamerio/streamer/serde"
)

// BenchmarkAvro compares, on one schema and record, the codec streamer uses
// (goavro plus the union unwrapping pipes need), goavro alone, and
// hamba/avro as a reference (issue: "measure hamba on the same schema").
func BenchmarkAvro(b *testing.B) {
	schema, err := os.ReadFile("testdata/order.avsc")
	if err != nil {
		b.Fatal(err)
	}
	plain := map[string]any{
		"order_id": "o-123456", "amount": 12.5, "qty": int64(3), "note": "gift wrap please", "status": "PAID",
		"address": map[string]any{"city": "Berlin", "zip": int32(10115)},
		"tags":    []any{"a", "b", nil}, "attrs": map[string]any{"n": int64(1), "s": "x"},
	}
	ours, err := serde.NewFromSchema("avro", schema)
	if err != nil {
		b.Fatal(err)
	}
	bin, err := ours.AppendEncode(nil, plain)
	if err != nil {
		b.Fatal(err)
	}
	gv, err := goavro.NewCodec(string(schema))
	if err != nil {
		b.Fatal(err)
	}
	native, _, err := gv.NativeFromBinary(bin)
	if err != nil {
		b.Fatal(err)
	}
	hs, err := hamba.Parse(string(schema))
	if err != nil {
		b.Fatal(err)
	}
	var hv map[string]any
	if err := hamba.Unmarshal(hs, bin, &hv); err != nil {
		b.Fatal(err)
	}
	b.Run("decode/serde-goavro", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ours.Decode(bin); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/goavro", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, _, err := gv.NativeFromBinary(bin); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("decode/hamba", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var v map[string]any
			if err := hamba.Unmarshal(hs, bin, &v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/serde-goavro", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := ours.AppendEncode(nil, plain); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/goavro", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := gv.BinaryFromNative(nil, native); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encode/hamba", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := hamba.Marshal(hs, hv); err != nil {
				b.Fatal(err)
			}
		}
	})
}
