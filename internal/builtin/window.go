package builtin

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/streamerio/streamer/pipes"
)

// Windows on event time.
//
// A window is a half-open interval [start, end) of event time, per record
// key. Tumbling windows of size s are [k·s, k·s+s); hopping windows of size
// s advancing by a are [k·a, k·a+s), so a record falls in s/a of them; a
// session is the union of [t, t+gap) over a key's records, so records less
// than gap apart share a session, and a record between two sessions merges
// them.
//
// Stream time is the greatest event time the partition task has seen. It
// lives in the store, so it survives restarts and rebalances. A window
// closes once stream time reaches end + grace. A record only ever lands in
// open windows:
//   - tumbling and hopping: a record goes to those of its windows that are
//     still open; it is late when none is;
//   - session: a record is late when its own [t, t+gap) has closed, or when
//     it would join a session that has closed. Closed sessions are kept for
//     retention ≥ gap, which is as long as a record can still touch them
//     without being late by its own time, so this is always detected.
//
// With emit: close, a window is emitted exactly once, when it closes: the
// result is final. Closing happens as stream time advances, at the end of
// each batch, in order of window end, then key; a partition that receives
// no records keeps its windows open. With emit: update, each record emits
// the windows it changed (by start); a session merge emits the merged
// session and does not retract the sessions it replaced.
//
// Outputs are keyed by the record key. Their value holds key, window_start
// and window_end (RFC 3339 in UTC, with a fraction only when the time has
// one) and the aggregates; their timestamp is the greatest record timestamp
// among the window's records, so it is never ahead of the input.
//
// The store layout makes closing and expiry range scans in time order:
//
//	s                                      stream time
//	w <len key> <key> <end> <start>        {ts, accumulators} of a window
//	e <end> <len key> <key> <start>        indexMark: the index by window end
//
// Times are 8-byte big-endian milliseconds with the sign bit flipped, so
// byte order is time order. Within a key, windows sort by end; as sessions
// never overlap, that is also start order, so finding the sessions a record
// touches is one bounded scan. Windows that close between two stream times
// are one range of the end index, and so are expired ones.

// WindowConfig configures the window pipe.
type WindowConfig struct {
	Type      string                    `yaml:"type" required:"true" enum:"tumbling,hopping,session" doc:"tumbling: fixed windows of size, back to back; hopping: windows of size starting every advance; session: a key's records less than gap apart."`
	Size      time.Duration             `yaml:"size" doc:"Length of a window (tumbling and hopping). Windows are aligned to the Unix epoch."`
	Advance   time.Duration             `yaml:"advance" doc:"hopping: distance between the starts of consecutive windows, at most size."`
	Gap       time.Duration             `yaml:"gap" doc:"session: a key's session ends after this much event time without a record of it."`
	Time      *pipes.Expr               `yaml:"time" doc:"Event time of a record: a timestamp, milliseconds since the epoch, or an RFC 3339 string. Default: the record timestamp."`
	Grace     time.Duration             `yaml:"grace" doc:"How long a window stays open after its end, by stream time (the greatest event time seen in the partition), for out-of-order records. Default 0."`
	Late      string                    `yaml:"late" default:"dlq" enum:"dlq,drop" doc:"A record whose windows have all closed: dlq fails it with an error saying how late it is (the pipe's on_error applies: dead letter, skip or fail); drop drops it."`
	Emit      string                    `yaml:"emit" default:"update" enum:"update,close" doc:"update: emit a window's aggregates after every record it takes; close: emit them once, when stream time passes the window's end plus grace."`
	Retention *time.Duration            `yaml:"retention" doc:"How long a closed window stays in the store before it is deleted, by stream time. Default: size + grace (session: gap + grace); sessions need at least gap."`
	Fields    map[string]AggregateField `yaml:"fields" required:"true" doc:"Output fields, each an aggregate over the records of a key's window, as in aggregate; last is the value of the record with the greatest event time."`
	Store     string                    `yaml:"store" doc:"State store that keeps the windows and the stream time; give each window pipe its own. Default: the pipe's name."`
	Pos       pipes.Pos                 `yaml:"-" spec:"pos"`
}

