package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

// produceTxn produces the records in transactions of batch records each, so
// that every partition holds transaction markers, and ends with one.
func (e *env) produceTxn(topic string, recs []*kgo.Record, batch int) {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(e.id+"-producer"), kgo.DefaultProduceTopic(e.topic(topic)))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	for i := 0; i < len(recs); i += batch {
		if err := cl.BeginTransaction(); err != nil {
			e.t.Fatal(err)
		}
		for _, r := range recs[i:min(i+batch, len(recs))] {
			r.Topic = e.topic(topic)
			cl.Produce(ctx, r, nil)
		}
		if err := cl.Flush(ctx); err != nil {
			e.t.Fatal(err)
		}
		if err := cl.EndTransaction(ctx, kgo.TryCommit); err != nil {
			e.t.Fatal(err)
		}
	}
}

// cmd runs a streamer command to its end and returns its output and exit
// code.
func (e *env) cmd(timeout time.Duration, args ...string) (string, int) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c := exec.CommandContext(ctx, binary, args...)
	var out bytes.Buffer
	c.Stdout, c.Stderr = &out, &out
	err := c.Run()
	if ctx.Err() != nil {
		e.t.Fatalf("streamer %s: no exit within %v:\n%s", strings.Join(args, " "), timeout, out.String())
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		e.t.Fatal(err)
	}
	return out.String(), c.ProcessState.ExitCode()
}

// timedRecords returns records from to to whose timestamps are base +
// 10 ms × id.
func timedRecords(from, to int, base time.Time) []*kgo.Record {
	recs := inputRecords(from, to)
	for i, r := range recs {
		r.Timestamp = base.Add(time.Duration(from+i) * 10 * time.Millisecond)
	}
	return recs
}

// readValues reads a topic with read_committed: each value and how often.
func readValues(t *testing.T, topic string) map[string]int {
	t.Helper()
	out := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) { out[string(r.Key)+" "+string(r.Value)]++ }, topic); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestBackfillMatchesLive: the live job processes 20k records (produced in
// transactions, so every partition ends with a marker); a backfill of the
// range of 10k of them between two RFC 3339 times (older than the
// transactions' markers, which fool the broker's time index), into
// redirected sinks,
// stops by itself, exits 0 with a summary, and its output equals, as a
// multiset, what the live job wrote for those records. The live group's
// offsets are untouched, and --cleanup then deletes the backfill's group.
func TestBackfillMatchesLive(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(filterMap, nil)
	group := "streamer-" + e.id
	const n = 20_000
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	e.produceTxn("in", timedRecords(0, n, base), 2_000)
	r := e.start(file, "r1")
	// The live job commits up to the last record, one short of each
	// partition's trailing marker.
	e.waitLagBelow(group, "in", 6, r)
	if _, code := r.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.logText())
	}
	liveOffsets, err := e.admin.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}

	from, to := base.Add(5_000*10*time.Millisecond), base.Add(15_000*10*time.Millisecond)
	b := []string{"backfill", file, "--brokers", strings.Join(brokers, ","), "--from", from.Format(time.RFC3339Nano), "--to", to.Format(time.RFC3339Nano), "--id", "b1", "--sink-suffix", "-bf", "--state-dir", filepath.Join(e.dir, "bf")}
	out, code := e.cmd(2*time.Minute, b...)
	if code != 0 {
		t.Fatalf("backfill exit %d:\n%s", code, out)
	}
	for _, want := range []string{"10030 offsets in all", "out → " + e.topic("out") + "-bf", "this replica: 10000 records in, 0 dead letters", "out: 9000 records out", "backfill b1 finished"} {
		if !strings.Contains(out, want) {
			t.Errorf("backfill output lacks %q:\n%s", want, out)
		}
	}

	live := readValues(t, e.topic("out"))
	want := map[string]int{}
	for kv, c := range live {
		var o outRec
		if err := json.Unmarshal([]byte(kv[strings.IndexByte(kv, ' ')+1:]), &o); err != nil {
			t.Fatal(err)
		}
		if o.ID >= 5_000 && o.ID < 15_000 {
			want[kv] = c
		}
	}
	got := readValues(t, e.topic("out")+"-bf")
	if len(want) != 9_000 {
		t.Fatalf("the live output has %d records of the range, want 9000", len(want))
	}
	diff := 0
	for kv, c := range want {
		if got[kv] != c {
			diff++
		}
	}
	for kv := range got {
		if _, ok := want[kv]; !ok {
			diff++
		}
	}
	if diff > 0 {
		t.Errorf("the backfill's output differs from the live output in %d records (%d records, want %d)", diff, len(got), len(want))
	}
	now, err := e.admin.FetchOffsets(context.Background(), group)
	if err != nil {
		t.Fatal(err)
	}
	liveOffsets.Each(func(o kadm.OffsetResponse) {
		if c, _ := now.Lookup(o.Topic, o.Partition); c.At != o.At {
			t.Errorf("the live group's offset on %s[%d] moved from %d to %d", o.Topic, o.Partition, o.At, c.At)
		}
	})

	out, code = e.cmd(time.Minute, "backfill", file, "--brokers", strings.Join(brokers, ","), "--cleanup", "b1", "--state-dir", filepath.Join(e.dir, "bf"))
	if code != 0 || !strings.Contains(out, "group "+group+"-backfill-b1 deleted") {
		t.Fatalf("cleanup exit %d:\n%s", code, out)
	}
	groups, err := e.admin.ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups[group+"-backfill-b1"]; ok {
		t.Errorf("group %s-backfill-b1 is left after --cleanup", group)
	}
}

