package builtin

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/streamerio/streamer/pipes"
)

// Stream–stream joins on event time.
//
// stream_join reads two inputs: the first of from: is the left stream, the
// second the right. A left record and a right record join when they have the
// same key and their event times t_l and t_r are close enough:
// t_l − before ≤ t_r ≤ t_l + after. window: w sets before = after = w.
//
// Stream time is the greatest event time the partition task has seen, over
// both inputs; it lives in the store, like window's. The watermark is
// W = stream time − grace. A record whose event time is below the watermark
// when it arrives (stream time counting its own time) is late: it goes to
// the dead letters (late: dlq) or is dropped (late: drop), and is neither
// joined nor stored. An on-time record is joined, in order of event time
// then arrival, with every stored record of the other input of its key that
// it is close enough to, one output each, and then stored itself. So each matching
// pair is emitted once, when the second of the two arrives, whichever input
// that is.
//
// A stored left record at t can match no on-time record any more once
// W > t + after (an on-time right record has t' ≥ W > t + after), and a
// right one once W > t + before: it expires. In a left join, a left
// record that expires without having matched anything is emitted at the
// end of the batch in which that happens, exactly once, with the right
// fields null, in order of time, key, arrival; a partition that receives
// no records keeps its unmatched left records waiting. An outer join does
// the same for right records, which come out as the right fields alone (as
// fields: or into: set them on an empty object).
// Expired records are deleted in steps of purgeLimit per batch.
//
// Outputs are keyed by the key. Their value is the left value with the
// right fields set as in join (fields: or into:). A joined record has the
// later of the two records' timestamps and the headers and origin of the
// one that arrived second; an unmatched left record keeps its timestamp
// and has no headers and no origin (no consumed record produced it).
//
// Stored values are encoded with their input's codec, so that a value
// decoded from the store has the types a fresh decode gives (Avro longs,
// bytes and timestamps stay what they were). The store layout:
//
//	s                                       stream time
//	n                                       sequence counter (8 bytes)
//	r <side> <keyPart(key)> <time> <seq>    <timestamp> <matched> <value>
//	x <expiry> <side> <keyPart(key)> <seq>  indexMark: the expiry index
//
// side is one byte (0 left, 1 right); times are as in window (8 bytes, byte
// order is time order); seq is the counter, 8 bytes big-endian, which makes
// records of one key and time distinct and keeps arrival order. The
// counter lives in the store, so it rolls back with an aborted transaction
// and a restart numbers records as the first run did. A record's value
// starts with its timestamp in ms (8 bytes, as times) and a matched byte,
// which a left join sets to 1 once the left record has matched; an inner
// join leaves it 0 and never rewrites an entry. The index is by expiry,
// time + after for a left record and time + before for a right one. A
// key's records of one side close to a time are one range scan; the
// records that expire as stream time advances are one range of the index.

// StreamJoinConfig configures the stream_join pipe.
type StreamJoinConfig struct {
	Window *time.Duration         `yaml:"window" doc:"Records of the two inputs with the same key join when their event times are at most this far apart, either way. Or give before: and after:."`
	Before *time.Duration         `yaml:"before" doc:"How far a right record's event time may be before the left record's to join it. Default: window."`
	After  *time.Duration         `yaml:"after" doc:"How far a right record's event time may be after the left record's to join it (0: only right records at or before it). Default: window."`
	Time   *pipes.Expr            `yaml:"time" doc:"Event time of a record of either input: a timestamp, milliseconds since the epoch, or an RFC 3339 string. Default: the record timestamp."`
	Grace  time.Duration          `yaml:"grace" doc:"How far behind stream time (the greatest event time seen in the partition, both inputs) a record may be and still join. Default 0."`
	Type   string                 `yaml:"type" default:"inner" enum:"inner,left,outer" doc:"inner emits matched pairs only; left also emits each left record that matched nothing, with the right fields null, once no on-time right record can match it any more; outer does that for right records too, which come out as the right fields alone."`
	Late   string                 `yaml:"late" default:"dlq" enum:"dlq,drop" doc:"A record more than grace behind stream time: dlq fails it with an error saying how late it is (the pipe's on_error applies: dead letter, skip or fail); drop drops it. Late records are neither joined nor kept."`
	Fields map[string]pipes.Field `yaml:"fields" doc:"Output fields set from the right record's value: output field: right field."`
	Into   *pipes.Field           `yaml:"into" doc:"A field receiving the whole right value. Give fields: or into:, not both."`
	Store  string                 `yaml:"store" doc:"State store that keeps the records waiting for a match and the stream time; give each stream_join pipe its own. Default: the pipe's name."`
	Pos    pipes.Pos              `yaml:"-" spec:"pos"`
}

