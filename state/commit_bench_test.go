package state

import (
	"fmt"
	"testing"
)

// BenchmarkCommit measures the engine's commit path on a Pebble store: one
// transaction of puts (aggregate-like: 64 keys of 100-byte values, as a
// commit interval's worth of updates to one partition's keys) and Commit,
// with the write-ahead log synced (the default) or not (NoSyncCommit).
//
//	go test -run '^$' -bench BenchmarkCommit -benchtime 2000x ./state/
func BenchmarkCommit(b *testing.B) {
	for _, keys := range []int{1, 64, 1024} {
		for _, noSync := range []bool{false, true} {
			name := fmt.Sprintf("keys=%d/sync", keys)
			if noSync {
				name = fmt.Sprintf("keys=%d/nosync", keys)
			}
			b.Run(name, func(b *testing.B) {
				p, err := OpenPebbleWith(b.TempDir(), PebbleOptions{NoSyncCommit: noSync})
				if err != nil {
					b.Fatal(err)
				}
				defer p.Close()
				val := make([]byte, 100)
				key := make([]byte, 0, 16)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					for k := range keys {
						key = fmt.Appendf(key[:0], "k%d", (i*keys+k)%100_000)
						if err := p.Put(key, val); err != nil {
							b.Fatal(err)
						}
					}
					if err := p.Commit(int64(i)); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*keys)/b.Elapsed().Seconds(), "keys/s")
			})
		}
	}
}