// TestBackfillKillAndResume: a rate-limited backfill of 60k records (--to
// now), which says it starts, is SIGKILLed once it has committed part of
// the range; more records arrive; it is run again with the same id and
// --to now on two replicas: both say they resume and keep the first
// start's ranges, stop by themselves and exit 0, and
// the output holds every record of the range exactly once and nothing
// after it.
func TestBackfillKillAndResume(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(filterMap, nil)
	const n = 60_000
	e.produceTxn("in", inputRecords(0, n), 5_000)
	bgroup := "streamer-" + e.id + "-backfill-k"
	args := func(replica string, extra ...string) []string {
		return append([]string{"backfill", file, "--brokers", strings.Join(brokers, ","), "--from", "earliest", "--to", "now", "--id", "k", "--sink-suffix", "-bf",
			"--replica-id", replica, "--state-dir", filepath.Join(e.dir, "bf-"+replica), "--progress-interval", "1s"}, extra...)
	}
	start := func(name string, a []string) *replica { return e.startCmd(name, nil, a...) }
	r1 := start("b1 (killed)", args("b1", "--rate", "8000", "--metrics-addr", "127.0.0.1:0"))
	// Kill it once it has committed between a tenth and a half of the range.
	deadline := time.Now().Add(time.Minute)
	for {
		lag, err := e.lag(bgroup, "in")
		if err == nil && lag < n*9/10 && lag > n/2 {
			break
		}
		if r1.exited() || time.Now().After(deadline) {
			t.Fatalf("the backfill did not get part of the way (lag %d, %v):\n%s", lag, err, r1.logText())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Its progress is on /metrics.
	addr := regexp.MustCompile(`serving metrics and health.* addr=(\S+)`).FindStringSubmatch(r1.logText())
	if addr == nil {
		t.Fatalf("no metrics address logged:\n%s", r1.logText())
	}
	var body []byte
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + addr[1] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if matches(t, `(?m)^streamer_backfill_offsets_done [1-9]`, string(body)) {
			break // the group's offsets were checked once
		}
	}
	for _, want := range []string{`(?m)^streamer_backfill_offsets_total 600\d\d$`, `(?m)^streamer_backfill_offsets_done [1-9]\d*$`, `(?m)^streamer_backfill_records_in_total [1-9]\d*$`} {
		if !matches(t, want, string(body)) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if l := r1.logText(); !startsFresh(l) {
		t.Errorf("the first start does not say it starts:\n%s", l)
	}
	r1.kill()
	lag, _ := e.lag(bgroup, "in")
	t.Logf("killed with %d of %d offsets left", lag, n)
	e.produceTxn("in", inputRecords(n, n+1_000), 1_000)

	r1 = start("b1", args("b1"))
	r2 := start("b2", args("b2"))
	waitBackfill(t, "k", r1, r2)
	for _, want := range []string{"\nresuming: the group has committed offsets past the start (COMMITTED)", "the ranges are those fixed by the backfill's first start"} {
		if !strings.Contains(r1.logText(), want) || !strings.Contains(r2.logText(), want) {
			t.Errorf("a replica of the second run did not say %q", want)
		}
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")+"-bf"), n)
}

// waitBackfill waits, two minutes at most, for each replica of backfill id
// to stop by itself, exit 0 and say it finished.
func waitBackfill(t *testing.T, id string, rs ...*replica) {
	t.Helper()
	for _, r := range rs {
		select {
		case <-r.done:
		case <-time.After(2 * time.Minute):
			fatalf(t, "a replica of backfill %s did not stop by itself:\n%s", id, r.logText())
		}
		if code := r.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(r.logText(), "backfill "+id+" finished") {
			fatalf(t, "a replica of backfill %s: exit %d:\n%s", id, code, r.logText())
		}
	}
}

// startsFresh reports whether a backfill's output says that it starts,
// not that it resumes.
func startsFresh(out string) bool {
	return strings.Contains(out, "\nstarting at START: nothing of the range is committed yet\n") && !strings.Contains(out, "\nresuming: ")
}

// TestBackfillRefusals: a backfill into a live sink is refused unless
// --allow-live-sinks; --from after --to, an unknown topic in an offset
// list, a range with no records and an unknown --sink dataset each get a
// clear error; nothing is created for them.
func TestBackfillRefusals(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 2)
	file := e.writeTopology(filterMap, nil)
	e.produce("in", inputRecords(0, 100))
	bs := strings.Join(brokers, ",")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--from", "earliest"}, 2, "would write into sink topics of the live job: " + e.topic("dlq") + ", " + e.topic("out")},
		{[]string{"--from", "earliest", "--sink", "out=" + e.topic("out2")}, 2, "would write into sink topics of the live job: " + e.topic("dlq")},
		{[]string{"--from", "2026-11-02T00:00:00Z", "--to", "2026-11-01T00:00:00Z", "--sink-suffix", "-bf"}, 1, "--from 2026-11-02T00:00:00Z is after --to 2026-11-01T00:00:00Z"},
		{[]string{"--from", e.topic("in") + ":0:50", "--to", e.topic("in") + ":0:10", "--sink-suffix", "-bf"}, 1, "[0]: --from " + e.topic("in") + ":0:50 is offset 50, after --to"},
		{[]string{"--from", "nope:0:1", "--to", "now", "--sink-suffix", "-bf"}, 1, `topic "nope" in "nope:0:1" is not a source topic of the topology`},
		{[]string{"--from", "now", "--sink-suffix", "-bf"}, 1, "the range holds no records between --from now and --to now"},
		{[]string{"--from", "yesterday"}, 2, `--from: "yesterday": want earliest`},
		{[]string{"--from", "earliest", "--sink", "nosuch=x"}, 2, "--sink: nosuch: not a sink of the topology"},
	} {
		out, code := e.cmd(time.Minute, append([]string{"backfill", file, "--brokers", bs, "--id", "r"}, c.args...)...)
		if code != c.code || !strings.Contains(out, c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, code, c.code, c.want, out)
		}
	}
	out, code := e.cmd(time.Minute, "backfill", file, "--brokers", bs, "--id", "r", "--from", "earliest", "--allow-live-sinks", "--dry-run")
	if code != 0 || !strings.Contains(out, "100 offsets in all") {
		t.Errorf("--allow-live-sinks --dry-run: exit %d:\n%s", code, out)
	}
	groups, err := e.admin.ListGroups(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := groups["streamer-"+e.id+"-backfill-r"]; ok {
		t.Errorf("a refused or dry-run backfill made its group")
	}
}

// TestOffsetsShowAndReset: after a run, `offsets show` reports each source
// partition committed at its end with no lag and the time of no next
// record; `offsets reset --to` an offset list is a dry run that changes
// nothing, is refused by the group coordinator while a replica runs, and
// moves the offsets with --execute once it is stopped; show then reports
// the lag and the time of the record at the new offset.
func TestOffsetsShowAndReset(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 2)
	file := e.writeTopology(filterMap, nil)
	group := "streamer-" + e.id
	base := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	recs := timedRecords(0, 1_000, base)
	for _, r := range recs {
		r.Partition = int32(r.Timestamp.Sub(base)/(10*time.Millisecond)) % 2
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, r := range recs {
		r.Topic = e.topic("in")
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r := e.start(file, "r1")
	e.waitConsumed(group, "in", []*replica{r}, time.Minute)
	bs := strings.Join(brokers, ",")
	show := func() string {
		out, code := e.cmd(time.Minute, "offsets", "show", file, "--brokers", bs)
		if code != 0 {
			t.Fatalf("offsets show: exit %d:\n%s", code, out)
		}
		return out
	}
	out := show()
	for p := 0; p < 2; p++ {
		if !matches(t, fmt.Sprintf(`(?m)^%s\s+%d\s+500\s+500\s+0\s+-$`, e.topic("in"), p), out) {
			t.Errorf("offsets show after the run:\n%s", out)
		}
	}
	to := e.topic("in") + ":0:100," + e.topic("in") + ":1:250"
	reset := func(extra ...string) (string, int) {
		return e.cmd(time.Minute, append([]string{"offsets", "reset", file, "--brokers", bs, "--to", to}, extra...)...)
	}
	out, code := reset()
	if code != 0 || !strings.Contains(out, "dry run: nothing changed") || !strings.Contains(out, "1 replicas are running") {
		t.Errorf("dry run: exit %d:\n%s", code, out)
	}
	out, code = reset("--execute", "--wait", "1s")
	if code != 1 || !strings.Contains(out, "the group has active members") {
		t.Errorf("--execute while a replica runs: exit %d:\n%s", code, out)
	}
	if _, code := r.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.logText())
	}
	if out := show(); !strings.Contains(out, "  500  ") || strings.Contains(out, "  100  ") {
		t.Errorf("offsets moved by a dry run or refused reset:\n%s", out)
	}
	out, code = reset("--execute")
	if code != 0 || !strings.Contains(out, "offsets moved to") {
		t.Fatalf("--execute: exit %d:\n%s", code, out)
	}
	out = show()
	// Record 200 is the 100th of partition 0, record 501 the 250th of 1.
	for _, want := range []string{
		fmt.Sprintf(`(?m)^%s\s+0\s+100\s+500\s+400\s+%s$`, e.topic("in"), strings.ReplaceAll(base.Add(200*10*time.Millisecond).Format(time.RFC3339Nano), ".", `\.`)),
		fmt.Sprintf(`(?m)^%s\s+1\s+250\s+500\s+250\s+%s$`, e.topic("in"), strings.ReplaceAll(base.Add(501*10*time.Millisecond).Format(time.RFC3339Nano), ".", `\.`)),
	} {
		if !matches(t, want, out) {
			t.Errorf("offsets show after the reset lacks %s:\n%s", want, out)
		}
	}
}