func init() {
	pipes.MustRegister("window", pipes.Spec{
		Summary: "Aggregates the records of each key over event-time windows (tumbling, hopping or session), with a grace period for out-of-order records; emits each window on every update or once when it closes. Output: key, window_start, window_end (RFC 3339, UTC) and the aggregates.",
		Example: "type: tumbling\nsize: 1m\ngrace: 10s\ntime: ts\nemit: close\nfields:\n  orders: {op: count}\n  revenue: {op: sum, of: amount}",
	}, newWindow)
}

type window struct {
	agg   *aggregator
	store pipes.Store
	time  *pipes.Program
	// session windows, or else fixed (tumbling is hopping with advance = size).
	session bool
	// Durations, in ms.
	size, advance, gap, grace, retention int64
	dropLate, emitClose                  bool
	schema                               *pipes.Schema
}

// Key prefixes of the window store.
const (
	winDataPrefix  = 'w'
	winIndexPrefix = 'e'
)

func newWindow(c WindowConfig, env *pipes.Env) (pipes.Pipe, error) {
	var errs []error
	ms := func(d time.Duration, name string) int64 {
		v, err := wholeMillis(d, name, c.Pos)
		if err != nil {
			errs = append(errs, err)
		}
		return v
	}
	w := &window{
		session:   c.Type == "session",
		size:      ms(c.Size, "size"),
		advance:   ms(c.Advance, "advance"),
		gap:       ms(c.Gap, "gap"),
		grace:     ms(c.Grace, "grace"),
		dropLate:  c.Late == "drop",
		emitClose: c.Emit == "close",
	}
	notFor := func(set bool, key string) {
		if set {
			errs = append(errs, pipes.Errorf(c.Pos, "%s: is not used by %s windows", key, c.Type))
		}
	}
	switch c.Type {
	case "tumbling":
		if c.Size <= 0 {
			errs = append(errs, pipes.Errorf(c.Pos, "tumbling windows need size:, a positive duration such as 1m"))
		}
		notFor(c.Advance != 0, "advance")
		notFor(c.Gap != 0, "gap")
		w.advance = w.size
	case "hopping":
		if c.Size <= 0 || c.Advance <= 0 {
			errs = append(errs, pipes.Errorf(c.Pos, "hopping windows need size: and advance:, positive durations such as 1m and 10s"))
		} else if c.Advance > c.Size {
			errs = append(errs, pipes.Errorf(c.Pos, "advance: %v is longer than size: %v, which would leave records out of every window", c.Advance, c.Size))
		}
		notFor(c.Gap != 0, "gap")
	case "session":
		if c.Gap <= 0 {
			errs = append(errs, pipes.Errorf(c.Pos, "session windows need gap:, a positive duration such as 30m"))
		}
		notFor(c.Size != 0, "size")
		notFor(c.Advance != 0, "advance")
	}
	w.retention = w.size + w.grace
	if w.session {
		w.retention = w.gap + w.grace
	}
	if c.Retention != nil {
		w.retention = ms(*c.Retention, "retention")
		if w.session && *c.Retention < c.Gap {
			errs = append(errs, pipes.Errorf(c.Pos, "retention: %v is shorter than gap: %v; a record could then start a session overlapping one already closed and emitted", *c.Retention, c.Gap))
		}
	}
	g, err := newAggregator(c.Fields, env)
	if err != nil {
		errs = append(errs, err)
	}
	w.agg = g
	if c.Time != nil {
		if w.time, err = env.Compile(*c.Time); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	g.lastByTime = true
	if w.store, err = env.StoreOrOwn(c.Store); err != nil {
		return nil, err
	}
	if env.InputSchema() != nil {
		w.schema = &pipes.Schema{Fields: append([]pipes.SchemaField{
			{Name: "key", Kind: pipes.String},
			{Name: "window_start", Kind: pipes.String},
			{Name: "window_end", Kind: pipes.String},
		}, g.schemaFields()...)}
	}
	return w, nil
}

// winState is a window's value in the store.
type winState struct {
	// TS is the greatest record timestamp (ms) among the window's records:
	// the timestamp of its outputs.
	TS  int64 `json:"ts"`
	Acc acc   `json:"a"`
}

func (w *window) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	var clock streamClock
	if err := clock.load(w.store); err != nil {
		return err
	}
	prev := clock.now
	for _, r := range b.Records {
		if r.Key == nil {
			out.Fail(r, errors.New("window needs keyed records: the key says whose windows to update"))
			continue
		}
		t, err := eventTime(w.time, r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		vals, err := w.agg.eval(r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		clock.observe(t)
		var late error
		if w.session {
			late, err = w.addSession(r, t, vals, clock.now, out)
		} else {
			late, err = w.addFixed(r, t, vals, clock.now, out)
		}
		if err != nil {
			return err // the store failed: the batch fails
		}
		if late != nil && !w.dropLate {
			out.Fail(r, late)
		}
	}
	if err := clock.save(w.store); err != nil {
		return err
	}
	if clock.now == minInt {
		return nil
	}
	if w.emitClose && clock.now > prev {
		if err := w.emitClosed(prev, clock.now, out); err != nil {
			return err
		}
	}
	return purge(w.store, winIndexPrefix, clock.now-w.grace-w.retention, func(end int64, rest []byte) error {
		kp, start := rest[:len(rest)-8], decodeTime(rest[len(rest)-8:])
		return w.store.Delete(w.dataKey(kp, end, start))
	})
}

// addFixed adds a record to its tumbling or hopping windows that are still
// open. It returns a lateness error when none is, and store errors as err.
// Failing records (a non-number to sum) go to out.
func (w *window) addFixed(r *pipes.Record, t int64, vals []any, now int64, out *pipes.Output) (late, err error) {
	kp := keyPart(r.Key)
	var closed []int64 // ends of the record's closed windows
	windows := 0
	first := floorDiv(t-w.size, w.advance)*w.advance + w.advance
	for start := first; start <= t; start += w.advance {
		end := start + w.size
		windows++
		if end+w.grace <= now {
			closed = append(closed, end)
			continue
		}
		k := w.dataKey(kp, end, start)
		ws, found, err := w.get(k)
		if err != nil {
			return nil, err
		}
		if err := w.agg.update(ws.Acc, vals, t); err != nil {
			// The values are the same for every window, so this happens at
			// the first one, before anything was written.
			out.Fail(r, err)
			return nil, nil
		}
		ws.TS = max(ws.TS, r.Timestamp.UnixMilli())
		if err := w.put(k, ws); err != nil {
			return nil, err
		}
		if !found {
			if err := w.store.Put(w.indexKey(kp, end, start), indexMark); err != nil {
				return nil, err
			}
		}
		if !w.emitClose {
			out.Emit(0, w.output(r.Key, start, end, ws, r))
		}
	}
	if len(closed) == windows {
		last := closed[len(closed)-1]
		return w.lateError(t, now, fmt.Sprintf("window [%s, %s)", formatTime(last-w.size), formatTime(last)), last), nil
	}
	return nil, nil
}

// lateError says how late a record is: how far behind stream time its event
// time is, and how long ago the window it needed closed.
func (w *window) lateError(t, now int64, what string, end int64) error {
	return fmt.Errorf("late record: event time %s is %v behind stream time %s; its %s closed %v ago (grace %v)",
		formatTime(t), dur(now-t), formatTime(now), what, dur(now-end-w.grace), dur(w.grace))
}

// session is one stored session window, while a record is merged in.
type session struct {
	start, end int64
	state      winState
}

// addSession merges a record into its key's sessions: the ones its
// [t, t+gap) overlaps become one.
func (w *window) addSession(r *pipes.Record, t int64, vals []any, now int64, out *pipes.Output) (late, err error) {
	if t+w.gap+w.grace <= now {
		return w.lateError(t, now, fmt.Sprintf("session [%s, %s)", formatTime(t), formatTime(t+w.gap)), t+w.gap), nil
	}
	kp := keyPart(r.Key)
	prefix := append([]byte{winDataPrefix}, kp...)
	var touched []session
	var lateErr, corrupt error
	err = w.store.Range(appendTime(bytes.Clone(prefix), t+1), prefixEnd(prefix), func(k, v []byte) bool {
		end, start := decodeTime(k[len(prefix):]), decodeTime(k[len(prefix)+8:])
		if start >= t+w.gap {
			return false // sessions are disjoint: the rest start later still
		}
		if end+w.grace <= now {
			lateErr = w.lateError(t, now, fmt.Sprintf("session [%s, %s)", formatTime(start), formatTime(end)), end)
			return false
		}
		s := session{start: start, end: end}
		if e := unmarshalState(v, &s.state); e != nil {
			corrupt = fmt.Errorf("window: corrupt state for key %q: %w", r.Key, e)
			return false
		}
		touched = append(touched, s)
		return true
	})
	if err == nil {
		err = corrupt
	}
	if err != nil || lateErr != nil {
		return lateErr, err
	}
	merged := session{start: t, end: t + w.gap, state: winState{TS: minInt, Acc: acc{}}}
	for _, s := range touched {
		merged.start, merged.end = min(merged.start, s.start), max(merged.end, s.end)
		merged.state.TS = max(merged.state.TS, s.state.TS)
		w.agg.merge(merged.state.Acc, s.state.Acc)
	}
	if err := w.agg.update(merged.state.Acc, vals, t); err != nil {
		out.Fail(r, err)
		return nil, nil
	}
	merged.state.TS = max(merged.state.TS, r.Timestamp.UnixMilli())
	for _, s := range touched {
		if s.start == merged.start && s.end == merged.end {
			continue // rewritten in place below
		}
		if err := w.store.Delete(w.dataKey(kp, s.end, s.start)); err != nil {
			return nil, err
		}
		if err := w.store.Delete(w.indexKey(kp, s.end, s.start)); err != nil {
			return nil, err
		}
	}
	if err := w.put(w.dataKey(kp, merged.end, merged.start), merged.state); err != nil {
		return nil, err
	}
	if len(touched) != 1 || touched[0].start != merged.start || touched[0].end != merged.end {
		if err := w.store.Put(w.indexKey(kp, merged.end, merged.start), indexMark); err != nil {
			return nil, err
		}
	}
	if !w.emitClose {
		out.Emit(0, w.output(r.Key, merged.start, merged.end, merged.state, r))
	}
	return nil, nil
}

// emitClosed emits the windows that closed as stream time went from prev to
// now: those whose end + grace is in (prev, now], one range of the end
// index. Windows that closed earlier were emitted then; no record can have
// opened or changed one since, as it would have been late.
func (w *window) emitClosed(prev, now int64, out *pipes.Output) error {
	lo := []byte{winIndexPrefix}
	if prev != minInt {
		lo = appendTime(lo, prev-w.grace+1)
	}
	hi := appendTime([]byte{winIndexPrefix}, now-w.grace+1)
	type closed struct {
		kp         []byte
		start, end int64
	}
	var todo []closed
	err := w.store.Range(lo, hi, func(k, _ []byte) bool {
		rest := k[9:]
		todo = append(todo, closed{kp: bytes.Clone(rest[:len(rest)-8]), start: decodeTime(rest[len(rest)-8:]), end: decodeTime(k[1:9])})
		return true
	})
	if err != nil {
		return err
	}
	for _, c := range todo {
		ws, found, err := w.get(w.dataKey(c.kp, c.end, c.start))
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("window: the end index names a window [%s, %s) that the store lacks", formatTime(c.start), formatTime(c.end))
		}
		key, err := keyOfPart(c.kp)
		if err != nil {
			return err
		}
		out.Emit(0, w.output(key, c.start, c.end, ws, nil))
	}
	return nil
}

// output is the record of a window's aggregates. from is the record that
// updated it, or nil when it closes.
func (w *window) output(key []byte, start, end int64, ws winState, from *pipes.Record) *pipes.Record {
	v := map[string]any{"key": string(key), "window_start": formatTime(start), "window_end": formatTime(end)}
	w.agg.result(v, ws.Acc)
	o := &pipes.Record{Key: key, Timestamp: time.UnixMilli(ws.TS).UTC(), Value: v}
	if from != nil {
		o.Headers, o.Origin = from.Headers, from.Origin
	}
	return o
}

func (w *window) get(k []byte) (winState, bool, error) {
	ws := winState{TS: minInt, Acc: acc{}}
	v, ok, err := w.store.Get(k)
	if err != nil || !ok {
		return ws, false, err
	}
	if err := unmarshalState(v, &ws); err != nil {
		return ws, false, fmt.Errorf("window: corrupt state under %q: %w", k, err)
	}
	if ws.Acc == nil {
		ws.Acc = acc{}
	}
	return ws, true, nil
}

func (w *window) put(k []byte, ws winState) error {
	v, err := marshalState(ws)
	if err != nil {
		return err
	}
	return w.store.Put(k, v)
}

func (w *window) dataKey(kp []byte, end, start int64) []byte {
	k := append([]byte{winDataPrefix}, kp...)
	return appendTime(appendTime(k, end), start)
}

func (w *window) indexKey(kp []byte, end, start int64) []byte {
	k := appendTime([]byte{winIndexPrefix}, end)
	return appendTime(append(k, kp...), start)
}

func (w *window) OutputSchema(int) *pipes.Schema { return w.schema }

// Grace is the grace period (pipes.GracePeriod).
func (w *window) Grace() time.Duration { return dur(w.grace) }

func (w *window) UsedFields() ([]string, bool) {
	progs := w.agg.programs()
	if w.time != nil {
		progs = append(progs, w.time)
	}
	return pipes.UsedFields(progs)
}

var (
	_ pipes.SchemaDeriver = (*window)(nil)
	_ pipes.FieldUser     = (*window)(nil)
	_ pipes.GracePeriod   = (*window)(nil)
)

// Event and stream time, shared by window, dedupe and aggregate's ttl.

const minInt = math.MinInt64

// Event times must lie in years 1 to 9999, which keeps arithmetic with
// durations clear of overflow.
var (
	minEventTime = time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()
	maxEventTime = time.Date(9999, 12, 31, 23, 59, 59, 999e6, time.UTC).UnixMilli()
)

// eventTime returns a record's event time in ms: the value of p (a
// timestamp, milliseconds since the epoch, or an RFC 3339 string), or the
// record timestamp when p is nil.
func eventTime(p *pipes.Program, r *pipes.Record) (int64, error) {
	var ms int64
	if p == nil {
		ms = r.Timestamp.UnixMilli()
	} else {
		v, err := p.Eval(r)
		if err != nil {
			return 0, err
		}
		switch x := v.(type) {
		case time.Time:
			ms = x.UnixMilli()
		case string:
			t, err := time.Parse(time.RFC3339Nano, x)
			if err != nil {
				return 0, fmt.Errorf("event time %q: %q is not an RFC 3339 time", p.Source(), x)
			}
			ms = t.UnixMilli()
		case nil:
			return 0, fmt.Errorf("event time %q is null", p.Source())
		default:
			f, ok := pipes.Float(v)
			if !ok || math.IsNaN(f) || math.IsInf(f, 0) || f < float64(minEventTime) || f > float64(maxEventTime) {
				return 0, fmt.Errorf("event time %q gave %v (%T), not a time, a number of milliseconds or an RFC 3339 string", p.Source(), v, v)
			}
			ms = int64(math.Floor(f))
		}
	}
	if ms < minEventTime || ms > maxEventTime {
		return 0, fmt.Errorf("event time %d ms is outside the years 1 to 9999", ms)
	}
	return ms, nil
}

// streamClock is a partition task's stream time, the greatest event time
// seen, as kept in its store. Pipes load it at the start of each batch
// rather than caching it, so that an aborted transaction, which drops the
// store's writes, cannot leave it ahead.
type streamClock struct {
	now, saved int64
}

var streamTimeKey = []byte{'s'}

func (c *streamClock) load(s pipes.Store) error {
	c.now, c.saved = minInt, minInt
	v, ok, err := s.Get(streamTimeKey)
	if err != nil || !ok {
		return err
	}
	if len(v) != 8 {
		return fmt.Errorf("corrupt stream time in the state store: %d bytes", len(v))
	}
	c.now = decodeTime(v)
	c.saved = c.now
	return nil
}

func (c *streamClock) observe(t int64) { c.now = max(c.now, t) }

func (c *streamClock) save(s pipes.Store) error {
	if c.now == c.saved {
		return nil
	}
	c.saved = c.now
	return s.Put(streamTimeKey, appendTime(nil, c.now))
}

// indexMark is the value of time-index entries, which need none. It is not
// empty: a store's changelog writes an empty value as a tombstone, so an
// empty entry would vanish when the store is restored.
var indexMark = []byte{1}

// purgeLimit bounds how many expired entries one batch deletes, so that a
// jump in stream time spreads its deletions over the following batches
// instead of making one transaction huge. Expired state is treated as gone
// before it is deleted, so results do not depend on it.
const purgeLimit = 4096

// purge deletes up to purgeLimit entries of a time index (prefix, time,
// rest) whose time is at most upTo, calling fn first with the time and the
// rest of each key: one range scan over time order.
func purge(s pipes.Store, prefix byte, upTo int64, fn func(t int64, rest []byte) error) error {
	type entry struct {
		key  []byte
		t    int64
		rest []byte
	}
	var todo []entry
	err := s.Range([]byte{prefix}, appendTime([]byte{prefix}, upTo+1), func(k, _ []byte) bool {
		k = bytes.Clone(k)
		todo = append(todo, entry{key: k, t: decodeTime(k[1:9]), rest: k[9:]})
		return len(todo) < purgeLimit
	})
	if err != nil {
		return err
	}
	// The store is changed only after the scan: an iterator need not
	// survive writes under it.
	for _, e := range todo {
		if err := fn(e.t, e.rest); err != nil {
			return err
		}
		if err := s.Delete(e.key); err != nil {
			return err
		}
	}
	return nil
}

// appendTime appends t so that byte order is time order: big-endian, with
// the sign bit flipped.
func appendTime(b []byte, t int64) []byte {
	return binary.BigEndian.AppendUint64(b, uint64(t)^1<<63)
}

// prefixed returns p followed by key.
func prefixed(p byte, key []byte) []byte {
	return append([]byte{p}, key...)
}

// keyPart is a record key with its length in front, so that no key's
// encoding is a prefix of another's and a key's entries are one prefix.
func keyPart(key []byte) []byte {
	return append(binary.AppendUvarint(nil, uint64(len(key))), key...)
}

func keyOfPart(kp []byte) ([]byte, error) {
	n, w := binary.Uvarint(kp)
	if w <= 0 || uint64(len(kp)-w) != n {
		return nil, fmt.Errorf("window: corrupt key in the state store: %q", kp)
	}
	return kp[w:], nil
}

// prefixEnd returns the smallest key after every key with prefix p (nil:
// none).
func prefixEnd(p []byte) []byte {
	end := bytes.Clone(p)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// formatTime writes a time in ms as RFC 3339 in UTC, with as many
// fraction digits as needed (none for whole seconds).
func formatTime(ms int64) string {
	return time.UnixMilli(ms).UTC().Format(time.RFC3339Nano)
}

func dur(ms int64) time.Duration { return time.Duration(ms) * time.Millisecond }

// wholeMillis converts a duration of the config to ms; state keeps times in
// ms, so finer durations would be silently rounded.
func wholeMillis(d time.Duration, name string, pos pipes.Pos) (int64, error) {
	if d%time.Millisecond != 0 {
		return 0, pipes.Errorf(pos, "%s: %v is not a whole number of milliseconds", name, d)
	}
	return d.Milliseconds(), nil
}
