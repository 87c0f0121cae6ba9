package builtin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/streamerio/streamer/pipes"
)

// DedupeConfig configures the dedupe pipe.
type DedupeConfig struct {
	ID      pipes.Expr    `yaml:"id" required:"true" doc:"Expression giving a record's identity, such as order_id. Records with the same id must share a partition (key them by it): ids are remembered per partition."`
	Horizon time.Duration `yaml:"horizon" required:"true" doc:"How long an id is remembered, in event time: from its first occurrence at t until stream time (the greatest event time seen in the partition) reaches t + horizon. Records with a remembered id are dropped."`
	Time    *pipes.Expr   `yaml:"time" doc:"Event time of a record: a timestamp, milliseconds since the epoch, or an RFC 3339 string. Default: the record timestamp."`
	Store   string        `yaml:"store" doc:"State store that remembers the ids; give each dedupe pipe its own. Default: the pipe's name."`
	Pos     pipes.Pos     `yaml:"-" spec:"pos"`
}

func init() {
	pipes.MustRegister("dedupe", pipes.Spec{
		Summary:     "Drops records whose id was already seen within a horizon of event time, keeping the first occurrence.",
		Example:     "id: order_id\nhorizon: 1h\ntime: created_at",
		KeepsSchema: true,
	}, newDedupe)
}

// dedupe remembers ids in its store:
//
//	s                  stream time
//	i <id>             8-byte event time of the id's first occurrence
//	x <time> <id>      indexMark: the index by that time, which expiry scans
//
// A record whose event time is already horizon or more behind stream time
// cannot be checked against ids forgotten since; it passes, and is not
// remembered.
type dedupe struct {
	id      *pipes.Program
	time    *pipes.Program
	horizon int64 // ms
	store   pipes.Store
	schema  *pipes.Schema
}

// Key prefixes of the dedupe store.
const (
	dedupeIDPrefix    = 'i'
	dedupeIndexPrefix = 'x'
)

func newDedupe(c DedupeConfig, env *pipes.Env) (pipes.Pipe, error) {
	var errs []error
	d := &dedupe{schema: env.InputSchema()}
	var err error
	if d.id, err = env.Compile(c.ID); err != nil {
		errs = append(errs, err)
	}
	if c.Time != nil {
		if d.time, err = env.Compile(*c.Time); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Horizon <= 0 {
		errs = append(errs, pipes.Errorf(c.Pos, "horizon: must be a positive duration such as 1h"))
	} else if d.horizon, err = wholeMillis(c.Horizon, "horizon", c.Pos); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if d.store, err = env.StoreOrOwn(c.Store); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *dedupe) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	var clock streamClock
	if err := clock.load(d.store); err != nil {
		return err
	}
	for _, r := range b.Records {
		v, err := d.id.Eval(r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		id, err := idBytes(v, d.id)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		t, err := eventTime(d.time, r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		clock.observe(t)
		first, err := d.check(id, t, clock.now)
		if err != nil {
			return err // the store failed: the batch fails
		}
		if first {
			out.Emit(0, r)
		}
	}
	if err := clock.save(d.store); err != nil {
		return err
	}
	if clock.now == minInt {
		return nil
	}
	return purge(d.store, dedupeIndexPrefix, clock.now-d.horizon, func(t int64, id []byte) error {
		k := prefixed(dedupeIDPrefix, id)
		v, ok, err := d.store.Get(k)
		if err != nil || !ok || len(v) != 8 || decodeTime(v) != t {
			return err // already replaced by a newer occurrence
		}
		return d.store.Delete(k)
	})
}

// check reports whether id, seen at event time t, is a first occurrence,
// and remembers it if so. An id whose horizon has passed counts as
// forgotten whether or not purge has deleted it yet.
func (d *dedupe) check(id []byte, t, now int64) (bool, error) {
	k := prefixed(dedupeIDPrefix, id)
	v, ok, err := d.store.Get(k)
	if err != nil {
		return false, err
	}
	if ok {
		if len(v) != 8 {
			return false, fmt.Errorf("dedupe: corrupt state for id %q", id)
		}
		seen := decodeTime(v)
		if seen+d.horizon > now {
			return false, nil
		}
		if err := d.store.Delete(append(appendTime([]byte{dedupeIndexPrefix}, seen), id...)); err != nil {
			return false, err
		}
	}
	if t+d.horizon <= now {
		// Too old to remember: it would be forgotten at once.
		if ok {
			return true, d.store.Delete(k)
		}
		return true, nil
	}
	if err := d.store.Put(k, appendTime(nil, t)); err != nil {
		return true, err
	}
	return true, d.store.Put(append(appendTime([]byte{dedupeIndexPrefix}, t), id...), indexMark)
}

// idBytes encodes an id value for the store. A type byte keeps the string
// "1" and the number 1 apart; equal numbers encode alike whatever their Go
// type (a JSON 7 decodes as float64, an Avro one as int64), and integers
// keep every digit.
func idBytes(v any, p *pipes.Program) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return nil, fmt.Errorf("id %q is null", p.Source())
	case string:
		return append([]byte{'s'}, x...), nil
	case []byte:
		return append([]byte{'b'}, x...), nil
	case int:
		return strconv.AppendInt([]byte{'n'}, int64(x), 10), nil
	case int32:
		return strconv.AppendInt([]byte{'n'}, int64(x), 10), nil
	case int64:
		return strconv.AppendInt([]byte{'n'}, x, 10), nil
	}
	if f, ok := pipes.Float(v); ok {
		if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return strconv.AppendInt([]byte{'n'}, int64(f), 10), nil
		}
		return strconv.AppendFloat([]byte{'n'}, f, 'g', -1, 64), nil
	}
	js, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("id %q gave %T, which has no encoding: %w", p.Source(), v, err)
	}
	return append([]byte{'j'}, js...), nil
}

func (d *dedupe) OutputSchema(int) *pipes.Schema { return d.schema }

func (d *dedupe) UsedFields() ([]string, bool) {
	progs := []*pipes.Program{d.id}
	if d.time != nil {
		progs = append(progs, d.time)
	}
	return pipes.UsedFields(progs)
}

var (
	_ pipes.SchemaDeriver = (*dedupe)(nil)
	_ pipes.FieldUser     = (*dedupe)(nil)
)
