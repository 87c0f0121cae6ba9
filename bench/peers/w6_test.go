package main

import (
	"encoding/json"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// The probed keys are distinct fill keys spread over the key space and
// every partition, and
// the fill events carry the amounts verifyW6's oracle assumes.
func TestW6SampleAndEvents(t *testing.T) {
	const keys, probes, partitions = 1_000_000, 2000, 6
	sample := w6Sample(keys, probes)
	if len(sample) != probes {
		t.Fatalf("%d probed keys, want %d", len(sample), probes)
	}
	seen := map[int]bool{}
	perPartition := make([]int, partitions)
	part := kgo.StickyKeyPartitioner(nil).ForTopic("")
	for _, i := range sample {
		if i < 0 || i >= keys || seen[i] {
			t.Fatalf("probed key %d: out of range or twice", i)
		}
		seen[i] = true
		k, v := w6Event(i)
		perPartition[part.Partition(&kgo.Record{Key: k}, partitions)]++
		var e struct {
			ID     int     `json:"id"`
			Amount float64 `json:"amount"`
		}
		if err := json.Unmarshal(v, &e); err != nil || e.ID != i || e.Amount != float64(i%1000)+0.5 {
			t.Fatalf("event %d: %s (%v)", i, v, err)
		}
	}
	if last := sample[len(sample)-1]; last < keys-keys/probes {
		t.Errorf("the probed keys end at %d of %d: they do not span the key space", last, keys)
	}
	for p, n := range perPartition {
		if n < probes/partitions/2 {
			t.Errorf("partition %d holds %d of %d probed keys", p, n, probes)
		}
	}
	if got := w6Sample(10, 2000); len(got) != 10 {
		t.Errorf("more probes than keys: %d probed keys, want 10", len(got))
	}
}
