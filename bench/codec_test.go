package main

// Microbenchmarks behind bench/RESULTS.md's codec figures: serde's json
// codec, the goccy/go-json calls it makes, encoding/json for comparison, and
// variants of the calls that the profile points at, on the bench's ~1 KB
// orders.
//
//	go test -run '^$' -bench . -benchmem ./bench/

import (
	"bytes"
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/gen"
	"github.com/streamerio/streamer/serde"
)

const codecBatch = 500

// orders returns raw ~1 KB orders and, for encoding, values shaped like the
// bench topology's output (2 computed fields, 1 set, 1 renamed, 1 dropped).
func orders(b *testing.B) ([][]byte, []any) {
	b.Helper()
	g := gen.NewOrders(7)
	g.Pad = 1024
	var raw [][]byte
	var vals []any
	for range codecBatch {
		o := g.Next()
		raw = append(raw, o.Value)
		var v map[string]any
		if err := gojson.Unmarshal(o.Value, &v); err != nil {
			b.Fatal(err)
		}
		v["amount_eur"] = o.Amount * 0.92
		v["item_count"] = int64(o.Items)
		v["pipeline"] = "bench"
		v["customer"] = v["customer_id"]
		delete(v, "customer_id")
		delete(v, "debug")
		vals = append(vals, v)
	}
	return raw, vals
}

func loop(b *testing.B, n int, f func(i int)) {
	b.ReportAllocs()
	for b.Loop() {
		for i := range n {
			f(i)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/record")
}

func BenchmarkDecode(b *testing.B) {
	raw, _ := orders(b)
	codec, err := serde.NewFromSchema("json", nil)
	if err != nil {
		b.Fatal(err)
	}
	// serde's json codec: goccy, then a pass that turns whole float64
	// numbers into int64.
	b.Run("serde-json", func(b *testing.B) {
		loop(b, len(raw), func(i int) {
			if _, err := codec.Decode(raw[i]); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("goccy", func(b *testing.B) { // the same without serde's pass
		loop(b, len(raw), func(i int) {
			var v any
			if err := gojson.Unmarshal(raw[i], &v); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("encoding-json", func(b *testing.B) {
		loop(b, len(raw), func(i int) {
			var v any
			if err := json.Unmarshal(raw[i], &v); err != nil {
				b.Fatal(err)
			}
		})
	})
}

func BenchmarkEncode(b *testing.B) {
	_, vals := orders(b)
	codec, err := serde.NewFromSchema("json", nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("serde-json", func(b *testing.B) {
		loop(b, len(vals), func(i int) {
			if _, err := codec.AppendEncode(nil, vals[i]); err != nil {
				b.Fatal(err)
			}
		})
	})
	// What serde's json codec did before 3bfddb4: marshal, then copy into
	// dst (nil).
	b.Run("goccy-marshal+copy", func(b *testing.B) {
		loop(b, len(vals), func(i int) {
			out, err := gojson.Marshal(vals[i])
			if err != nil {
				b.Fatal(err)
			}
			_ = append([]byte(nil), out...)
		})
	})
	// The same without the copy: Marshal already returns a fresh
	// slice the caller owns.
	b.Run("goccy-marshal", func(b *testing.B) {
		loop(b, len(vals), func(i int) {
			if _, err := gojson.Marshal(vals[i]); err != nil {
				b.Fatal(err)
			}
		})
	})
	// Without sorting map keys: output key order is then not deterministic.
	b.Run("goccy-marshal-unordered", func(b *testing.B) {
		loop(b, len(vals), func(i int) {
			if _, err := gojson.MarshalWithOption(vals[i], gojson.UnorderedMap(), gojson.DisableHTMLEscape()); err != nil {
				b.Fatal(err)
			}
		})
	})
	b.Run("encoding-json", func(b *testing.B) {
		var buf bytes.Buffer
		loop(b, len(vals), func(i int) {
			buf.Reset()
			e := json.NewEncoder(&buf)
			e.SetEscapeHTML(false)
			if err := e.Encode(vals[i]); err != nil {
				b.Fatal(err)
			}
		})
	})
}

// BenchmarkProducerCompression compresses ~1 MB record batches' worth of
// the bench's orders with each codec of processing.compression, through
// franz-go's own compressor (what the producer runs on the goroutine of the
// broker's connection, one batch after another).
func BenchmarkProducerCompression(b *testing.B) {
	g := gen.NewOrders(7)
	g.Pad = 1024
	var src []byte
	for len(src) < 1<<20 { // distinct orders: a repeat would flatter the codecs
		src = append(src, g.Next().Value...)
	}
	for _, c := range []struct {
		name  string
		codec kgo.CompressionCodec
	}{{"snappy", kgo.SnappyCompression()}, {"lz4", kgo.Lz4Compression()}, {"zstd", kgo.ZstdCompression()}, {"gzip", kgo.GzipCompression()}} {
		b.Run(c.name, func(b *testing.B) {
			comp, err := kgo.DefaultCompressor(c.codec)
			if err != nil {
				b.Fatal(err)
			}
			var buf bytes.Buffer
			var n int
			b.SetBytes(int64(len(src)))
			for b.Loop() {
				buf.Reset()
				out, _ := comp.Compress(&buf, src)
				n = len(out)
			}
			b.ReportMetric(float64(len(src))/float64(n), "ratio")
		})
	}
}