func matches(t *testing.T, pattern, s string) bool {
	t.Helper()
	return regexp.MustCompile(pattern).MatchString(s)
}

// TestBackfillStatefulRepartition: records re-keyed through a repartition
// topic into a keyed count. The live job and a backfill from the start of
// the topic write the same number of counts per group, ending at the same
// count and sum: the backfill does not stop before its repartition topic
// is drained and committed. (The intermediate sums depend on the order in
// which the partitions' records meet in the repartition topic, which no
// two runs share.)
func TestBackfillStatefulRepartition(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 4)
	file := e.writeTopology(repartitionTopology, nil)
	group := "streamer-" + e.id
	const n = 30_000
	e.produceTxn("in", regroupRecords(0, n), 3_000)
	r := e.start(file, "r1")
	e.waitLagBelow(group, "in", 4, r)
	// and until it has counted every record, from the repartition topic.
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(time.Second) {
		c, err := topicread.Count(context.Background(), brokers, e.topic("out"))
		if err == nil && c[e.topic("out")] >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the live job wrote %d of %d counts (%v)", c[e.topic("out")], n, err)
		}
	}
	if _, code := r.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r.logText())
	}
	out, code := e.cmd(3*time.Minute, "backfill", file, "--brokers", strings.Join(brokers, ","), "--from", "earliest", "--id", "s", "--sink-suffix", "-bf", "--done-check-interval", "10ms", "--state-dir", filepath.Join(e.dir, "bf"))
	if code != 0 {
		t.Fatalf("backfill exit %d:\n%s", code, out)
	}
	final := func(topic string) (map[string]string, map[string]int) {
		last, count := map[string]string{}, map[string]int{}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
			var v struct{ N, Total float64 }
			if err := json.Unmarshal(r.Value, &v); err != nil {
				t.Errorf("%s: %v", r.Value, err)
			}
			if k := string(r.Key); int(v.N) > count[k] {
				last[k] = fmt.Sprintf("n=%v total=%v", v.N, v.Total)
				count[k] = int(v.N)
			}
		}, topic)
		if err != nil {
			t.Fatal(err)
		}
		return last, count
	}
	liveLast, liveCount := final(e.topic("out"))
	bfLast, bfCount := final(e.topic("out") + "-bf")
	if len(liveLast) != 53 {
		t.Fatalf("the live job counted %d groups, want 53", len(liveLast))
	}
	for k, v := range liveLast {
		if bfLast[k] != v || bfCount[k] != liveCount[k] {
			t.Errorf("group %s: the backfill ends at %q after %d counts, the live job at %q after %d", k, bfLast[k], bfCount[k], v, liveCount[k])
		}
	}
}

