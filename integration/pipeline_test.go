package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

// filterMap keeps records whose n is not a multiple of 10 and computes two
// fields; the dead-letter topic catches the rest.
const filterMap = `
name: {{.ID}}
dead_letter: dlq
processing:
  commit_interval: 100ms
datasets:
  in:
    topic: {{topic "in"}}
  kept: {}
  out:
    topic: {{topic "out"}}
    create: {partitions: 6}
  dlq:
    topic: {{topic "dlq"}}
    value: bytes
    create: {partitions: 1}
pipes:
  keep:
    from: in
    to: kept
    filter:
      when: n % 10 != 0
  shape:
    from: kept
    to: out
    map:
      compute:
        double: n * 2
        label: '"id-" + string(id)'
      rename:
        n: number
      drop: [junk]
`

type outRec struct {
	ID     int     `json:"id"`
	Number float64 `json:"number"`
	Double float64 `json:"double"`
	Label  string  `json:"label"`
	Junk   *string `json:"junk"`
}

func inputRecords(from, to int) []*kgo.Record {
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		v := fmt.Sprintf(`{"id":%d,"n":%d,"junk":"x"}`, i, i)
		recs = append(recs, &kgo.Record{Key: []byte("k" + strconv.Itoa(i%97)), Value: []byte(v)})
	}
	return recs
}

// readOutput reads a topic back with read_committed and returns how often
// each id appears, checking each record's computed fields and per-key order.
func readOutput(t *testing.T, topic string) map[int]int {
	t.Helper()
	seen := map[int]int{}
	last := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		var o outRec
		if err := json.Unmarshal(r.Value, &o); err != nil {
			t.Errorf("output not JSON: %s", r.Value)
			return
		}
		if o.Double != 2*o.Number || o.Number != float64(o.ID) || o.Label != "id-"+strconv.Itoa(o.ID) || o.Junk != nil {
			t.Errorf("wrong output record %s", r.Value)
		}
		if l, ok := last[string(r.Key)]; ok && o.ID <= l {
			t.Errorf("key %s: id %d after %d: per-key order lost", r.Key, o.ID, l)
		}
		last[string(r.Key)] = o.ID
		seen[o.ID]++
	}, topic)
	if err != nil {
		t.Fatal(err)
	}
	return seen
}

// checkExactlyOnce asserts that the ids kept by the filter appear exactly
// once among n inputs.
func checkExactlyOnce(t *testing.T, seen map[int]int, n int) {
	t.Helper()
	dups, missing, extra := 0, 0, 0
	for i := 0; i < n; i++ {
		want := 1
		if i%10 == 0 {
			want = 0
		}
		switch c := seen[i]; {
		case c < want:
			missing++
		case c > want:
			dups++
		}
	}
	for id := range seen {
		if id < 0 || id >= n {
			extra++
		}
	}
	if dups+missing+extra > 0 {
		t.Fatalf("%d duplicated, %d missing, %d unexpected ids in the output (of %d inputs)", dups, missing, extra, n)
	}
}

// (a) 100k records through a filter+map topology, read back with
// read_committed, equal the expected set exactly; SIGTERM exits 0 quickly.
func TestFilterMap100k(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(filterMap, nil)
	const n = 100_000
	for i := 0; i < n; i += 20_000 {
		e.produce("in", inputRecords(i, i+20_000))
	}
	r := e.start(file, "r1")
	e.waitConsumed("streamer-"+e.id, "in", []*replica{r}, 3*time.Minute)
	took, code := r.stop(t)
	t.Logf("SIGTERM to exit: %v", took)
	if code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0:\n%s", code, r.log)
	}
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %v to exit, want under 10s", took)
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")), n)
	crossCheck(t, e.topic("out"), n-n/10)
}

// (b) Two replicas share 6 partitions; one is SIGKILLed mid-run and
// restarted with the same replica id. The output has no duplicate and no
// gap.
func TestKillAndRestart(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(filterMap, nil)
	group := "streamer-" + e.id
	const n = 60_000
	e.produce("in", inputRecords(0, 20_000))
	r1 := e.start(file, "r1")
	r2 := e.start(file, "r2")

	// Let both work, then feed more and kill r1 in the middle of it.
	e.waitLagBelow(group, "in", 15_000, r1, r2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 20_000; i < n; i += 5_000 {
			e.produce("in", inputRecords(i, i+5_000))
			time.Sleep(150 * time.Millisecond)
		}
	}()
	time.Sleep(400 * time.Millisecond)
	r1.kill()
	t.Log("r1 killed")
	time.Sleep(time.Second)
	r1 = e.start(file, "r1")
	<-done
	e.waitConsumed(group, "in", []*replica{r1, r2}, 3*time.Minute)
	for _, r := range []*replica{r1, r2} {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit code %d:\n%s", code, r.log)
		}
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")), n)
	crossCheck(t, e.topic("out"), n-n/10)
}

