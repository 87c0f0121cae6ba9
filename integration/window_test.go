package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

// windowTopology: one event stream, two windowed aggregates with emit:
// close, late records to the dead-letter topic. tumbling reads the event
// time from ts (an RFC 3339 string); sessions uses the record timestamp.
const windowTopology = `
name: {{.ID}}
dead_letter: dlq
processing:
  commit_interval: 100ms
datasets:
  events:
    topic: {{topic "in"}}
  tumbling:
    topic: {{topic "tumbling"}}
    create: {partitions: 4}
  sessions:
    topic: {{topic "sessions"}}
    create: {partitions: 4}
  dlq:
    topic: {{topic "dlq"}}
    value: bytes
    create: {partitions: 1}
pipes:
  tumbling:
    from: events
    to: tumbling
    window:
      type: tumbling
      size: 10s
      grace: 3s
      time: ts
      emit: close
      late: dlq
      fields: &aggs
        n: {op: count}
        sum: {op: sum, of: amount}
        lo: {op: min, of: amount}
        hi: {op: max, of: amount}
        last: {op: last, of: amount}
  sessions:
    from: events
    to: sessions
    window:
      type: session
      gap: 5s
      grace: 2s
      emit: close
      late: dlq
      fields: *aggs
`

// The windows of windowTopology, in ms.
const (
	tumbleSize, tumbleGrace  = 10_000, 3_000
	sessionGap, sessionGrace = 5_000, 2_000
)

// wEvent is one input record.
type wEvent struct {
	id     int
	key    string
	t      int64 // event time, ms
	amount int
}

// wWin names a window; wAgg is what the pipes compute over it.
type wWin struct {
	key        string
	start, end int64
}

type wAgg struct {
	N, Sum, Lo, Hi, Last float64
}