// TestShadowRun: `backfill NEW --compare OLD` runs both versions over the
// same range and reports, per sink, the records that changed (a third of
// the doubles are one more in the new version) with the field and the
// size of the change, and the sinks present in one version only; it exits
// 1. A version compared with itself exits 0 with no differences.
func TestShadowRun(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 3)
	newSrc := strings.Replace(filterMap, "double: n * 2", `double: "id % 3 == 0 ? n * 2 + 1 : n * 2"`, 1)
	newSrc = strings.Replace(newSrc, "  dlq:\n", "  audit:\n    topic: {{topic \"audit\"}}\n    create: {partitions: 1}\n  dlq:\n", 1)
	newSrc += "  tap:\n    from: kept\n    to: audit\n    filter:\n      when: \"true\"\n"
	newFile := filepath.Join(e.dir, "new.yaml")
	tmp := e.writeTopology(newSrc, nil)
	if err := os.Rename(tmp, newFile); err != nil {
		t.Fatal(err)
	}
	oldFile := e.writeTopology(filterMap, nil)
	e.produceTxn("in", inputRecords(0, 3_000), 1_000)
	bs := strings.Join(brokers, ",")
	out, code := e.cmd(3*time.Minute, "backfill", newFile, "--compare", oldFile, "--brokers", bs, "--from", "earliest", "--id", "c1", "--state-dir", filepath.Join(e.dir, "c1"))
	if code != 1 {
		t.Fatalf("shadow run: exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		"sinks only in the new version: audit",
		"out: 2700 records old, 2700 new: 1800 equal, 900 changed, 0 only old, 0 only new",
		"field double: changed in 900 records (900 numbers: mean |Δ| 1, max |Δ| 1)",
		"the versions differ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("the report lacks %q:\n%s", want, out)
		}
	}
	if matches(t, `(?m)^  changed, key "k\d+": double: (\d+) → (\d+)$`, out) == false {
		t.Errorf("no sample of a changed record:\n%s", out)
	}
	out, code = e.cmd(3*time.Minute, "backfill", oldFile, "--compare", oldFile, "--brokers", bs, "--from", "earliest", "--id", "c2", "--state-dir", filepath.Join(e.dir, "c2"))
	if code != 0 || !strings.Contains(out, "out: 2700 records old, 2700 new: 2700 equal, 0 changed") || !strings.Contains(out, "shadow run c2: no differences") {
		t.Errorf("a version against itself: exit %d:\n%s", code, out)
	}
}

