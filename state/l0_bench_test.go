package state

import (
	"errors"
	"fmt"
	"testing"
)

// BenchmarkGetAfterBulkLoad measures a Get on a store bulk-loaded with 500k
// keys in 26 syncing flushes (a W6 restore leaves 24-26 L0 sublevels per
// partition): with its L0 as the load left it (every table overlapping the
// others: what the first reads after a restore would meet if the merge
// were left until after ready) and once merged by CompactAll (what the
// restore does before the replica is ready). present reads keys of the
// store, absent keys it lacks (an aggregate's first sight of a key).
//
//	go test -run '^$' -bench BenchmarkGetAfterBulkLoad ./state/
func BenchmarkGetAfterBulkLoad(b *testing.B) {
	const n, flushes = 500000, 26
	for _, merged := range []bool{false, true} {
		// The bulk store compacts nothing by itself: its L0 stays as
		// loaded until CompactAll.
		p, err := OpenPebbleBulk(b.TempDir(), PebbleOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if err := scatteredLoad(p, n, flushes); err != nil {
			b.Fatal(err)
		}
		if merged {
			if err := p.CompactAll(); err != nil {
				b.Fatal(err)
			}
		}
		name := fmt.Sprintf("l0=%d", p.db.Metrics().Levels[0].Sublevels)
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
		if err := p.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// scatteredLoad writes keys 0..n-1 in a scattered order through a Loader,
// with a syncing Flush every n/flushes keys: on a bulk store each makes an
// L0 table overlapping all the others, as a restore from far behind does.
func scatteredLoad(p *Pebble, n, flushes int) error {
	ld, err := p.Loader()
	if err != nil {
		return err
	}
	for i := range n {
		k := (i * 7919) % n // 7919 is prime: a permutation of 0..n-1
		if err := ld.Put(fmt.Appendf(nil, "k%07d", k), fmt.Appendf(nil, "v%d", k)); err != nil {
			return errors.Join(err, ld.Close())
		}
		if (i+1)%(n/flushes) == 0 {
			if err := ld.Flush(int64(i+1), true); err != nil {
				return errors.Join(err, ld.Close())
			}
		}
	}
	return errors.Join(ld.Flush(int64(n), true), ld.Close())
}