// TestWindowAgainstOracle (issue #3, test d): event-time data on 4
// partitions, out of order and with late records, through a tumbling and a
// session window with emit: close, across a clean stop (the next replica
// rebuilds the state from the changelogs) and a SIGKILL (the restarted
// replica reopens its own state). Every closed window comes out exactly
// once with the aggregates an oracle computes here from the input, and the
// late records, exactly those the oracle finds, are in the dead-letter
// topic.
func TestWindowAgainstOracle(t *testing.T) {
	e := newEnv(t)
	const parts, keysPer, perPart = 4, 6, 1500
	e.createTopic("in", parts)
	file := e.writeTopology(windowTopology, nil)
	group := "streamer-" + e.id

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 3))
	// Event times are in the past (brokers may refuse timestamps far ahead
	// of their clock), on a base that is not window-aligned.
	base := time.Now().Add(-3*time.Hour).UnixMilli() + 1234
	events := make([][]wEvent, parts) // per partition, in offset order
	id := 0
	for p := range parts {
		clock := base
		for range perPart {
			clock += rng.Int64N(400)
			// Key j of the partition comes up with weight 1/(j+1)²: the rare
			// ones have gaps longer than the session gap.
			j := 0
			for x := rng.Float64() * 1.49; j < keysPer-1 && x > 1/float64((j+1)*(j+1)); j++ {
				x -= 1 / float64((j+1)*(j+1))
			}
			t := clock - rng.Int64N(2500) // out of order, mostly within grace
			if rng.IntN(30) == 0 {
				t = clock - 3000 - rng.Int64N(22_000) // often late
			}
			events[p] = append(events[p], wEvent{id: id, key: fmt.Sprintf("u%d-%d", p, j), t: t, amount: 1 + rng.IntN(100)})
			id++
		}
	}
	// Phase two starts, on each partition, with a record that is late only
	// for a replica that knows the stream time phase one reached.
	split := perPart * 3 / 5
	for p := range parts {
		var st int64
		for _, ev := range events[p][:split] {
			st = max(st, ev.t)
		}
		late := wEvent{id: id, key: fmt.Sprintf("u%d-0", p), t: st - 20_000, amount: 7}
		id++
		events[p] = slices.Insert(events[p], split, late)
	}
	// Last, a record far ahead closes every window of the partition.
	for p := range parts {
		var st int64
		for _, ev := range events[p] {
			st = max(st, ev.t)
		}
		events[p] = append(events[p], wEvent{id: id, key: "flush", t: st + 60_000, amount: 0})
		id++
	}

	// Ids in offset order, partition by partition: the oracle breaks ties
	// of last by arrival.
	id = 0
	for p := range parts {
		for i := range events[p] {
			events[p][i].id = id
			id++
		}
	}

	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	produce := func(from, to int) { // events [from, to) of every partition
		t.Helper()
		var recs []*kgo.Record
		for p := range parts {
			for _, ev := range events[p][min(from, len(events[p])):min(to, len(events[p]))] {
				v := fmt.Sprintf(`{"id":%d,"ts":%q,"amount":%d}`, ev.id, time.UnixMilli(ev.t).UTC().Format("2006-01-02T15:04:05.000Z07:00"), ev.amount)
				recs = append(recs, &kgo.Record{Topic: e.topic("in"), Partition: int32(p), Key: []byte(ev.key), Value: []byte(v), Timestamp: time.UnixMilli(ev.t)})
			}
		}
		if err := prod.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatalf("producing: %v", err)
		}
	}

	// Phase one, then a clean stop.
	produce(0, split)
	r1 := e.start(file, "r1")
	e.waitConsumed(group, "in", []*replica{r1}, 2*time.Minute)
	if _, code := r1.stop(t); code != 0 {
		t.Fatalf("r1 exit %d:\n%s", code, r1.logText())
	}
	// Phase two on a replica with an empty state directory: it restores
	// from the changelogs. It is killed mid-stream and restarted on its
	// own directory; the rest and the flush records follow.
	r2 := e.start(file, "r2")
	total := len(events[0])
	step := (total - split) / 4
	produce(split, split+step)
	time.Sleep(300 * time.Millisecond)
	produce(split+step, split+2*step)
	e.waitLagBelow(group, "in", int64(parts*step), r2)
	r2.kill()
	produce(split+2*step, split+3*step)
	r2 = e.start(file, "r2")
	produce(split+3*step, total)
	e.waitConsumed(group, "in", []*replica{r2}, 2*time.Minute)
	if _, code := r2.stop(t); code != 0 {
		t.Fatalf("r2 exit %d:\n%s", code, r2.logText())
	}

	// The oracle.
	wantTumble, lateTumble := tumblingOracle(events)
	wantSession, lateSession := sessionOracle(events)
	if len(lateTumble) == 0 || len(lateSession) == 0 || len(wantSession) < 50 {
		t.Fatalf("the data must have late records and sessions: %d, %d late, %d sessions", len(lateTumble), len(lateSession), len(wantSession))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	gotTumble, gotSession := map[wWin]wAgg{}, map[wWin]wAgg{}
	var dups []string
	read := func(into map[wWin]wAgg) func(*kgo.Record) {
		return func(r *kgo.Record) {
			var v struct {
				Key         string  `json:"key"`
				WindowStart string  `json:"window_start"`
				WindowEnd   string  `json:"window_end"`
				N           float64 `json:"n"`
				Sum         float64 `json:"sum"`
				Lo          float64 `json:"lo"`
				Hi          float64 `json:"hi"`
				Last        float64 `json:"last"`
			}
			if err := json.Unmarshal(r.Value, &v); err != nil || v.Key != string(r.Key) {
				t.Errorf("output %s (key %s): %v", r.Value, r.Key, err)
				return
			}
			start, err1 := time.Parse(time.RFC3339Nano, v.WindowStart)
			end, err2 := time.Parse(time.RFC3339Nano, v.WindowEnd)
			if err1 != nil || err2 != nil {
				t.Errorf("output %s: window bounds %v %v", r.Value, err1, err2)
				return
			}
			w := wWin{v.Key, start.UnixMilli(), end.UnixMilli()}
			if _, dup := into[w]; dup {
				dups = append(dups, fmt.Sprint(w))
			}
			into[w] = wAgg{v.N, v.Sum, v.Lo, v.Hi, v.Last}
		}
	}
	if err := topicread.All(ctx, brokers, 3*time.Second, read(gotTumble), e.topic("tumbling")); err != nil {
		t.Fatal(err)
	}
	if err := topicread.All(ctx, brokers, 3*time.Second, read(gotSession), e.topic("sessions")); err != nil {
		t.Fatal(err)
	}
	gotLate := map[string]map[int]bool{"tumbling": {}, "sessions": {}}
	err = topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		var v struct{ ID int }
		if err := json.Unmarshal(r.Value, &v); err != nil || gotLate[h["streamer.pipe"]] == nil || !strings.HasPrefix(h["streamer.error"], "late record: ") {
			t.Errorf("dead letter %s %v: %v", r.Value, h, err)
			return
		}
		if gotLate[h["streamer.pipe"]][v.ID] {
			dups = append(dups, fmt.Sprintf("dead letter %d of %s", v.ID, h["streamer.pipe"]))
		}
		gotLate[h["streamer.pipe"]][v.ID] = true
	}, e.topic("dlq"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dups) > 0 {
		t.Errorf("%d duplicates, such as %v", len(dups), dups[:min(5, len(dups))])
	}
	// Where in its partition's input a window closed, for the messages.
	closedBy := func(grace int64) func(w wWin) string {
		return func(w wWin) string {
			var p, st int64
			fmt.Sscanf(w.key, "u%d-", &p)
			for i, ev := range events[p] {
				if st = max(st, ev.t); st >= w.end+grace {
					return fmt.Sprintf("closed by record %d of partition %d", i, p)
				}
			}
			return "open"
		}
	}
	t.Logf("phases start at records %d (restart on an empty state dir), %d, %d, %d (kill and restart), %d of each partition", split, split+step, split+2*step, split+3*step, total)
	compareWindows(t, "tumbling", gotTumble, wantTumble, closedBy(tumbleGrace))
	compareWindows(t, "sessions", gotSession, wantSession, closedBy(sessionGrace))
	compareLate(t, "tumbling", gotLate["tumbling"], lateTumble)
	compareLate(t, "sessions", gotLate["sessions"], lateSession)
	t.Logf("%d events on %d partitions; tumbling: %d windows, %d late; sessions: %d windows, %d late; all as the oracle says",
		id, parts, len(gotTumble), len(gotLate["tumbling"]), len(gotSession), len(gotLate["sessions"]))
}

