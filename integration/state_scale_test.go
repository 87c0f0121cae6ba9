package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/state"
)

// The tests here run countTopology (an aggregate: count and sum of n per
// key) on many keys, through crashes, clean leaves, new replicas and a lost
// state directory, and check the result against an oracle worked out from
// the input alone.

// countKey is the key of input record i among keys keys.
func countKey(i, keys int) string { return "k" + strconv.Itoa(i%keys) }

// produceCounted produces input records from..to-1: key countKey(i, keys),
// value {"id":i,"n":i}. It hands them all to the client at once and waits
// for the acknowledgements at the end, so the client batches them (it
// lingers): a million records take seconds, not minutes as one synchronous
// call per chunk would. It may be called from any goroutine.
func (e *env) produceCounted(topic string, from, to, keys int) error {
	var failed atomic.Pointer[error]
	ctx := context.Background()
	name := e.topic(topic)
	for i := from; i < to; i++ {
		v := strconv.AppendInt([]byte(`{"id":`), int64(i), 10)
		v = strconv.AppendInt(append(v, `,"n":`...), int64(i), 10)
		v = append(v, '}')
		e.client.Produce(ctx, &kgo.Record{Topic: name, Key: []byte(countKey(i, keys)), Value: v}, func(_ *kgo.Record, err error) {
			if err != nil {
				failed.CompareAndSwap(nil, &err)
			}
		})
	}
	if err := e.client.Flush(ctx); err != nil {
		return err
	}
	if p := failed.Load(); p != nil {
		return fmt.Errorf("producing %d..%d: %w", from, to, *p)
	}
	return nil
}

// countOracle is what countTopology must end with after a set of input
// records: per key, how many there were and the sum of their n.
type countOracle struct {
	count, sum map[string]int
	records    int
}

func newCountOracle() *countOracle {
	return &countOracle{count: map[string]int{}, sum: map[string]int{}}
}

func (o *countOracle) add(key string, n int) {
	o.count[key]++
	o.sum[key] += n
	o.records++
}

// addCounted adds the records produceCounted(from, to, keys) produced.
func (o *countOracle) addCounted(from, to, keys int) {
	for i := from; i < to; i++ {
		o.add(countKey(i, keys), i)
	}
}

// checkCounts reads back, read_committed, what countTopology committed and
// checks it against the oracle:
//   - out: each key's counts run 1, 2, 3, ... with no repeat (a record
//     counted twice) and no gap (a lost state write), end at the key's number
//     of records, and its last sum is the sum of its n; no other key appears;
//   - changelog, unless "": each key has exactly one changelog record per
//     input record, so no state write was lost or written twice, even where
//     the outputs could not tell (a write whose transaction aborted but
//     whose output did not).
//
// It reports at most a few examples of each kind of fault, with counts.
func checkCounts(t *testing.T, out, changelog string, o *countOracle) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	last, sums := map[string]int{}, map[string]float64{}
	var outputs, faults int
	var examples []string
	fault := func(format string, args ...any) {
		faults++
		if len(examples) < 10 {
			examples = append(examples, fmt.Sprintf(format, args...))
		}
	}
	err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		outputs++
		var v struct {
			Key   string
			N     int
			Total float64
		}
		if err := json.Unmarshal(r.Value, &v); err != nil {
			fault("output %q: %v", r.Value, err)
			return
		}
		k := string(r.Key)
		if v.Key != k {
			fault("output %s under key %q", r.Value, k)
		}
		if v.N != last[k]+1 {
			fault("key %s: count %d after %d (partition %d offset %d)", k, v.N, last[k], r.Partition, r.Offset)
		}
		last[k], sums[k] = v.N, v.Total
	}, out)
	if err != nil {
		t.Fatalf("reading %s: %v", out, err)
	}
	for k, want := range o.count {
		if last[k] != want || sums[k] != float64(o.sum[k]) {
			fault("key %s: ends at count %d, sum %.0f; want %d and %d", k, last[k], sums[k], want, o.sum[k])
		}
	}
	for k := range last {
		if _, ok := o.count[k]; !ok {
			fault("key %q was never produced", k)
		}
	}
	if outputs != o.records {
		fault("%d outputs for %d input records", outputs, o.records)
	}
	if changelog != "" {
		per, total := map[string]int{}, 0
		err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
			per[string(r.Key)]++
			total++
		}, changelog)
		if err != nil {
			t.Fatalf("reading %s: %v", changelog, err)
		}
		for k, want := range o.count {
			if per[k] != want {
				fault("key %s: %d changelog records for %d input records", k, per[k], want)
			}
		}
		if total != o.records {
			fault("changelog holds %d records for %d input records", total, o.records)
		}
	}
	if faults > 0 {
		t.Fatalf("%d faults in %d outputs of %d keys; the first:\n%s", faults, outputs, len(o.count), strings.Join(examples, "\n"))
	}
	t.Logf("%d keys: %d outputs, every count exactly once, sums exact; changelog checked: %v", len(o.count), outputs, changelog != "")
}

