package crypt

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/streamerio/streamer/serde"
)

// BenchmarkCodec measures what encryption adds per record, on a ~1 KB JSON
// record, against the JSON codec alone: decoding a consumed record
// (decrypting) and encoding one to produce (encrypting), with 1 and 3
// randomized fields, 1 deterministic field, and the whole payload.
// header_B is the bytes of wrapped-key headers per record; growth_B what
// the value grows by; cpu-ns/op the process CPU time per record.
func BenchmarkCodec(b *testing.B) {
	ks, err := NewLocalKeyset()
	if err != nil {
		b.Fatal(err)
	}
	k := Key{KMS: "local", URI: string(ks)}
	kek, err := Open(context.Background(), k)
	if err != nil {
		b.Fatal(err)
	}
	det, err := NewDeterministicKeyset(kek)
	if err != nil {
		b.Fatal(err)
	}
	jsonc := jsonCodecB(b)
	record := func() map[string]any {
		return map[string]any{
			"order_id": "o-1234567", "customer": "c-42", "email": "ann.lee@example.com", "name": "Ann Lee",
			"address": map[string]any{"street": "1 Elm Street", "city": "Oslo", "zip": "0150"},
			"amount":  int64(12999), "currency": "EUR", "note": strings.Repeat("padding text ", 60),
		}
	}
	plain, _ := jsonc.AppendEncode(nil, record())
	cases := []struct {
		name string
		spec *Spec
	}{
		{"json-only", nil},
		{"fields-1", &Spec{Fields: []string{"email"}}},
		{"fields-3", &Spec{Fields: []string{"email", "name", "address.street"}}},
		{"deterministic-1", &Spec{Deterministic: []string{"email"}}},
		{"payload", &Spec{Payload: true}},
	}
	for _, tc := range cases {
		if tc.spec == nil {
			b.Run("decode/"+tc.name, func(b *testing.B) {
				b.ReportAllocs()
				b.SetBytes(int64(len(plain)))
				cpu := cpuTime()
				for b.Loop() {
					if _, err := jsonc.Decode(plain); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
			b.Run("encode/"+tc.name, func(b *testing.B) {
				b.ReportAllocs()
				v := record()
				buf := make([]byte, 0, 4096)
				cpu := cpuTime()
				for b.Loop() {
					if _, err := jsonc.AppendEncode(buf[:0], v); err != nil {
						b.Fatal(err)
					}
				}
				reportCPU(b, cpu)
			})
			continue
		}
		c := NewCodec(jsonc, NewEnvelope(k, Rotation{}, det), *tc.spec)
		enc, hs, err := c.AppendEncodeRecord(nil, record(), nil)
		if err != nil {
			b.Fatal(err)
		}
		headerBytes := 0
		for _, h := range hs {
			headerBytes += len(h.Key) + len(h.Value)
		}
		b.Run("decode/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(plain)))
			cpu := cpuTime()
			for b.Loop() {
				if _, _, err := c.DecodeRecord(enc, hs); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
			b.ReportMetric(float64(headerBytes), "header_B")
			b.ReportMetric(float64(len(enc)-len(plain)), "growth_B")
		})
		b.Run("encode/"+tc.name, func(b *testing.B) {
			b.ReportAllocs()
			v := record()
			buf := make([]byte, 0, 4096)
			cpu := cpuTime()
			for b.Loop() {
				if _, _, err := c.AppendEncodeRecord(buf[:0], v, nil); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

func jsonCodecB(b *testing.B) serde.Codec {
	c, err := serde.New("json", "")
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// cpuTime returns the CPU time the process has used. On a machine shared
// with other work, wall time per operation says more about the others;
// CPU time per operation (with GC) does not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}

// BenchmarkStore measures what encrypted state adds to a store operation
// on a 64-byte value (an aggregate's accumulator, say), against the store
// alone (an in-memory map, so the figures are the encryption's): a put
// (encrypt, and the lookup of the data key's entry) and a get (decrypt,
// and that lookup).
func BenchmarkStore(b *testing.B) {
	ks, err := NewLocalKeyset()
	if err != nil {
		b.Fatal(err)
	}
	env := NewEnvelope(Key{KMS: "local", URI: string(ks)}, Rotation{}, nil)
	value := []byte(strings.Repeat("v", 64))
	key := []byte("agg/c-0000042")
	for _, enc := range []bool{false, true} {
		name := "plain"
		if enc {
			name = "encrypted"
		}
		under := &memStore{m: map[string][]byte{}, noPuts: true}
		var s interface {
			Put(k, v []byte) error
			Get(k []byte) ([]byte, bool, error)
		} = under
		if enc {
			s = NewStore(under, env)
		}
		b.Run("put/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Put(key, value); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("get/"+name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, ok, err := s.Get(key); err != nil || !ok {
					b.Fatal(ok, err)
				}
			}
		})
	}
}
