package builtin

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/streamerio/streamer/pipes"
)

// AggregateConfig configures the aggregate pipe.
type AggregateConfig struct {
	Fields map[string]AggregateField `yaml:"fields" required:"true" doc:"Output fields, each an aggregate over the records of a key."`
	Store  string                    `yaml:"store" doc:"State store that keeps the aggregates. Default: the pipe's name."`
	TTL    time.Duration             `yaml:"ttl" doc:"Delete a key's aggregates once stream time (the largest event time seen in the partition) reaches its last update plus ttl; its next record starts afresh. Default: keep them forever. Changing ttl on or off needs a new store: the layouts differ."`
	Time   *pipes.Expr               `yaml:"time" doc:"Event time of a record, for ttl: a timestamp, milliseconds since the epoch, or an RFC 3339 string. Default: the record timestamp."`
	Pos    pipes.Pos                 `yaml:"-" spec:"pos"`
}

// AggregateField is one aggregate.
type AggregateField struct {
	Op string      `yaml:"op" required:"true" enum:"count,sum,min,max,avg,last" doc:"count, sum, min, max, avg or last."`
	Of *pipes.Expr `yaml:"of" doc:"Expression aggregated (not for count)."`
}

func init() {
	pipes.MustRegister("aggregate", pipes.Spec{
		Summary: "Keeps running aggregates per record key in a state store, and emits the updated aggregates of a key for each record.",
		Example: "fields:\n  orders: {op: count}\n  revenue: {op: sum, of: amount}\n  biggest: {op: max, of: amount}\n  last_country: {op: last, of: country}\nttl: 720h",
	}, newAggregate)
}

// aggregator is what the aggregate and window pipes share: the configured
// aggregates, compiled, and how their accumulators update, merge and read.
type aggregator struct {
	fields []aggField
	// lastByTime makes "last" the value of the record with the greatest
	// event time rather than the last one processed: windows see records
	// out of order, and sessions merge.
	lastByTime bool
}

type aggField struct {
	name string
	op   string
	of   *pipes.Program
}

// newAggregator compiles the aggregates of a fields: block, in name order so
// that outputs and errors are deterministic.
func newAggregator(fields map[string]AggregateField, env *pipes.Env) (*aggregator, error) {
	g := &aggregator{}
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(fields)) {
		f := fields[name]
		af := aggField{name: name, op: f.Op}
		switch {
		case f.Op == "count" && f.Of != nil:
			errs = append(errs, pipes.Errorf(f.Of.Pos, "field %q: count takes no of:", name))
		case f.Op != "count" && f.Op != "" && f.Of == nil:
			errs = append(errs, fmt.Errorf("field %q: %s needs of:, the expression to aggregate", name, f.Op))
		case f.Of != nil:
			p, err := env.Compile(*f.Of)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			af.of = p
		}
		g.fields = append(g.fields, af)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return g, nil
}

// acc is one key's (or window's) accumulators, by output field, as stored
// (JSON).
type acc map[string]*accField

type accField struct {
	N    int64    `json:"n,omitempty"`
	Sum  float64  `json:"s,omitempty"`
	Best *float64 `json:"b,omitempty"` // min or max so far
	Last any      `json:"l,omitempty"`
	// At is the event time (ms) of Last, when last is by event time.
	At *int64 `json:"t,omitempty"`
}

// eval evaluates the aggregated expressions over a record, one value per
// field (nil for count).
func (g *aggregator) eval(r *pipes.Record) ([]any, error) {
	vals := make([]any, len(g.fields))
	for i, f := range g.fields {
		if f.of == nil {
			continue
		}
		v, err := f.of.Eval(r)
		if err != nil {
			return nil, err
		}
		vals[i] = v
	}
	return vals, nil
}

// update folds one record's values, of event time at, into cur. It checks
// every value before changing anything, so that a failed record leaves cur
// as it was.
func (g *aggregator) update(cur acc, vals []any, at int64) error {
	nums := make([]float64, len(g.fields))
	for i, f := range g.fields {
		if f.op == "count" || f.op == "last" || vals[i] == nil {
			continue
		}
		x, ok := pipes.Float(vals[i])
		if !ok {
			return fmt.Errorf("field %q: %s of %q gave %T, not a number", f.name, f.op, f.of.Source(), vals[i])
		}
		nums[i] = x
	}
	for i, f := range g.fields {
		st := cur[f.name]
		if st == nil {
			st = &accField{}
			cur[f.name] = st
		}
		switch {
		case f.op == "last":
			if !g.lastByTime {
				st.Last = vals[i]
			} else if st.At == nil || at >= *st.At {
				st.Last, st.At = vals[i], &at
			}
		case f.op == "count":
			st.N++
		case vals[i] == nil:
			// A null does not count toward sums and extremes.
		default:
			x := nums[i]
			st.N++
			st.Sum += x
			if st.Best == nil || (f.op == "min" && x < *st.Best) || (f.op == "max" && x > *st.Best) {
				st.Best = &x
			}
		}
	}
	return nil
}