func compareWindows(t *testing.T, pipe string, got, want map[wWin]wAgg, where func(wWin) string) {
	t.Helper()
	var diffs []string
	for w, a := range want {
		if g, ok := got[w]; !ok {
			diffs = append(diffs, fmt.Sprintf("missing %v %+v, %s", w, a, where(w)))
		} else if g != a {
			diffs = append(diffs, fmt.Sprintf("%v: got %+v, want %+v, %s", w, g, a, where(w)))
		}
	}
	for w, g := range got {
		if _, ok := want[w]; !ok {
			diffs = append(diffs, fmt.Sprintf("unexpected %v %+v, %s", w, g, where(w)))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s: %d windows differ from the oracle's %d, such as:\n%s", pipe, len(diffs), len(want), strings.Join(diffs[:min(40, len(diffs))], "\n"))
	}
}

func compareLate(t *testing.T, pipe string, got, want map[int]bool) {
	t.Helper()
	var diffs []string
	for id := range want {
		if !got[id] {
			diffs = append(diffs, fmt.Sprintf("event %d is late but not dead-lettered", id))
		}
	}
	for id := range got {
		if !want[id] {
			diffs = append(diffs, fmt.Sprintf("event %d was dead-lettered but is not late", id))
		}
	}
	sort.Strings(diffs)
	if len(diffs) > 0 {
		t.Errorf("%s: %d late records differ from the oracle's %d:\n%s", pipe, len(diffs), len(want), strings.Join(diffs[:min(10, len(diffs))], "\n"))
	}
}

// aggOf folds events in arrival order; last is the amount of the greatest
// event time, the later arrival on a tie.
func aggOf(evs []wEvent) wAgg {
	a := wAgg{Lo: 1e18, Hi: -1e18}
	var lastT int64
	for i, ev := range evs {
		x := float64(ev.amount)
		a.N++
		a.Sum += x
		a.Lo, a.Hi = min(a.Lo, x), max(a.Hi, x)
		if i == 0 || ev.t >= lastT {
			a.Last, lastT = x, ev.t
		}
	}
	return a
}

// tumblingOracle: per partition, stream time is the greatest event time so
// far; a record is late when its window [⌊t/size⌋·size, +size) has end +
// grace ≤ stream time. Windows closed by the last stream time are output.
func tumblingOracle(events [][]wEvent) (map[wWin]wAgg, map[int]bool) {
	out, late := map[wWin]wAgg{}, map[int]bool{}
	for _, part := range events {
		st := int64(-1 << 62)
		members := map[wWin][]wEvent{}
		for _, ev := range part {
			st = max(st, ev.t)
			start := ev.t - ev.t%tumbleSize // event times are positive
			w := wWin{ev.key, start, start + tumbleSize}
			if w.end+tumbleGrace <= st {
				late[ev.id] = true
				continue
			}
			members[w] = append(members[w], ev)
		}
		for w, evs := range members {
			if w.end+tumbleGrace <= st {
				out[w] = aggOf(evs)
			}
		}
	}
	return out, late
}

// sessions groups a key's accepted events into sessions: the unions of
// [t, t+gap), found by sorting.
func sessions(key string, evs []wEvent) map[wWin][]wEvent {
	sorted := slices.Clone(evs)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].t < sorted[j].t })
	out := map[wWin][]wEvent{}
	var cur wWin
	var members []wEvent
	for i, ev := range sorted {
		if i > 0 && ev.t >= cur.end {
			out[cur] = members
			members = nil
		}
		if members == nil {
			cur = wWin{key, ev.t, ev.t + sessionGap}
		}
		cur.end = max(cur.end, ev.t+sessionGap)
		members = append(members, ev)
	}
	if members != nil {
		out[cur] = members
	}
	return out
}