// TestBackfillEndsPastAbortedTransaction: the range ends (--to now) inside
// a transaction still open when the backfill starts, which is then
// aborted: the poll that passes the abort marker holds no record, and the
// backfill must still commit the position past it to stop by itself.
func TestBackfillEndsPastAbortedTransaction(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 1)
	file := e.writeTopology(filterMap, nil)
	e.produceTxn("in", inputRecords(0, 1_000), 1_000)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(e.id+"-open"), kgo.DefaultProduceTopic(e.topic("in")))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx := context.Background()
	if err := cl.BeginTransaction(); err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, inputRecords(1_000, 1_100)...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	r := e.startCmd("backfill", nil, "backfill", file, "--brokers", strings.Join(brokers, ","), "--from", "earliest", "--to", "now", "--id", "a", "--sink-suffix", "-bf", "--state-dir", filepath.Join(e.dir, "bf"))
	// Let it process the committed records and wait at the open
	// transaction, then abort it.
	deadline := time.Now().Add(time.Minute)
	for !strings.Contains(r.logText(), "partitions assigned") {
		if r.exited() || time.Now().After(deadline) {
			t.Fatalf("the backfill did not start:\n%s", r.logText())
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(3 * time.Second)
	if err := cl.EndTransaction(ctx, kgo.TryAbort); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatalf("the backfill did not stop within a minute of the abort:\n%s", r.logText())
	}
	if code := r.cmd.ProcessState.ExitCode(); code != 0 || !strings.Contains(r.logText(), "this replica: 1000 records in") {
		t.Fatalf("exit %d:\n%s", code, r.logText())
	}
	if got := readOutput(t, e.topic("out")+"-bf"); len(got) != 900 {
		t.Errorf("%d records out, want 900", len(got))
	}
}

