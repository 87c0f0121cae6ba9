package engine

import (
	"context"
	"log/slog"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/topology"
)

// purger deletes the records of the topics the compiler inserted
// (repartition and merge topics) that this replica has consumed and
// committed: only this group reads them, so they are of no use once the
// group's committed offset has passed them, and each holds a copy of what
// flows through the job. Kafka Streams purges its repartition topics the
// same way.
//
// It is safe because a group's committed offset never goes back: the
// offsets it deletes below are those of transactions that committed, and
// every record below them was processed and its outputs committed with
// them. Aborted transactions purge nothing.
//
// The loop calls processed, ended and maybe, and Run calls stop; the
// deletion itself runs in the background, one request at a time.
type purger struct {
	topics   map[string]bool
	interval time.Duration
	log      *slog.Logger
	hooks    []PurgeHook
	// pending holds, per internal partition, the offset after the last
	// record processed in the open transaction; committed, what
	// committed transactions reached since the last purge.
	pending, committed map[partitionKey]int64
	last               time.Time
	// done is closed when the last deletion started has answered.
	done chan struct{}
	// ctx ends a deletion under way when the replica stops.
	ctx    context.Context
	cancel context.CancelFunc
}

func newPurger(t *topology.Topology, interval time.Duration, log *slog.Logger, hooks []PurgeHook) *purger {
	p := &purger{topics: map[string]bool{}, interval: interval, log: log, hooks: hooks,
		pending: map[partitionKey]int64{}, committed: map[partitionKey]int64{}, last: time.Now()}
	for _, d := range t.Internal() {
		p.topics[d.Topic] = true
	}
	if interval < 0 || len(p.topics) == 0 {
		return nil
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	return p
}

// processed notes how far the poll took each internal partition.
func (p *purger) processed(fetches kgo.Fetches) {
	if p == nil {
		return
	}
	fetches.EachPartition(func(fp kgo.FetchTopicPartition) {
		if n := len(fp.Records); n > 0 && p.topics[fp.Topic] {
			p.pending[partitionKey{fp.Topic, fp.Partition}] = fp.Records[n-1].Offset + 1
		}
	})
}

// ended moves what the transaction processed to the purgeable offsets if
// it committed, and forgets it if it aborted.
func (p *purger) ended(committed bool) {
	if p == nil {
		return
	}
	if committed {
		for k, off := range p.pending {
			p.committed[k] = max(p.committed[k], off)
		}
	}
	clear(p.pending)
}

// maybe starts a deletion of the committed offsets once interval has
// passed since the last, unless one is still running.
func (p *purger) maybe(cl *kgo.Client) {
	if p == nil || len(p.committed) == 0 || time.Since(p.last) < p.interval {
		return
	}
	if p.done != nil {
		select {
		case <-p.done:
		default:
			return // the last request has not answered yet
		}
	}
	p.last = time.Now()
	offs := kadm.Offsets{}
	for k, at := range p.committed {
		offs.Add(kadm.Offset{Topic: k.topic, Partition: k.partition, At: at})
	}
	n := len(p.committed)
	clear(p.committed)
	done := make(chan struct{})
	p.done = done
	go func() {
		defer close(done)
		ctx, cancel := context.WithTimeout(p.ctx, 10*time.Second)
		defer cancel()
		start := time.Now()
		resp, err := kadm.NewClient(cl).DeleteRecords(ctx, offs)
		if err == nil {
			err = resp.Error()
		}
		if p.ctx.Err() == nil { // a stop's cancellation is no failure
			for _, h := range p.hooks {
				h.OnPurge(Purge{Partitions: n, Err: err, Duration: time.Since(start)})
			}
		}
		if err != nil {
			// Not the job's failure: the records stay until the next
			// purge, which deletes below later offsets.
			p.log.Warn("purging consumed records of internal topics", "err", err)
			return
		}
		p.log.Debug("purged consumed records of internal topics", "partitions", len(resp))
	}()
}

// stop ends a deletion under way, and waits for it to return: shutdown is
// bounded, and what it did not delete the next run will.
func (p *purger) stop() {
	if p != nil {
		p.cancel()
		if p.done != nil {
			<-p.done
		}
	}
}