// assignedRe matches the log line of an assignment of at least one
// partition (an empty one logs partitions=map[]).
var assignedRe = regexp.MustCompile(`msg="partitions assigned" .*partitions="?map\[[^\]]`)

// assignedSince reports whether r logged an assignment of partitions
// after the first from bytes of its log.
func assignedSince(r *replica, from int) bool {
	return assignedRe.MatchString(r.logText()[from:])
}

// logLen returns how much r has logged so far: a mark for assignedSince.
func logLen(r *replica) int { return len(r.logText()) }

// waitUntil waits for cond as waitFor does, but fails at once, with its
// log, if one of the replicas exits meanwhile: a replica that died does
// not make the wait time out a minute later for no visible reason.
func waitUntil(t *testing.T, what string, timeout time.Duration, rs []*replica, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		for _, r := range rs {
			if r.exited() {
				fatalf(t, "waiting for %s: a replica exited (%v):\n%s", what, r.err, r.logText())
			}
		}
		if time.Now().After(deadline) {
			fatalf(t, "timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// committed returns the offsets the group committed, summed over its
// partitions: how many records it counted, when the input is not
// transactional.
func (e *env) committed(group string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	offs, err := e.admin.FetchOffsets(ctx, group)
	if err != nil {
		return 0, err
	}
	var sum int64
	offs.Each(func(o kadm.OffsetResponse) { sum += o.At })
	return sum, nil
}

// lagBelow returns a condition for waitUntil: the group's lag on the input
// is known and below max.
func (e *env) lagBelow(group, input string, max int64) func() bool {
	return func() bool {
		lag, err := e.lag(group, input)
		return err == nil && lag >= 0 && lag < max
	}
}

// startStateful starts replica id of countTopology on its own state
// directory, <test dir>/state-<id>, the same one across restarts.
func (e *env) startStateful(file, id string) *replica {
	e.t.Helper()
	return e.startArgs(file, id, "--metrics-addr", "off", "--state-dir", filepath.Join(e.dir, "state-"+id))
}

// restoresFrom returns, for each "restoring state store from its
// changelog" line r logged, the checkpoint it started from: 0 for a store
// rebuilt from the start, more for a store caught up from its local copy.
func restoresFrom(r *replica) []int64 {
	var out []int64
	for _, m := range restoreRe.FindAllStringSubmatch(r.logText(), -1) {
		from, _ := strconv.ParseInt(m[1], 10, 64)
		out = append(out, from)
	}
	return out
}

var restoreRe = regexp.MustCompile(`msg="restoring state store from its changelog".* from=(\d+) `)

// TestStateScaleKillAndRestart: countTopology over 1,000,000 records of
// 10,000 keys, 12 partitions and 3 replicas, each a process with its own
// state directory. One replica is SIGKILLed in the middle of the work while
// records keep arriving; once the other two have taken its partitions over
// (restoring their state from the changelog), it is restarted on its state
// directory and takes partitions back, and the last quarter of the records
// is produced only then, so that restored state, local or rebuilt, is what
// they are counted on. The counts, sums and changelog must equal the
// oracle exactly: no record counted twice or lost.
func TestStateScaleKillAndRestart(t *testing.T) {
	requireIntegration(t)
	began := time.Now()
	e := newEnv(t)
	e.createTopic("in", 12)
	file := e.writeTopology(countTopology, nil)
	group := "streamer-" + e.id
	const n, keys = 1_000_000, 10_000
	o := newCountOracle()
	produce := func(from, to int) {
		t.Helper()
		start := time.Now()
		if err := e.produceCounted("in", from, to, keys); err != nil {
			t.Fatal(err)
		}
		t.Logf("produced records %d..%d in %v", from, to, time.Since(start).Round(time.Millisecond))
	}
	produce(0, n/2)
	o.addCounted(0, n/2, keys)
	rs := []*replica{e.startStateful(file, "r1"), e.startStateful(file, "r2"), e.startStateful(file, "r3")}
	waitUntil(t, "all three replicas to get partitions", time.Minute, rs, func() bool {
		return assignedSince(rs[0], 0) && assignedSince(rs[1], 0) && assignedSince(rs[2], 0)
	})
	// Kill r2 in the middle of the first half: its transaction is open,
	// with outputs, changelog records and offsets in it.
	waitUntil(t, "half the first half to be counted", 2*time.Minute, rs, e.lagBelow(group, "in", n/4))
	marks := []int{logLen(rs[0]), logLen(rs[2])}
	rs[1].kill()
	t.Logf("r2 SIGKILLed after %v", time.Since(began).Round(time.Millisecond))
	var feedErr error
	fed := make(chan struct{})
	go func() {
		defer close(fed)
		feedErr = e.produceCounted("in", n/2, 3*n/4, keys)
	}()
	// The group notices r2 is gone after its session timeout; r1 and r3
	// then restore its partitions' state from the changelog, up to what
	// r2 committed (its open transaction is aborted when r2 comes back
	// under the same transactional id, or at its timeout).
	waitUntil(t, "r2's partitions to move to r1 and r3", 2*time.Minute, []*replica{rs[0], rs[2]}, func() bool {
		return assignedSince(rs[0], marks[0]) || assignedSince(rs[2], marks[1])
	})
	t.Logf("r2's partitions moved after %v", time.Since(began).Round(time.Millisecond))
	rs[1] = e.startStateful(file, "r2")
	waitUntil(t, "the restarted r2 to get partitions", 2*time.Minute, rs, func() bool { return assignedSince(rs[1], 0) })
	t.Logf("the restarted r2 got partitions after %v", time.Since(began).Round(time.Millisecond))
	<-fed
	if feedErr != nil {
		t.Fatal(feedErr)
	}
	o.addCounted(n/2, 3*n/4, keys)
	produce(3*n/4, n)
	o.addCounted(3*n/4, n, keys)
	e.waitConsumed(group, "in", rs, 5*time.Minute)
	t.Logf("all %d records consumed after %v", n, time.Since(began).Round(time.Millisecond))
	t.Logf("the restarted r2 restored stores from changelog offsets %v (0: rebuilt; more: caught up from its directory)", restoresFrom(rs[1]))
	for i, r := range rs {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("r%d exit %d", i+1, code)
		}
	}
	checkCounts(t, e.topic("out"), group+"-count-changelog", o)
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}

// TestReplicaChurn: countTopology on 12 partitions while records flow
// steadily; replicas come and go. r1 and r2 start; r3 joins (restoring
// the partitions it takes from the changelog alone: its directory is
// new); r1 leaves with SIGTERM, the clean way, committing its transaction
// and leaving the group so that its partitions move at once; r4 joins; r2
// is SIGKILLed and never comes back, so its open transaction is aborted
// only by the broker, at its timeout, and its partitions move only after
// the session timeout, to replicas that never had them. The counts, sums
// and changelog must equal the oracle exactly.
func TestReplicaChurn(t *testing.T) {
	requireIntegration(t)
	began := time.Now()
	e := newEnv(t)
	e.createTopic("in", 12)
	file := e.writeTopology(countTopology, nil)
	group := "streamer-" + e.id
	const keys = 5_000
	// The feed: 1,000 records every 100 ms or so until the churn is over.
	// It stops at a chunk boundary and says how far it got.
	stop, fedTo := make(chan struct{}), make(chan int, 1)
	var feedErr error
	go func() {
		i := 0
		defer func() { fedTo <- i }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if feedErr = e.produceCounted("in", i, i+1_000, keys); feedErr != nil {
				return
			}
			i += 1_000
		}
	}()
	r1, r2 := e.startStateful(file, "r1"), e.startStateful(file, "r2")
	waitUntil(t, "r1 and r2 to get partitions", time.Minute, []*replica{r1, r2}, func() bool {
		return assignedSince(r1, 0) && assignedSince(r2, 0)
	})
	waitUntil(t, "r1 and r2 to count 20,000 records", time.Minute, []*replica{r1, r2}, func() bool {
		c, err := e.committed(group)
		return err == nil && c >= 20_000
	})

	r3 := e.startStateful(file, "r3")
	waitUntil(t, "r3 to get partitions", time.Minute, []*replica{r1, r2, r3}, func() bool { return assignedSince(r3, 0) })
	t.Logf("r3 joined after %v", time.Since(began).Round(time.Millisecond))

	marks := []int{logLen(r2), logLen(r3)}
	took, code := r1.stop(t)
	if code != 0 || took > 10*time.Second {
		t.Fatalf("r1: exit %d %v after SIGTERM; want 0 within 10s", code, took)
	}
	waitUntil(t, "r1's partitions to move to r2 and r3", time.Minute, []*replica{r2, r3}, func() bool {
		return assignedSince(r2, marks[0]) || assignedSince(r3, marks[1])
	})
	t.Logf("r1 left (SIGTERM, exit after %v); its partitions moved after %v", took.Round(time.Millisecond), time.Since(began).Round(time.Millisecond))

	r4 := e.startStateful(file, "r4")
	waitUntil(t, "r4 to get partitions", time.Minute, []*replica{r2, r3, r4}, func() bool { return assignedSince(r4, 0) })
	t.Logf("r4 joined after %v", time.Since(began).Round(time.Millisecond))

	marks = []int{logLen(r3), logLen(r4)}
	r2.kill()
	waitUntil(t, "r2's partitions to move to r3 and r4", 2*time.Minute, []*replica{r3, r4}, func() bool {
		return assignedSince(r3, marks[0]) || assignedSince(r4, marks[1])
	})
	t.Logf("r2 SIGKILLed; its partitions moved after %v", time.Since(began).Round(time.Millisecond))
	close(stop)
	n := <-fedTo
	if feedErr != nil {
		t.Fatal(feedErr)
	}
	// The last records go to every partition, so each replica left counts
	// some on state it restored.
	if err := e.produceCounted("in", n, n+20_000, keys); err != nil {
		t.Fatal(err)
	}
	n += 20_000
	e.waitConsumed(group, "in", []*replica{r3, r4}, 3*time.Minute)
	t.Logf("all %d records consumed after %v", n, time.Since(began).Round(time.Millisecond))
	for _, r := range []*replica{r3, r4} {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit %d", code)
		}
	}
	// r2's open transaction holds back the outputs and the changelog
	// records written after it until the broker times it out.
	e.waitSettled(time.Minute, e.topic("out"), group+"-count-changelog")
	t.Logf("r2's transaction timed out after %v", time.Since(began).Round(time.Millisecond))
	o := newCountOracle()
	o.addCounted(0, n, keys)
	checkCounts(t, e.topic("out"), group+"-count-changelog", o)
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}