// TestShadowRunRescoring: the rescoring example's v2 (LightGBM) against v1
// (XGBoost) over a day of events: every score moved, and the report says
// by how much; exit 1.
func TestShadowRunRescoring(t *testing.T) {
	e := newEnv(t)
	e.createTopic("events", 3)
	if err := os.MkdirAll(filepath.Join(e.dir, "models"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"v1-xgboost.json", "v2-lightgbm.txt"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", "rescoring", "models", m))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(e.dir, "models", m), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	files := map[string]string{}
	for _, v := range []string{"v1.yaml", "v2.yaml"} {
		b, err := os.ReadFile(filepath.Join("..", "examples", "rescoring", v))
		if err != nil {
			t.Fatal(err)
		}
		src := strings.NewReplacer("name: rescoring", "name: "+e.id, "topic: events-scored", "topic: "+e.topic("scored"), "topic: events\n", "topic: "+e.topic("events")+"\n").Replace(string(b))
		files[v] = filepath.Join(e.dir, v)
		if err := os.WriteFile(files[v], []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const n = 2_000
	recs := make([]*kgo.Record, n)
	for i := range recs {
		v := fmt.Sprintf(`{"id":%d`, i)
		for f := 0; f < 6; f++ {
			v += fmt.Sprintf(`,"f%d":%.3f`, f, float64((i*(f+3)*7919)%2000)/500-2)
		}
		recs[i] = &kgo.Record{Key: []byte(fmt.Sprintf("e%d", i)), Value: []byte(v + "}")}
	}
	e.produce("events", recs)
	out, code := e.cmd(3*time.Minute, "backfill", files["v2.yaml"], "--compare", files["v1.yaml"], "--brokers", strings.Join(brokers, ","), "--from", "24h", "--id", "v2-check", "--state-dir", filepath.Join(e.dir, "state"))
	if code != 1 {
		t.Fatalf("exit %d, want 1:\n%s", code, out)
	}
	for _, want := range []string{
		`(?m)^scored: 2000 records old, 2000 new: 0 equal, 2000 changed, 0 only old, 0 only new$`,
		`(?m)^  field score: changed in 2000 records \(2000 numbers: mean \|Δ\| 0\.\d+, max \|Δ\| 0\.\d+\)$`,
	} {
		if !matches(t, want, out) {
			t.Errorf("the report lacks %s:\n%s", want, out)
		}
	}
	t.Logf("report:\n%s", out[strings.Index(out, "\nscored:"):])
}