// merge folds src into dst, as when two session windows become one.
func (g *aggregator) merge(dst, src acc) {
	for _, f := range g.fields {
		s := src[f.name]
		if s == nil {
			continue
		}
		d := dst[f.name]
		if d == nil {
			dst[f.name] = s
			continue
		}
		d.N += s.N
		d.Sum += s.Sum
		if s.Best != nil && (d.Best == nil || (f.op == "min" && *s.Best < *d.Best) || (f.op == "max" && *s.Best > *d.Best)) {
			d.Best = s.Best
		}
		if f.op == "last" && s.At != nil && (d.At == nil || *s.At > *d.At) {
			d.Last, d.At = s.Last, s.At
		}
	}
}

// result writes the aggregates of cur into m.
func (g *aggregator) result(m map[string]any, cur acc) {
	for _, f := range g.fields {
		st := cur[f.name]
		if st == nil {
			st = &accField{}
		}
		switch f.op {
		case "count":
			m[f.name] = st.N
		case "sum":
			m[f.name] = st.Sum
		case "avg":
			if st.N == 0 {
				m[f.name] = nil
			} else {
				m[f.name] = st.Sum / float64(st.N)
			}
		case "min", "max":
			if st.Best == nil {
				m[f.name] = nil
			} else {
				m[f.name] = *st.Best
			}
		case "last":
			m[f.name] = st.Last
		}
	}
}

// schemaFields returns the output fields of the aggregates.
func (g *aggregator) schemaFields() []pipes.SchemaField {
	var out []pipes.SchemaField
	for _, f := range g.fields {
		k := pipes.Float64
		switch f.op {
		case "count":
			k = pipes.Int64
		case "last":
			k = f.of.Kind()
		}
		out = append(out, pipes.SchemaField{Name: f.name, Kind: k, Nullable: f.op == "min" || f.op == "max" || f.op == "last"})
	}
	return out
}

// programs returns the compiled expressions, for FieldUser.
func (g *aggregator) programs() []*pipes.Program {
	var progs []*pipes.Program
	for _, f := range g.fields {
		if f.of != nil {
			progs = append(progs, f.of)
		}
	}
	return progs
}

type aggregate struct {
	agg    *aggregator
	store  pipes.Store
	schema *pipes.Schema
	// With a ttl, the store holds three kinds of keys instead of bare
	// record keys (which could collide with an index):
	//   s                      stream time
	//   k <record key>         8-byte last update time + JSON accumulators
	//   u <update time> <key>  the time index, which expiry range-scans
	ttl  int64 // ms; 0: no expiry
	time *pipes.Program
}

// Key prefixes of an aggregate with a ttl.
const (
	aggDataPrefix  = 'k'
	aggIndexPrefix = 'u'
)