// crossCheck reads a topic with kcat (librdkafka, a client independent of
// franz-go) at read_committed and checks it holds exactly want records with
// distinct ids.
func crossCheck(t *testing.T, topic string, want int) {
	t.Helper()
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("kcat is not installed (make test installs Debian's package): %v", err)
	}
	out, err := exec.Command(kcat, "-C", "-b", strings.Join(brokers, ","), "-t", topic, "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=read_committed", "-f", "%s\n").Output()
	if err != nil {
		t.Fatalf("kcat: %v", err)
	}
	ids := map[int]bool{}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	idRe := regexp.MustCompile(`"id":(\d+)`)
	for _, l := range lines {
		m := idRe.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("kcat read %q", l)
		}
		id, _ := strconv.Atoi(m[1])
		ids[id] = true
	}
	if len(lines) != want || len(ids) != want {
		t.Fatalf("kcat reads %d records, %d distinct ids; want %d of each", len(lines), len(ids), want)
	}
	t.Logf("kcat (librdkafka, read_committed) agrees: %d records, %d distinct", len(lines), len(ids))
}

// (c) Malformed records land in the dead-letter topic with headers saying
// why and where from, and every other record flows.
func TestDeadLetters(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 3)
	file := e.writeTopology(filterMap, nil)
	const n = 3000
	recs := inputRecords(0, n)
	bad := map[int]string{} // offset in the batch -> why
	for i := 5; i < n; i += 100 {
		recs[i].Value = []byte(`{"id":` + strconv.Itoa(i) + `,"n":`) // truncated JSON
		bad[i] = "decode"
	}
	for i := 7; i < n; i += 100 {
		recs[i].Value = []byte(fmt.Sprintf(`{"id":%d,"n":"seven"}`, i)) // n % 10 fails
		bad[i] = "process"
	}
	e.produce("in", recs)
	r := e.start(file, "r1")
	e.waitConsumed("streamer-"+e.id, "in", []*replica{r}, 2*time.Minute)
	r.stop(t)

	// Every good record flows.
	seen := readOutput(t, e.topic("out"))
	for i := 0; i < n; i++ {
		want := 1
		if i%10 == 0 || bad[i] != "" {
			want = 0
		}
		if seen[i] != want {
			t.Fatalf("id %d appears %d times in the output, want %d", i, seen[i], want)
		}
	}
	// Every bad record is in the dead-letter topic once, raw, with headers.
	var dlq []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) { dlq = append(dlq, r) }, e.topic("dlq")); err != nil {
		t.Fatal(err)
	}
	if len(dlq) != len(bad) {
		t.Fatalf("%d dead letters, want %d", len(dlq), len(bad))
	}
	idRe := regexp.MustCompile(`"id":(\d+)`)
	for _, d := range dlq {
		h := map[string]string{}
		for _, x := range d.Headers {
			h[x.Key] = string(x.Value)
		}
		m := idRe.FindSubmatch(d.Value)
		if m == nil {
			t.Fatalf("dead letter value %q", d.Value)
		}
		id, _ := strconv.Atoi(string(m[1]))
		if h["streamer.stage"] != bad[id] || h["streamer.pipe"] != "keep" || h["streamer.dataset"] != "in" {
			t.Errorf("id %d: headers %v, want stage %s from pipe keep", id, h, bad[id])
		}
		if h["streamer.source.topic"] != e.topic("in") || h["streamer.error"] == "" {
			t.Errorf("id %d: headers %v", id, h)
		}
		if _, err := strconv.Atoi(h["streamer.source.partition"]); err != nil {
			t.Errorf("id %d: partition header %q", id, h["streamer.source.partition"])
		}
		off, err := strconv.ParseInt(h["streamer.source.offset"], 10, 64)
		if err != nil {
			t.Errorf("id %d: offset header %q", id, h["streamer.source.offset"])
			continue
		}
		// The headers point at the original record.
		p, _ := strconv.Atoi(h["streamer.source.partition"])
		orig := e.fetchOne(e.topic("in"), int32(p), off)
		if string(orig.Value) != string(d.Value) || string(orig.Key) != string(d.Key) {
			t.Errorf("id %d: dead letter %q does not match the source record %q", id, d.Value, orig.Value)
		}
	}
}