func init() {
	pipes.MustRegister("stream_join", pipes.Spec{
		Summary: "Joins two keyed streams on event time (from: [left, right]): each pair of a left and a right record with the same key whose event times are at most window apart, with a grace period for out-of-order records; inner, left to also emit left records that matched nothing, or outer to emit unmatched records of both sides.",
		Example: "window: 10m\ngrace: 30s\ntime: ts\ntype: left\nfields:\n  paid_amount: amount\n  paid_at: ts",
	}, newStreamJoin)
}

// Sides of a stream join: indexes in Env.Inputs.
const (
	sjLeft  = 0
	sjRight = 1
)

// Key prefixes of the stream_join store.
const (
	sjRecordPrefix = 'r'
	sjIndexPrefix  = 'x'
)

var sjSeqKey = []byte{'n'}

// sjHeader is the length of a stored value's header: timestamp, matched.
const sjHeader = 9

type streamJoin struct {
	adds  joinAdds
	store pipes.Store
	time  *pipes.Program
	// before and after bound a right record's time around a left one's:
	// t_l − before ≤ t_r ≤ t_l + after; grace too. In ms.
	before, after, grace int64
	// kept says which sides' unmatched records come out when they expire:
	// the left in a left join, both in an outer one.
	kept     [2]bool
	dropLate bool
	codecs   [2]pipes.ValueCodec
	consumed [2]bool // Port.Consumed: store Origin.Value as it is
	schema   *pipes.Schema
}