func newAggregate(c AggregateConfig, env *pipes.Env) (pipes.Pipe, error) {
	g, err := newAggregator(c.Fields, env)
	var errs []error
	if err != nil {
		errs = append(errs, err)
	}
	a := &aggregate{agg: g}
	if c.TTL > 0 {
		if a.ttl, err = wholeMillis(c.TTL, "ttl", c.Pos); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Time != nil {
		if c.TTL == 0 {
			errs = append(errs, pipes.Errorf(c.Time.Pos, "time: is only used to expire keys: set ttl too, or remove it"))
		} else if a.time, err = env.Compile(*c.Time); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if a.store, err = env.StoreOrOwn(c.Store); err != nil {
		return nil, err
	}
	if env.InputSchema() != nil {
		a.schema = &pipes.Schema{Fields: append([]pipes.SchemaField{{Name: "key", Kind: pipes.String}}, g.schemaFields()...)}
	}
	return a, nil
}

func (a *aggregate) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	var clock streamClock
	if a.ttl > 0 {
		if err := clock.load(a.store); err != nil {
			return err
		}
	}
	for _, r := range b.Records {
		if r.Key == nil {
			out.Fail(r, errors.New("aggregate needs keyed records: the key says whose aggregates to update"))
			continue
		}
		vals, err := a.agg.eval(r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		var at int64
		if a.ttl > 0 {
			if at, err = eventTime(a.time, r); err != nil {
				out.Fail(r, err)
				continue
			}
		}
		clock.observe(at)
		cur, updated, err := a.load(r.Key, clock.now)
		if err != nil {
			return err // the store failed: the batch fails
		}
		if err := a.agg.update(cur, vals, at); err != nil {
			out.Fail(r, err)
			continue
		}
		if err := a.save(r.Key, cur, updated, max(updated, at)); err != nil {
			return err
		}
		v := map[string]any{"key": string(r.Key)}
		a.agg.result(v, cur)
		out.Emit(0, &pipes.Record{Key: r.Key, Timestamp: r.Timestamp, Headers: r.Headers, Origin: r.Origin, Value: v})
	}
	if a.ttl > 0 {
		if err := clock.save(a.store); err != nil {
			return err
		}
		return a.expire(clock.now)
	}
	return nil
}

// load returns the accumulators of key and, with a ttl, the time of their
// last update (minInt when there are none). Aggregates whose ttl has run
// out count as absent even before expire deletes them, so that the result
// does not depend on how far purging got.
func (a *aggregate) load(key []byte, now int64) (acc, int64, error) {
	cur := acc{}
	if a.ttl == 0 {
		v, ok, err := a.store.Get(key)
		if err != nil || !ok {
			return cur, minInt, err
		}
		if err := unmarshalState(v, &cur); err != nil {
			return nil, 0, fmt.Errorf("aggregate: corrupt state for key %q: %w", key, err)
		}
		return cur, minInt, nil
	}
	v, ok, err := a.store.Get(prefixed(aggDataPrefix, key))
	if err != nil || !ok {
		return cur, minInt, err
	}
	if len(v) < 8 {
		return nil, 0, fmt.Errorf("aggregate: corrupt state for key %q: %d bytes", key, len(v))
	}
	updated := decodeTime(v)
	if err := unmarshalState(v[8:], &cur); err != nil {
		return nil, 0, fmt.Errorf("aggregate: corrupt state for key %q: %w", key, err)
	}
	if updated+a.ttl <= now {
		// Expired: start afresh; drop the stale index entry now.
		if err := a.store.Delete(aggIndexKey(updated, key)); err != nil {
			return nil, 0, err
		}
		return acc{}, minInt, nil
	}
	return cur, updated, nil
}

// save writes the accumulators of key; with a ttl, under their new update
// time, moving the index entry if that changed.
func (a *aggregate) save(key []byte, cur acc, old, updated int64) error {
	js, err := marshalState(cur)
	if err != nil {
		return err
	}
	if a.ttl == 0 {
		return a.store.Put(key, js)
	}
	if err := a.store.Put(prefixed(aggDataPrefix, key), append(appendTime(nil, updated), js...)); err != nil {
		return err
	}
	if old == updated {
		return nil
	}
	if old != minInt {
		if err := a.store.Delete(aggIndexKey(old, key)); err != nil {
			return err
		}
	}
	return a.store.Put(aggIndexKey(updated, key), indexMark)
}

// expire deletes up to purgeLimit keys whose last update is ttl or more
// behind stream time: a range scan of the time index up to that bound, so
// the cost is in the expired keys, never in all of them.
func (a *aggregate) expire(now int64) error {
	if now == minInt {
		return nil
	}
	return purge(a.store, aggIndexPrefix, now-a.ttl, func(t int64, rest []byte) error {
		k := prefixed(aggDataPrefix, rest)
		v, ok, err := a.store.Get(k)
		if err != nil {
			return err
		}
		// The index entry may be stale only if the data moved on: delete
		// the data only when it is the version this entry points at.
		if ok && len(v) >= 8 && decodeTime(v) == t {
			return a.store.Delete(k)
		}
		return nil
	})
}

func aggIndexKey(t int64, key []byte) []byte {
	return append(appendTime([]byte{aggIndexPrefix}, t), key...)
}

func (a *aggregate) OutputSchema(int) *pipes.Schema { return a.schema }

func (a *aggregate) UsedFields() ([]string, bool) {
	progs := a.agg.programs()
	if a.time != nil {
		progs = append(progs, a.time)
	}
	return pipes.UsedFields(progs)
}

var (
	_ pipes.SchemaDeriver = (*aggregate)(nil)
	_ pipes.FieldUser     = (*aggregate)(nil)
)

// decodeTime reads a time written by appendTime.
func decodeTime(b []byte) int64 {
	return int64(binary.BigEndian.Uint64(b) ^ 1<<63)
}
