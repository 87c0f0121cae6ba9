package state

import (
	"fmt"
	"testing"
)

// BenchmarkGetAfterBulkLoad measures a Get on a store reopened after a
// bulk load of 500k keys in 26 syncing flushes (a W6 restore leaves 24-26
// L0 sublevels per partition): with its L0 as the load left it (every
// table overlapping the others, no compaction yet: the first seconds after
// a restore) and once merged (CompactAll, as the restore did before it
// was ready). present reads keys of the store, absent keys it lacks (an
// aggregate's first sight of a key).
//
//	go test -run '^$' -bench BenchmarkGetAfterBulkLoad ./state/
func BenchmarkGetAfterBulkLoad(b *testing.B) {
	const n, flushes = 500000, 26
	for _, merged := range []bool{false, true} {
		dir := b.TempDir()
		bulkLoad(b, dir, n, flushes)
		holdCompactions.Store(!merged)
		p, err := OpenPebbleWith(dir, PebbleOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if merged {
			if err := p.CompactAll(); err != nil {
				b.Fatal(err)
			}
		}
		name := fmt.Sprintf("l0=%d", l0(p))
		for _, absent := range []bool{false, true} {
			what := "present"
			if absent {
				what = "absent"
			}
			b.Run(name+"/"+what, func(b *testing.B) {
				key := make([]byte, 0, 16)
				for i := range b.N {
					k := (i * 104729) % n
					if absent {
						k += n
					}
					key = fmt.Appendf(key[:0], "k%07d", k)
					if _, ok, err := p.Get(key); err != nil || ok == absent {
						b.Fatalf("key %d: %v %v", k, ok, err)
					}
				}
			})
		}
		holdCompactions.Store(false)
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