// TestStateDirDeleted: a replica runs countTopology to the end, stops
// cleanly, loses its state directory and is restarted alone, so it must
// rebuild the state of every partition from the changelog. The changelog is
// compacted first, as it would be in production by then, so the restore
// reads across the gaps compaction leaves in the offsets. The rebuilt
// stores must hold exactly the changelog's latest value of each key, and
// counting must then go on from exactly the counts before: the outputs of
// more records continue every key's sequence with no gap or repeat.
func TestStateDirDeleted(t *testing.T) {
	requireIntegration(t)
	began := time.Now()
	e := newEnv(t)
	const parts = 6
	e.createTopic("in", parts)
	file := e.writeTopology(countTopology, nil)
	group := "streamer-" + e.id
	changelog := group + "-count-changelog"
	const keys, n1, n2 = 3_000, 60_000, 30_000
	dir := filepath.Join(e.dir, "state-r1")
	r := e.startStateful(file, "r1")
	waitUntil(t, "r1 to get partitions", time.Minute, []*replica{r}, func() bool { return assignedSince(r, 0) })

	// Segments that roll every 100 ms, and a cleaner that takes any of
	// them: the changelog (created by r1 before it joined) is compacted
	// soon after the records are in.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	resps, err := e.admin.AlterTopicConfigs(ctx, []kadm.AlterConfig{
		{Op: kadm.SetConfig, Name: "segment.ms", Value: kadm.StringPtr("100")},
		{Op: kadm.SetConfig, Name: "min.cleanable.dirty.ratio", Value: kadm.StringPtr("0.01")},
	}, changelog)
	if err == nil {
		_, err = resps.On(changelog, nil)
	}
	if err != nil {
		t.Fatalf("configuring %s: %v", changelog, err)
	}
	for i := 0; i < n1; i += 10_000 {
		if err := e.produceCounted("in", i, i+10_000, keys); err != nil {
			t.Fatal(err)
		}
	}
	e.waitConsumed(group, "in", []*replica{r}, 2*time.Minute)

	// The changelog's partition p holds one record per record of input
	// partition p until it is compacted.
	ends, err := e.admin.ListEndOffsets(ctx, e.topic("in"))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		per := map[int32]int64{}
		if err := topicread.All(ctx, brokers, 2*time.Second, func(r *kgo.Record) { per[r.Partition]++ }, changelog); err != nil {
			t.Fatal(err)
		}
		compacted := 0
		for p := range int32(parts) {
			if o, _ := ends.Lookup(e.topic("in"), p); per[p] < o.Offset {
				compacted++
			}
		}
		if compacted == parts {
			t.Logf("changelog compacted after %v: %v records by partition", time.Since(began).Round(time.Millisecond), per)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broker compacted %d of %d changelog partitions in 2 minutes (records by partition: %v)", compacted, parts, per)
		}
		time.Sleep(2 * time.Second)
	}

	if _, code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	stores, _ := filepath.Glob(filepath.Join(dir, "*", "count", "*"))
	if len(stores) != parts {
		t.Fatalf("%d stores under %s, want %d: %v", len(stores), dir, parts, stores)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	r = e.startStateful(file, "r1")
	restored := regexp.MustCompile(`msg="state store restored" .*store=count partition=(\d+)`)
	waitUntil(t, "every partition's store to be rebuilt", 2*time.Minute, []*replica{r}, func() bool {
		done := map[string]bool{}
		for _, m := range restored.FindAllStringSubmatch(r.logText(), -1) {
			done[m[1]] = true
		}
		return len(done) == parts
	})
	t.Logf("rebuilt from changelog offsets %v after %v", restoresFrom(r), time.Since(began).Round(time.Millisecond))
	if _, code := r.stop(t); code != 0 {
		t.Fatalf("exit %d", code)
	}
	compareStores(t, dir, group, changelog, parts)

	// Counting goes on from the rebuilt state.
	r = e.startStateful(file, "r1")
	if err := e.produceCounted("in", n1, n1+n2, keys); err != nil {
		t.Fatal(err)
	}
	e.waitConsumed(group, "in", []*replica{r}, 2*time.Minute)
	if _, code := r.stop(t); code != 0 {
		t.Errorf("exit %d", code)
	}
	o := newCountOracle()
	o.addCounted(0, n1+n2, keys)
	// Compaction took changelog records away: only the outputs are checked.
	checkCounts(t, e.topic("out"), "", o)
	t.Logf("took %v", time.Since(began).Round(time.Millisecond))
}