// fetchOne reads the record at one offset.
func (e *env) fetchOne(topic string, partition int32, offset int64) *kgo.Record {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: {partition: kgo.NewOffset().At(offset)}}))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fs := cl.PollRecords(ctx, 1)
	if err := fs.Err0(); err != nil {
		e.t.Fatalf("fetching %s[%d]@%d: %v", topic, partition, offset, err)
	}
	recs := fs.Records()
	if len(recs) == 0 || recs[0].Offset != offset {
		e.t.Fatalf("no record at %s[%d]@%d", topic, partition, offset)
	}
	return recs[0]
}

// (d) validate on a broken file reports every error as file:line:col and
// exits 3; run against missing topics names them and exits 1.
func TestValidateAndStartErrors(t *testing.T) {
	requireIntegration(t)
	out, err := exec.Command(binary, "validate", "../topology/testdata/invalid/many-errors.yaml").CombinedOutput()
	if code := exitCode(err); code != 3 {
		t.Fatalf("validate exit %d, want 3:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	loc := regexp.MustCompile(`^\.\./topology/testdata/invalid/many-errors\.yaml:\d+:\d+: `)
	var errs int
	for _, l := range lines[:len(lines)-1] { // the last line is the summary
		if !loc.MatchString(l) {
			t.Errorf("line without file:line:col: %q", l)
		}
		if !strings.Contains(l, "warning:") {
			errs++
		}
	}
	if errs != 9 {
		t.Errorf("%d errors reported, want all 9:\n%s", errs, out)
	}

	e := newEnv(t)
	file := e.writeTopology(filterMap, nil) // its input topic does not exist
	out, err = exec.Command(binary, "run", file, "--brokers", strings.Join(brokers, ",")).CombinedOutput()
	if code := exitCode(err); code != 1 || !strings.Contains(string(out), "missing topics: "+e.topic("in")) {
		t.Fatalf("run with a missing topic: exit %d, output:\n%s", code, out)
	}
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	return -1
}

// TestSigtermMidStream stops a replica with SIGTERM while records flow: it
// must commit what it has, leave the group and exit 0 within 10 s; a new
// replica then finishes the job, and the output holds every record once.
// Records go on arriving until the SIGTERM is sent: a replica that commits
// as soon as it has caught up (min_commit_interval) often shows no lag at
// all, so the lag cannot say that the stream is still flowing.
func TestSigtermMidStream(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(filterMap, nil)
	group := "streamer-" + e.id
	const most = 400_000 // 20 s of records at most, should the replica never start
	var produced atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < most; i += 2_000 {
			select {
			case <-stop:
				return
			default:
			}
			e.produceQuiet("in", inputRecords(i, i+2_000))
			produced.Store(int64(i + 2_000))
			time.Sleep(100 * time.Millisecond)
		}
	}()
	r := e.start(file, "r1")
	deadline := time.Now().Add(time.Minute)
	// Mid-stream: several batches are in, the group has committed some of
	// the records, and more are being produced (until after the SIGTERM).
	for lag, err := e.lag(group, "in"); err != nil || lag < 0 || produced.Load() < 10_000 || produced.Load()-lag < 2_000; lag, err = e.lag(group, "in") {
		if time.Now().After(deadline) {
			t.Fatalf("no progress before the SIGTERM (lag %d of %d produced, %v)", lag, produced.Load(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case <-done:
		t.Fatalf("every record was produced before the replica committed any: not mid-stream")
	default:
	}
	took, code := r.stop(t)
	t.Logf("SIGTERM mid-stream: exit %d after %v", code, took)
	if code != 0 || took > 10*time.Second {
		t.Fatalf("exit %d after %v; want 0 within 10s:\n%s", code, took, r.log)
	}
	close(stop)
	<-done
	n := int(produced.Load())
	t.Logf("%d records produced", n)
	r2 := e.start(file, "r2")
	e.waitConsumed(group, "in", []*replica{r2}, 2*time.Minute)
	// r1 may have committed every record before it stopped: r2 then has
	// nothing to do, and is stopped once it has joined, not while it starts.
	for joined := time.Now().Add(time.Minute); !strings.Contains(r2.logText(), "partitions assigned"); time.Sleep(50 * time.Millisecond) {
		if time.Now().After(joined) || r2.exited() {
			fatalf(t, "the second replica never joined the group")
		}
	}
	if _, code := r2.stop(t); code != 0 {
		t.Errorf("second replica exit %d", code)
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")), n)
	crossCheck(t, e.topic("out"), n-n/10)
}
