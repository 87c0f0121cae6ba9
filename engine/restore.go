package engine

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

// pebbleState opens Pebble stores under a state directory and brings them
// up to date from their changelog partitions before a task uses them.
type pebbleState struct {
	top     *topology.Topology
	dir     string
	brokers []string
	extra   []kgo.Opt
	log     *slog.Logger
	hooks   []StateHook
}

var _ StateOpener = (*pebbleState)(nil)

// OpenState opens <dir>/<group>/<store>/<partition> and restores it: it
// reads the changelog partition, read_committed, from the store's
// checkpoint to the last stable offset, applies it and commits. A missing
// directory starts from the changelog's beginning; a store that fails to
// open is wiped and rebuilt the same way.
func (p *pebbleState) OpenState(store string, partition int32) (state.Store, error) {
	dir := state.Dir(p.dir, p.top.Group, store, partition)
	st, err := state.OpenPebble(dir)
	if err != nil {
		p.log.Warn("state store unreadable; rebuilding it from the changelog", "store", store, "partition", partition, "err", err)
		if rmErr := os.RemoveAll(dir); rmErr != nil {
			return nil, fmt.Errorf("removing %s: %w", dir, rmErr)
		}
		if st, err = state.OpenPebble(dir); err != nil {
			return nil, err
		}
	}
	if err := p.restore(st, store, partition); err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

func (p *pebbleState) restore(st state.Store, store string, partition int32) error {
	topic := p.top.ChangelogTopic(store)
	from, ok, err := st.Checkpoint()
	if err != nil {
		return err
	}
	if !ok || from < 0 {
		from = 0
	}
	cl, err := kgo.NewClient(append([]kgo.Opt{
		kgo.SeedBrokers(p.brokers...),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(from)}}),
	}, p.extra...)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	// The last stable offset: records past it belong to transactions still
	// open, which read_committed will not show yet, or ever if they abort.
	ends, err := kadm.NewClient(cl).ListCommittedOffsets(ctx, topic)
	if err != nil {
		return fmt.Errorf("listing the end of %s: %w", topic, err)
	}
	end, ok := ends.Lookup(topic, partition)
	if !ok || end.Err != nil {
		return fmt.Errorf("no end offset for %s[%d]: %v", topic, partition, end.Err)
	}
	start, applied := time.Now(), 0
	pos := from
	for pos < end.Offset {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		fs := cl.PollFetches(pctx)
		pcancel()
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("restoring %s[%d]: %w", topic, partition, err)
		}
		if fs.NumRecords() == 0 {
			// Only transaction markers or aborted records are left.
			break
		}
		var ferr error
		fs.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil && pctx.Err() == nil {
			return fmt.Errorf("restoring %s[%d]: %w", topic, partition, ferr)
		}
		fs.EachRecord(func(r *kgo.Record) {
			if r.Offset >= end.Offset {
				return
			}
			if r.Value == nil {
				err = st.Delete(r.Key)
			} else {
				err = st.Put(r.Key, r.Value)
			}
			applied++
			pos = r.Offset + 1
		})
		if err != nil {
			return err
		}
	}
	if err := st.Commit(end.Offset); err != nil {
		return err
	}
	for _, h := range p.hooks {
		h.OnStateRestored(StateRestore{Store: store, Partition: partition, Records: applied, Duration: time.Since(start)})
	}
	if applied > 0 || from > 0 {
		p.log.Info("state store restored", "store", store, "partition", partition, "from", from, "to", end.Offset,
			"records", applied, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}