// sessionOracle: a record is late when its own [t, t+gap) has closed, or
// when it overlaps a session, of the records accepted so far, that has
// closed. The members keep arrival order for last.
func sessionOracle(events [][]wEvent) (map[wWin]wAgg, map[int]bool) {
	out, late := map[wWin]wAgg{}, map[int]bool{}
	for _, part := range events {
		st := int64(-1 << 62)
		accepted := map[string][]wEvent{}
		for _, ev := range part {
			st = max(st, ev.t)
			if ev.t+sessionGap+sessionGrace <= st {
				late[ev.id] = true
				continue
			}
			isLate := false
			for w := range sessions(ev.key, accepted[ev.key]) {
				if w.start < ev.t+sessionGap && ev.t < w.end && w.end+sessionGrace <= st {
					isLate = true
				}
			}
			if isLate {
				late[ev.id] = true
				continue
			}
			accepted[ev.key] = append(accepted[ev.key], ev)
		}
		for key, evs := range accepted {
			for w, members := range sessions(key, evs) {
				if w.end+sessionGrace <= st {
					// Back to arrival (id) order, which breaks ties of last.
					sort.SliceStable(members, func(i, j int) bool { return members[i].id < members[j].id })
					out[w] = aggOf(members)
				}
			}
		}
	}
	return out, late
}
