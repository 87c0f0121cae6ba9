package engine

import (
	"sort"
	"sync"
	"sync/atomic"
)

// Stats are counters the engine keeps as it runs. They are safe to read
// from any goroutine.
type Stats struct {
	// RecordsIn counts records consumed from source topics.
	RecordsIn atomic.Int64
	// RecordsOut counts records produced to sink topics.
	RecordsOut atomic.Int64
	// DeadLettered counts records sent to the dead-letter topic.
	DeadLettered atomic.Int64
	// Skipped counts failed records dropped by on_error: skip.
	Skipped atomic.Int64
	// Commits and Aborts count ended transactions.
	Commits atomic.Int64
	Aborts  atomic.Int64
	// Pauses counts transactions aborted because a dependency was
	// unavailable.
	Pauses atomic.Int64
	// CommittedIn counts records whose offsets were committed.
	CommittedIn atomic.Int64

	mu  sync.Mutex
	lag map[partitionKey]int64
}

type partitionKey struct {
	topic     string
	partition int32
}

// NewStats returns empty stats.
func NewStats() *Stats { return &Stats{lag: map[partitionKey]int64{}} }

func (s *Stats) setLag(topic string, partition int32, lag int64) {
	s.mu.Lock()
	s.lag[partitionKey{topic, partition}] = lag
	s.mu.Unlock()
}

func (s *Stats) dropLag(topic string, partition int32) {
	s.mu.Lock()
	delete(s.lag, partitionKey{topic, partition})
	s.mu.Unlock()
}

// PartitionLag is the consumer lag of one assigned partition.
type PartitionLag struct {
	Topic     string
	Partition int32
	Lag       int64
}

// Lag returns the lag of each assigned partition, as of its last fetch: the
// records between the last one consumed and the partition's last stable
// offset.
func (s *Stats) Lag() []PartitionLag {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]PartitionLag, 0, len(s.lag))
	for k, v := range s.lag {
		out = append(out, PartitionLag{Topic: k.topic, Partition: k.partition, Lag: v})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Topic != out[j].Topic {
			return out[i].Topic < out[j].Topic
		}
		return out[i].Partition < out[j].Partition
	})
	return out
}

// TotalLag sums Lag.
func (s *Stats) TotalLag() int64 {
	var n int64
	for _, l := range s.Lag() {
		n += l.Lag
	}
	return n
}
