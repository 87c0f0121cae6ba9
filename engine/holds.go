package engine

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// holds keep newly assigned partitions paused while something prepares
// them in the background: a state restore (restore.go) or a table load
// (tables.go). Each preparation takes a hold on the partition; the last to
// let go resumes fetching from it, so neither can resume a partition the
// other still needs paused.
//
// A hold belongs to one assignment of its partition. When the partition is
// revoked its holds are forgotten; if it is assigned again, the new
// preparations take new holds, and a stale one let go of late changes
// nothing.
type holds struct {
	mu sync.Mutex
	by map[partitionKey]*hold
}

// hold counts the preparations a partition waits for.
type hold struct{ n int }

func newHolds() *holds { return &holds{by: map[partitionKey]*hold{}} }

// take holds pk, pausing it if nothing held it yet. Called from the
// assignment callback, it pauses before fetching from pk begins.
func (h *holds) take(cl *kgo.Client, pk partitionKey) *hold {
	h.mu.Lock()
	defer h.mu.Unlock()
	g := h.by[pk]
	if g == nil {
		g = &hold{}
		h.by[pk] = g
		cl.PauseFetchPartitions(map[string][]int32{pk.topic: {pk.partition}})
	}
	g.n++
	return g
}

// release lets go of a hold taken on pk, resuming pk after the last one.
func (h *holds) release(cl *kgo.Client, pk partitionKey, g *hold) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.by[pk] != g {
		return // a hold of an earlier assignment
	}
	if g.n--; g.n == 0 {
		delete(h.by, pk)
		cl.ResumeFetchPartitions(map[string][]int32{pk.topic: {pk.partition}})
	}
}

// forget drops the holds of revoked partitions. The caller resumes them:
// a pause outlives an assignment, and the partitions may come back.
func (h *holds) forget(revoked map[string][]int32) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for topic, ps := range revoked {
		for _, p := range ps {
			delete(h.by, partitionKey{topic, p})
		}
	}
}

// held returns how many partitions are held.
func (h *holds) held() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.by)
}