func newStreamJoin(c StreamJoinConfig, env *pipes.Env) (pipes.Pipe, error) {
	var errs []error
	j := &streamJoin{dropLate: c.Late == "drop"}
	j.kept = [2]bool{c.Type != "inner", c.Type == "outer"}
	var leftSchema, rightSchema *pipes.Schema
	if len(env.Inputs) != 2 {
		errs = append(errs, pipes.Errorf(c.Pos, "stream_join reads two inputs, from: [left, right]; it has %d", len(env.Inputs)))
	} else {
		leftSchema, rightSchema = env.Inputs[sjLeft].Schema, env.Inputs[sjRight].Schema
		j.codecs = [2]pipes.ValueCodec{env.Inputs[sjLeft].Codec, env.Inputs[sjRight].Codec}
		for side := range j.consumed {
			j.consumed[side] = env.Inputs[side].Consumed && j.codecs[side] != nil
		}
	}
	var err error
	bound := func(d time.Duration, name string) int64 { // d ≥ 0: decoding refuses negative durations
		ms, err := wholeMillis(d, name, c.Pos)
		if err != nil {
			errs = append(errs, err)
		}
		return ms
	}
	switch {
	case c.Window != nil && (c.Before != nil || c.After != nil):
		errs = append(errs, pipes.Errorf(c.Pos, "give window: (the same either way), or before: and after:, not both"))
	case c.Window != nil && *c.Window <= 0:
		errs = append(errs, pipes.Errorf(c.Pos, "window: must be a positive duration such as 5m"))
	case c.Window != nil:
		j.before = bound(*c.Window, "window")
		j.after = j.before
	case c.Before == nil || c.After == nil:
		errs = append(errs, pipes.Errorf(c.Pos, "say how close in event time records join: window: such as 5m, or before: and after:"))
	default:
		j.before, j.after = bound(*c.Before, "before"), bound(*c.After, "after")
		if *c.Before+*c.After <= 0 {
			errs = append(errs, pipes.Errorf(c.Pos, "before: and after: are both 0: give at least one a positive duration"))
		}
	}
	if j.grace, err = wholeMillis(c.Grace, "grace", c.Pos); err != nil {
		errs = append(errs, err)
	}
	right := "the right input"
	if len(env.Inputs) == 2 {
		right = fmt.Sprintf("right input %q", env.Inputs[sjRight].Dataset)
	}
	adds, addErrs := newJoinAdds(c.Fields, c.Into, c.Pos, rightSchema, right, "right")
	j.adds = adds
	errs = append(errs, addErrs...)
	if c.Time != nil {
		if j.time, err = env.Compile(*c.Time); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if j.store, err = env.StoreOrOwn(c.Store); err != nil {
		return nil, err
	}
	if c.Type == "outer" && leftSchema != nil {
		// An unmatched right record comes out without the left fields.
		leftSchema = leftSchema.Clone()
		for i := range leftSchema.Fields {
			leftSchema.Fields[i].Nullable = true
		}
	}
	j.schema = j.adds.schema(leftSchema, rightSchema)
	return j, nil
}

func (j *streamJoin) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	var clock streamClock
	if err := clock.load(j.store); err != nil {
		return err
	}
	seq, err := j.loadSeq()
	if err != nil {
		return err
	}
	seq0, prev := seq, clock.now
	for i, r := range b.Records {
		side := b.InputOf(i)
		if side != sjLeft && side != sjRight {
			return fmt.Errorf("stream_join: a record of input %d, but it reads two", side)
		}
		t, val, err := j.prepare(r, side)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		clock.observe(t)
		if t < clock.now-j.grace {
			if !j.dropLate {
				out.Fail(r, j.lateError(t, clock.now))
			}
			continue
		}
		kp := keyPart(r.Key)
		matched, err := j.match(r, side, kp, t, out)
		if err != nil {
			return err // the store failed: the batch fails
		}
		if matched && j.kept[side] {
			val[8] = 1
		}
		seq++
		if err := j.store.Put(j.recordKey(side, kp, t, seq), val); err != nil {
			return err
		}
		if err := j.store.Put(j.indexKey(t+j.reach(side), side, kp, seq), indexMark); err != nil {
			return err
		}
	}
	if err := clock.save(j.store); err != nil {
		return err
	}
	if seq != seq0 {
		if err := j.store.Put(sjSeqKey, binary.BigEndian.AppendUint64(nil, seq)); err != nil {
			return err
		}
	}
	if clock.now == minInt {
		return nil
	}
	upTo := clock.now - j.grace - 1 // the expiries below the watermark
	if (j.kept[sjLeft] || j.kept[sjRight]) && clock.now > prev {
		if err := j.emitUnmatchedUpTo(prev, upTo, out); err != nil {
			return err
		}
	}
	return purge(j.store, sjIndexPrefix, upTo, func(t int64, rest []byte) error {
		side, kp, seq, err := j.parseIndex(rest)
		if err != nil {
			return err
		}
		return j.store.Delete(j.recordKey(side, kp, t-j.reach(side), seq))
	})
}

// prepare checks a record of a side and returns its event time and the
// value to store for it (with the matched byte 0). Its errors are the
// record's.
func (j *streamJoin) prepare(r *pipes.Record, side int) (int64, []byte, error) {
	if r.Key == nil {
		return 0, nil, errors.New("stream_join needs keyed records: the key says which records of the two inputs join")
	}
	if _, ok := r.Value.(map[string]any); !ok {
		if side == sjLeft {
			return 0, nil, fmt.Errorf("stream_join needs left records whose values are objects, got %T", r.Value)
		}
		if j.adds.into == "" {
			return 0, nil, fmt.Errorf("stream_join: fields: needs right records whose values are objects, got %T: use into: to take the value whole", r.Value)
		}
	}
	t, err := eventTime(j.time, r)
	if err != nil {
		return 0, nil, err
	}
	val := append(appendTime(make([]byte, 0, 64), r.Timestamp.UnixMilli()), 0)
	if j.consumed[side] && r.Origin != nil {
		// The bytes it was decoded from: no need to encode it again.
		return t, append(val, r.Origin.Value...), nil
	}
	if val, err = j.encode(val, side, r.Value); err != nil {
		return 0, nil, fmt.Errorf("stream_join: cannot store the %s value: %w", sideName(side), err)
	}
	return t, val, nil
}

// stored is a record of the store read back for a match.
type stored struct {
	key []byte // the record key in the store
	val []byte
}