// compareStores checks that the Pebble store of each partition under dir
// holds exactly the latest value of each key in the changelog's partition
// of the same number, read_committed: no key missing, extra or different.
func compareStores(t *testing.T, dir, group, changelog string, parts int32) {
	t.Helper()
	want := map[int32]map[string][]byte{}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		if want[r.Partition] == nil {
			want[r.Partition] = map[string][]byte{}
		}
		if r.Value == nil {
			delete(want[r.Partition], string(r.Key))
		} else {
			want[r.Partition][string(r.Key)] = r.Value
		}
	}, changelog)
	if err != nil {
		t.Fatal(err)
	}
	keys := 0
	for p := range parts {
		st, err := state.OpenPebble(state.Dir(dir, group, "count", p))
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]byte{}
		err = st.Range(nil, nil, func(k, v []byte) bool {
			got[string(k)] = append([]byte(nil), v...)
			return true
		})
		if cerr := st.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want[p] {
			if g, ok := got[k]; !ok || !bytes.Equal(g, v) {
				t.Errorf("partition %d key %s: store holds %q (present %v), changelog %q", p, k, g, ok, v)
			}
		}
		for k := range got {
			if _, ok := want[p][k]; !ok {
				t.Errorf("partition %d: store holds key %q, which the changelog does not", p, k)
			}
		}
		keys += len(got)
	}
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("the rebuilt stores hold the changelog's latest value of all %d keys, and nothing else", keys)
}
