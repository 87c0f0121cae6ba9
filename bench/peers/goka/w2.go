package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/lovoo/goka"
	"github.com/lovoo/goka/codec"
	"github.com/lovoo/goka/storage"
)

// W2 (bench/peers/w2.go): each order joins its customer (goka.Join: the
// customers topic, co-partitioned with the orders, read by each partition's
// processor into local storage as a table), then a 1-minute tumbling window
// per customer (grace 0, event time = record timestamp) counts the orders,
// sums their amounts and keeps the segment, emitted once when the window
// closes.
//
// Goka has no windows. The open windows of a customer are its value in the
// group table (goka.Persist, the topic <group>-table: a JSON map from window
// start to count, sum and segment), written with ctx.SetValue on each of the
// customer's orders. A window closes when its partition's stream time (the
// largest record timestamp the partition has seen) passes its end, which is
// usually on another customer's order; a Goka callback can read and write
// only its own key's value, so each partition's processor also keeps its
// open windows in memory (partState) and emits the closed ones from there.
// A customer's stored value keeps its emitted windows until its next order
// drops them. After a crash the memory would have to be rebuilt from the
// group table, which a callback cannot iterate: this peer does not do that
// (the benchmark does not crash it), and Goka is at least once in any case.

type w2Agg struct {
	Orders  int64   `json:"orders"`
	Revenue float64 `json:"revenue"`
	Segment string  `json:"segment"`
}

// w2Open is a customer's open windows by start (ms): the group table's value.
type w2Open map[int64]*w2Agg

type w2Codec struct{}

func (w2Codec) Encode(v any) ([]byte, error) { return json.Marshal(v) }

func (w2Codec) Decode(b []byte) (any, error) {
	var o w2Open
	err := json.Unmarshal(b, &o)
	return o, err
}

// partState is one partition's stream time and open windows, by start and
// customer. Only the partition's processor goroutine uses it.
type partState struct {
	streamTime int64 // ms
	open       map[int64]map[string]*w2Agg
}

const w2Size = 60_000 // ms

func rfc3339(ms int64) string { return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano) }

func runW2(brokers []string, orders, customers, output, group string, records int64, stateDir string) error {
	if stateDir == "" {
		dir, err := os.MkdirTemp("", group+"-goka-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		stateDir = dir
	}
	tm := goka.NewTopicManagerConfig()
	tm.Table.Replication, tm.Stream.Replication = 1, 1 // one broker
	build := func(group string, on func(), failed func(error)) (*goka.GroupGraph, []goka.ProcessorOption) {
		var mu sync.Mutex
		parts := map[int32]*partState{}
		state := func(p int32) *partState {
			mu.Lock()
			defer mu.Unlock()
			s := parts[p]
			if s == nil {
				s = &partState{open: map[int64]map[string]*w2Agg{}}
				parts[p] = s
			}
			return s
		}
		emit := func(ctx goka.Context, key string, start int64, a *w2Agg) error {
			b, err := json.Marshal(map[string]any{"key": key, "window_start": rfc3339(start), "window_end": rfc3339(start + w2Size),
				"orders": a.Orders, "revenue": a.Revenue, "segment": a.Segment})
			if err != nil {
				return err
			}
			ctx.Emit(goka.Stream(output), key, b)
			return nil
		}
		cb := func(ctx goka.Context, msg any) {
			on()
			fail := func(err error) {
				failed(err)
				ctx.Fail(err)
			}
			c := ctx.Join(goka.Table(customers))
			if c == nil {
				return // inner join: a customer not in the table
			}
			var customer struct {
				Segment string `json:"segment"`
			}
			if err := json.Unmarshal(c.([]byte), &customer); err != nil {
				fail(fmt.Errorf("customer %s: %w", ctx.Key(), err))
			}
			var order struct {
				Amount float64 `json:"amount"`
			}
			if err := json.Unmarshal(msg.([]byte), &order); err != nil {
				fail(fmt.Errorf("order %s: %w", ctx.Key(), err))
			}
			s := state(ctx.Partition())
			ts := ctx.Timestamp().UnixMilli()
			if ts > s.streamTime {
				s.streamTime = ts
				for start, keys := range s.open {
					if start+w2Size > s.streamTime {
						continue
					}
					for k, a := range keys {
						if err := emit(ctx, k, start, a); err != nil {
							fail(err)
						}
					}
					delete(s.open, start)
				}
			}
			start := ts - ts%w2Size
			if start+w2Size <= s.streamTime {
				return // late: its window has closed (grace 0)
			}
			keys := s.open[start]
			if keys == nil {
				keys = map[string]*w2Agg{}
				s.open[start] = keys
			}
			a := keys[ctx.Key()]
			if a == nil {
				a = &w2Agg{}
				keys[ctx.Key()] = a
			}
			a.Orders++
			a.Revenue += order.Amount
			a.Segment = customer.Segment
			// The customer's open windows into the group table (its emitted ones dropped).
			v := w2Open{}
			for st, ks := range s.open {
				if x := ks[ctx.Key()]; x != nil {
					v[st] = x
				}
			}
			ctx.SetValue(v)
		}
		return goka.DefineGroup(goka.Group(group),
				goka.Input(goka.Stream(orders), new(codec.Bytes), cb),
				goka.Join(goka.Table(customers), new(codec.Bytes)),
				goka.Persist(w2Codec{}),
				goka.Output(goka.Stream(output), new(codec.Bytes)),
			), []goka.ProcessorOption{
				goka.WithStorageBuilder(storage.DefaultBuilder(stateDir)),
				goka.WithTopicManagerBuilder(goka.TopicManagerBuilderWithTopicManagerConfig(tm)),
			}
	}
	return run(brokers, group, records, build)
}
