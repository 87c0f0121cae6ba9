package engine_test

// Benchmarks of the per-record hot path, without a broker: a Task running a
// filter + map topology over batches of ~1 KB JSON orders, and the parts of
// that cost (JSON decode, the pipes, JSON encode) on their own.
//
//	go test -run '^$' -bench . -benchmem ./engine/
//
// The end-to-end benchmark against a real broker is go run ./bench; see
// bench/RESULTS.md.

import (
	"context"
	"io"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/gen"
	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

// benchTopology is bench/topology.yaml: a filter that keeps every record and
// a map that computes 2 fields, sets 1, renames 1 and drops 1.
const benchTopology = `
name: bench-filter-map
processing:
  commit_interval: 100ms
datasets:
  orders:
    topic: bench-orders
    value: json
    schema: schemas/order.json
  kept: {}
  shaped:
    topic: bench-shaped
pipes:
  keep:
    from: orders
    to: kept
    filter:
      when: amount > -1000000
  shape:
    from: kept
    to: shaped
    map:
      compute:
        amount_eur: 'currency == "EUR" ? amount : amount * 0.92'
        item_count: len(items)
      set:
        pipeline: bench
      rename:
        customer_id: customer
      drop: [debug]
`

const orderSchema = `{
  "type": "object",
  "required": ["order_id", "customer_id", "country", "amount", "currency", "items"],
  "properties": {
    "order_id": { "type": "string" },
    "customer_id": { "type": "string" },
    "country": { "type": "string" },
    "amount": { "type": "number" },
    "currency": { "type": "string" },
    "items": { "type": "array", "items": { "type": "object" } },
    "debug": { "type": ["string", "null"] },
    "ts": { "type": "string" }
  }
}`

const (
	batchSize  = 500
	recordSize = 1024
)

func compileBench(b *testing.B) *topology.Topology {
	b.Helper()
	fsys := fstest.MapFS{"schemas/order.json": {Data: []byte(orderSchema)}}
	top, err := topology.Compile("bench.yaml", []byte(benchTopology), fsys)
	if err != nil {
		b.Fatal(err)
	}
	return top
}

// batch returns n consumed records holding ~1 KB orders.
func batch(n int) []*kgo.Record {
	g := gen.NewOrders(7)
	g.Pad = recordSize
	ts := time.Date(2026, 11, 24, 10, 0, 0, 0, time.UTC)
	recs := make([]*kgo.Record, n)
	for i := range recs {
		o := g.Next()
		recs[i] = &kgo.Record{Topic: "bench-orders", Partition: 0, Offset: int64(i), Key: o.Key, Value: o.Value, Timestamp: ts}
	}
	return recs
}

func valueBytes(recs []*kgo.Record) int64 {
	var n int64
	for _, r := range recs {
		n += int64(len(r.Value))
	}
	return n
}

// perRecord reports ns/record, records/s and allocs/record for a benchmark
// whose every op handles records records; allocs come from the runtime's
// counters over the timed loop.
type perRecord struct {
	b       *testing.B
	records int
	mallocs uint64
	// noAllocs leaves allocs/record out, for benchmarks that allocate with
	// the timer stopped (their allocs/op excludes that; the runtime's
	// counters do not).
	noAllocs bool
}

func startPerRecord(b *testing.B, records int) *perRecord {
	b.ReportAllocs()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return &perRecord{b: b, records: records, mallocs: ms.Mallocs}
}

func (p *perRecord) report(ops int) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	n := float64(ops) * float64(p.records)
	ns := float64(p.b.Elapsed().Nanoseconds()) / n
	p.b.ReportMetric(ns, "ns/record")
	p.b.ReportMetric(1e9/ns, "records/s")
	if !p.noAllocs {
		p.b.ReportMetric(float64(ms.Mallocs-p.mallocs)/n, "allocs/record")
	}
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// BenchmarkTaskProcess is the engine's whole per-record path minus Kafka:
// decode, filter, map, encode and building the records to produce.
func BenchmarkTaskProcess(b *testing.B) {
	top := compileBench(b)
	in := batch(batchSize)
	task, err := engine.NewTask(top, "orders", 0, engine.TaskOptions{Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	defer task.Close()
	ctx := context.Background()
	var out, outBytes int64
	emit := func(r *kgo.Record) { out++; outBytes += int64(len(r.Value)) }
	b.SetBytes(valueBytes(in))
	p := startPerRecord(b, len(in))
	ops := 0
	for b.Loop() {
		if err := task.Process(ctx, in, emit); err != nil {
			b.Fatal(err)
		}
		ops++
	}
	p.report(ops)
	if out != int64(ops*len(in)) {
		b.Fatalf("emitted %d records, want %d", out, ops*len(in))
	}
	b.ReportMetric(float64(outBytes)/float64(out), "B/out-record")
}

// BenchmarkTaskProcessParallel runs one Task per goroutine, as the engine
// would if it processed the partitions of a poll concurrently (today its loop
// processes them one after another). records/s over all goroutines shows
// what a second core is worth on the hot path.
func BenchmarkTaskProcessParallel(b *testing.B) {
	top := compileBench(b)
	in := batch(batchSize)
	b.SetBytes(valueBytes(in))
	p := startPerRecord(b, len(in))
	var partition atomic.Int32
	b.RunParallel(func(pb *testing.PB) {
		task, err := engine.NewTask(top, "orders", partition.Add(1), engine.TaskOptions{Logger: discard})
		if err != nil {
			b.Error(err)
			return
		}
		defer task.Close()
		emit := func(*kgo.Record) {}
		for pb.Next() {
			if err := task.Process(context.Background(), in, emit); err != nil {
				b.Error(err)
				return
			}
		}
	})
	p.report(b.N)
}

// BenchmarkCodec splits out the JSON codec's share of the path: decode of
// the input values, and encode of the values the map makes of them.
func BenchmarkCodec(b *testing.B) {
	codec, err := serde.NewFromSchema("json", nil)
	if err != nil {
		b.Fatal(err)
	}
	in := batch(batchSize)

	b.Run("decode", func(b *testing.B) {
		b.SetBytes(valueBytes(in))
		p := startPerRecord(b, len(in))
		ops := 0
		for b.Loop() {
			for _, r := range in {
				if _, err := codec.Decode(r.Value); err != nil {
					b.Fatal(err)
				}
			}
			ops++
		}
		p.report(ops)
	})

	// Projected: only the fields the topology's pipes use are decoded; the
	// other members stay raw (what the task does).
	b.Run("decode-projected", func(b *testing.B) {
		task, err := engine.NewTask(compileBench(b), "orders", 0, engine.TaskOptions{Logger: discard})
		if err != nil {
			b.Fatal(err)
		}
		want, ok := task.Projection()
		if !ok {
			b.Fatal("the bench topology is not projected")
		}
		fields := serde.NewFields(want)
		proj := codec.(serde.Projecting)
		b.SetBytes(valueBytes(in))
		p := startPerRecord(b, len(in))
		ops := 0
		for b.Loop() {
			for _, r := range in {
				if _, _, err := proj.DecodeProjected(r.Value, fields); err != nil {
					b.Fatal(err)
				}
			}
			ops++
		}
		p.report(ops)
	})

	// The values to encode are what the task produces: decode its output.
	shaped := shapedValues(b, codec, in)
	b.Run("encode", func(b *testing.B) {
		var size int64
		for _, v := range shaped {
			enc, _ := codec.AppendEncode(nil, v)
			size += int64(len(enc))
		}
		b.SetBytes(size)
		p := startPerRecord(b, len(shaped))
		ops := 0
		for b.Loop() {
			for _, v := range shaped {
				if _, err := codec.AppendEncode(nil, v); err != nil {
					b.Fatal(err)
				}
			}
			ops++
		}
		p.report(ops)
	})
}

func shapedValues(b *testing.B, codec serde.Codec, in []*kgo.Record) []any {
	task, err := engine.NewTask(compileBench(b), "orders", 0, engine.TaskOptions{Logger: discard})
	if err != nil {
		b.Fatal(err)
	}
	defer task.Close()
	var vals []any
	err = task.Process(context.Background(), in, func(r *kgo.Record) {
		v, err := codec.Decode(r.Value)
		if err != nil {
			b.Fatal(err)
		}
		vals = append(vals, v)
	})
	if err != nil {
		b.Fatal(err)
	}
	return vals
}

// BenchmarkPipes runs the topology's filter and map alone over decoded
// records. Map changes records in place, so every batch gets fresh copies of
// the decoded values, made with the timer stopped.
func BenchmarkPipes(b *testing.B) {
	top := compileBench(b)
	codec := top.Datasets["orders"].Codec
	in := batch(batchSize)
	decoded := make([]any, len(in))
	for i, r := range in {
		v, err := codec.Decode(r.Value)
		if err != nil {
			b.Fatal(err)
		}
		decoded[i] = v
	}
	var steps []pipes.Pipe
	var outs []*pipes.Output
	for _, p := range top.Pipes {
		pipe, err := p.Config.New(p.Env(0))
		if err != nil {
			b.Fatal(err)
		}
		steps = append(steps, pipe)
		outs = append(outs, pipes.NewOutput(len(p.Outputs)))
	}
	ctx := context.Background()
	slab := make([]pipes.Record, len(in))
	recs := make([]*pipes.Record, len(in))
	p := startPerRecord(b, len(in))
	p.noAllocs = true // allocs/op counts only the timed part: divide by 500
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		for j := range slab {
			slab[j] = pipes.Record{Key: in[j].Key, Value: pipes.CloneValue(decoded[j]), Timestamp: in[j].Timestamp, Origin: &pipes.Origin{Topic: in[j].Topic, Partition: in[j].Partition, Offset: in[j].Offset, Key: in[j].Key, Value: in[j].Value}}
			recs[j] = &slab[j]
		}
		b.StartTimer()
		cur := recs
		for s, pipe := range steps {
			outs[s].Reset()
			if err := pipe.Process(ctx, &pipes.Batch{Records: cur}, outs[s]); err != nil {
				b.Fatal(err)
			}
			if len(outs[s].Failures()) > 0 {
				b.Fatal(outs[s].Failures()[0].Err)
			}
			cur = outs[s].Records(0)
		}
		if len(cur) != len(in) {
			b.Fatalf("%d records out, want %d", len(cur), len(in))
		}
	}
	b.StopTimer()
	p.report(b.N)
}

// BenchmarkCloneValue is the cost of the copies BenchmarkPipes makes outside
// its timer; it is also what Task.Process pays per record for every extra
// pipe reading a dataset that another pipe reads after it.
func BenchmarkCloneValue(b *testing.B) {
	codec, _ := serde.NewFromSchema("json", nil)
	in := batch(batchSize)
	decoded := make([]any, len(in))
	for i, r := range in {
		decoded[i], _ = codec.Decode(r.Value)
	}
	p := startPerRecord(b, len(in))
	ops := 0
	for b.Loop() {
		for _, v := range decoded {
			_ = pipes.CloneValue(v)
		}
		ops++
	}
	p.report(ops)
}