// match emits r, of side at event time t, joined with each stored record of
// the other side and key close enough to t, and reports whether there was
// any. In a left join, it marks the left records that r matches as matched.
func (j *streamJoin) match(r *pipes.Record, side int, kp []byte, t int64, out *pipes.Output) (bool, error) {
	other := 1 - side
	prefix := append([]byte{sjRecordPrefix, byte(other)}, kp...)
	// A left record at t takes right ones in [t − before, t + after]; a
	// right one at t takes left ones in [t − after, t + before].
	below, above := j.before, j.after
	if side == sjRight {
		below, above = j.after, j.before
	}
	lo := appendTime(bytes.Clone(prefix), t-below)
	hi := appendTime(prefix, t+above+1)
	var found []stored
	err := j.store.Range(lo, hi, func(k, v []byte) bool {
		found = append(found, stored{key: bytes.Clone(k), val: bytes.Clone(v)})
		return true
	})
	if err != nil || len(found) == 0 {
		return false, err
	}
	// The store is changed only after the scan: an iterator need not
	// survive writes under it.
	for i, s := range found {
		if len(s.val) < sjHeader {
			return false, fmt.Errorf("stream_join: corrupt record in the state store under %q", s.key)
		}
		v, err := j.decode(other, s.val[sjHeader:])
		if err != nil {
			return false, fmt.Errorf("stream_join: decoding a stored %s value: %w", sideName(other), err)
		}
		// Each output gets a value of its own; the last one takes r's, which
		// the pipe owns and no longer needs.
		rval := r.Value
		if i < len(found)-1 {
			rval = pipes.CloneValue(rval)
		}
		lv, rv := v, rval
		if side == sjLeft {
			lv, rv = rval, v
		}
		o, err := j.joined(r.Key, lv, rv, true)
		if err != nil {
			return false, err
		}
		o.Timestamp = r.Timestamp
		if ts := decodeTime(s.val[:8]); ts > r.Timestamp.UnixMilli() {
			o.Timestamp = time.UnixMilli(ts).UTC()
		}
		o.Headers, o.Origin = r.Headers, r.Origin
		out.Emit(0, o)
		if j.kept[other] && s.val[8] == 0 {
			s.val[8] = 1
			if err := j.store.Put(s.key, s.val); err != nil {
				return false, err
			}
		}
	}
	return true, nil
}

// joined returns the output of a left value and a right one (found false:
// none). Values read back from the store have the types their input's codec
// gave them when they arrived, so an unexpected type is the store's fault.
func (j *streamJoin) joined(key []byte, lv, rv any, found bool) (*pipes.Record, error) {
	m, ok := lv.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("stream_join: a stored left value decoded as %T, not an object", lv)
	}
	if !j.adds.apply(m, rv, found) {
		return nil, fmt.Errorf("stream_join: a stored right value decoded as %T, not an object", rv)
	}
	return &pipes.Record{Key: key, Value: m}, nil
}

// emitUnmatchedUpTo emits, in a left or outer join, the records of the
// kept sides that matched nothing and expired as stream time went from prev on: those whose expiry
// is in (prev − grace − 1, upTo], one range of the index. They are
// emitted here, all of them, rather than as purge deletes them, purgeLimit
// at a time: a partition that gets no more records must not keep them
// waiting. Records that expired earlier were emitted then.
func (j *streamJoin) emitUnmatchedUpTo(prev, upTo int64, out *pipes.Output) error {
	lo := []byte{sjIndexPrefix}
	if prev != minInt {
		lo = appendTime(lo, prev-j.grace)
	}
	hi := appendTime([]byte{sjIndexPrefix}, upTo+1)
	var expired [][]byte
	err := j.store.Range(lo, hi, func(k, _ []byte) bool {
		if len(k) > 9 && k[9] <= sjRight && j.kept[k[9]] {
			expired = append(expired, bytes.Clone(k))
		}
		return true
	})
	if err != nil {
		return err
	}
	for _, ik := range expired {
		side, kp, seq, err := j.parseIndex(ik[9:])
		if err != nil {
			return err
		}
		k := j.recordKey(side, kp, decodeTime(ik[1:9])-j.reach(side), seq)
		v, ok, err := j.store.Get(k)
		if err != nil {
			return err
		}
		if ok && len(v) < sjHeader {
			return fmt.Errorf("stream_join: corrupt record in the state store under %q", k)
		}
		if ok && v[8] == 0 {
			if err := j.emitUnmatched(side, kp, v, out); err != nil {
				return err
			}
		}
	}
	return nil
}

// parseIndex splits the rest of an index key, after its time.
func (j *streamJoin) parseIndex(rest []byte) (side int, kp []byte, seq uint64, err error) {
	if len(rest) < 1+1+8 || (rest[0] != sjLeft && rest[0] != sjRight) {
		return 0, nil, 0, fmt.Errorf("stream_join: corrupt index entry in the state store: %q", rest)
	}
	return int(rest[0]), rest[1 : len(rest)-8], binary.BigEndian.Uint64(rest[len(rest)-8:]), nil
}

// emitUnmatched emits a record that matched nothing, from its stored
// value: a left one with the right fields null, a right one as the right
// fields alone.
func (j *streamJoin) emitUnmatched(side int, kp, v []byte, out *pipes.Output) error {
	key, err := keyOfPart(kp)
	if err != nil {
		return err
	}
	val, err := j.decode(side, v[sjHeader:])
	if err != nil {
		return fmt.Errorf("stream_join: decoding a stored %s value: %w", sideName(side), err)
	}
	var o *pipes.Record
	if side == sjLeft {
		o, err = j.joined(bytes.Clone(key), val, nil, false)
	} else {
		o, err = j.joined(bytes.Clone(key), map[string]any{}, val, true)
	}
	if err != nil {
		return err
	}
	o.Timestamp = time.UnixMilli(decodeTime(v[:8])).UTC()
	out.Emit(0, o)
	return nil
}

// lateError says how late a record is.
func (j *streamJoin) lateError(t, now int64) error {
	return fmt.Errorf("late record: event time %s is %v behind stream time %s, more than grace %v: the records it would join may be gone",
		formatTime(t), dur(now-t), formatTime(now), dur(j.grace))
}

func (j *streamJoin) loadSeq() (uint64, error) {
	v, ok, err := j.store.Get(sjSeqKey)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("stream_join: corrupt sequence counter in the state store: %d bytes", len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func (j *streamJoin) recordKey(side int, kp []byte, t int64, seq uint64) []byte {
	k := make([]byte, 0, 2+len(kp)+16)
	k = append(append(k, sjRecordPrefix, byte(side)), kp...)
	return binary.BigEndian.AppendUint64(appendTime(k, t), seq)
}

// reach is how far after its own time a record of side can still be
// matched: its expiry is its time plus that.
func (j *streamJoin) reach(side int) int64 {
	if side == sjLeft {
		return j.after
	}
	return j.before
}

// indexKey is the expiry index entry of a record that expires at t.
func (j *streamJoin) indexKey(t int64, side int, kp []byte, seq uint64) []byte {
	k := make([]byte, 0, 2+len(kp)+16)
	k = append(appendTime(append(k, sjIndexPrefix), t), byte(side))
	return binary.BigEndian.AppendUint64(append(k, kp...), seq)
}

// encode appends the encoding of a side's value: with the input's codec,
// or as JSON in hand-built Envs, which have none.
func (j *streamJoin) encode(dst []byte, side int, v any) ([]byte, error) {
	if c := j.codecs[side]; c != nil {
		return c.AppendEncode(dst, v)
	}
	js, err := json.Marshal(v)
	return append(dst, js...), err
}

func (j *streamJoin) decode(side int, b []byte) (any, error) {
	if c := j.codecs[side]; c != nil {
		return c.Decode(b)
	}
	var v any
	err := json.Unmarshal(b, &v)
	return v, err
}

func sideName(side int) string {
	if side == sjLeft {
		return "left"
	}
	return "right"
}

func (j *streamJoin) OutputSchema(int) *pipes.Schema { return j.schema }

// Grace is the grace period (pipes.GracePeriod).
func (j *streamJoin) Grace() time.Duration { return dur(j.grace) }

// ReadsInterleaved says that the join wants its two inputs in one batch,
// in arrival order: lateness and matches depend on it.
func (j *streamJoin) ReadsInterleaved() bool { return true }

var (
	_ pipes.SchemaDeriver     = (*streamJoin)(nil)
	_ pipes.InterleavedReader = (*streamJoin)(nil)
	_ pipes.GracePeriod       = (*streamJoin)(nil)
)
