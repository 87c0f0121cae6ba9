package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

// faultTopology is stateful in every way a fault can hurt: orders are
// joined with a global countries table, re-keyed by group (a repartition
// topic) and counted per group (a changelogged store).
const faultTopology = `
name: {{.ID}}
datasets:
  orders:
    topic: {{topic "orders"}}
    partitions: 4
  countries:
    topic: {{topic "countries"}}
    table: global
  enriched: {}
  by-group: {}
  counts:
    topic: {{topic "out"}}
    create: {partitions: 4}
pipes:
  country:
    from: orders
    to: enriched
    on_error: fail
    join: {table: countries, type: left, on: cc, fields: {country: name, rate: rate}}
  regroup:
    from: enriched
    to: by-group
    map:
      key: g
  count:
    from: by-group
    to: counts
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: n}
        rated: {op: sum, of: rate}
        country: {op: last, of: country}
`

// The fault workload: order i has country faultCC(i) and group
// faultGroup(i); a group's orders all share one country, so that the
// oracle knows each group's joined values.
var faultCountries = []struct{ cc, name string }{{"DE", "Germany"}, {"FR", "France"}, {"US", "United States"}, {"IT", "Italy"}}

func faultCC(i int) int        { return i % len(faultCountries) }
func faultGroup(i int) string  { return "g" + strconv.Itoa(i%24) }
func faultRate(cc int) float64 { return float64(cc + 1) }

func faultOrders(from, to int) []*kgo.Record {
	recs := make([]*kgo.Record, 0, to-from)
	for i := from; i < to; i++ {
		v := fmt.Sprintf(`{"id":%d,"n":%d,"g":%q,"cc":%q}`, i, i, faultGroup(i), faultCountries[faultCC(i)].cc)
		recs = append(recs, &kgo.Record{Key: []byte("id-" + strconv.Itoa(i)), Value: []byte(v)})
	}
	return recs
}

// faultRun is one fault scenario's world: the topics, the topology and the
// replicas' state directories.
type faultRun struct {
	e     *env
	file  string
	group string
	sent  int
	flags []string // more flags for every replica
}

func newFaultRun(t *testing.T) *faultRun {
	e := newEnv(t)
	e.createTopic("orders", 4)
	e.createTopic("countries", 1)
	f := &faultRun{e: e, file: e.writeTopology(faultTopology, nil), group: "streamer-" + e.id}
	f.sendCountries()
	return f
}

// sendCountries writes the countries table.
func (f *faultRun) sendCountries() {
	var rows []*kgo.Record
	for cc, c := range faultCountries {
		rows = append(rows, &kgo.Record{Key: []byte(c.cc), Value: fmt.Appendf(nil, `{"name":%q,"rate":%v}`, c.name, faultRate(cc))})
	}
	f.e.produce("countries", rows)
}

// send produces the next n orders.
func (f *faultRun) send(n int) {
	f.e.produce("orders", faultOrders(f.sent, f.sent+n))
	f.sent += n
}

func (f *faultRun) dir(id string) string { return filepath.Join(f.e.dir, "state-"+id) }

// startEnv is start with extra environment variables.
func (f *faultRun) startEnv(id string, env ...string) *replica {
	f.e.t.Helper()
	args := append([]string{"--metrics-addr", "off", "--state-dir", f.dir(id), "--commit-interval", "50ms"}, f.flags...)
	return f.e.startWith(env, f.file, id, args...)
}

// awaitKilled waits for a replica to die of its injected fault, sending
// 500 orders every 100 ms meanwhile (when feed is set), so that it keeps
// committing until it reaches the phase.
func (f *faultRun) awaitKilled(r *replica, phase string, feed bool) {
	t := f.e.t
	t.Helper()
	deadline := time.After(time.Minute)
wait:
	for {
		select {
		case <-r.done:
			break wait
		case <-deadline:
			t.Fatalf("the fault %s was never reached:\n%s", phase, r.logText())
		case <-time.After(100 * time.Millisecond):
			if feed {
				f.send(500)
			}
		}
	}
	if ws, ok := r.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("the replica with fault %s exited with %v, not by its SIGKILL:\n%s", phase, r.cmd.ProcessState, r.logText())
	}
	if !strings.Contains(r.logText(), "fault injected") {
		t.Fatalf("killed, but not by the fault %s:\n%s", phase, r.logText())
	}
}

// finish runs replicas until every order is consumed, stops them, and
// checks everything against the oracle.
func (f *faultRun) finish(rs ...*replica) {
	t := f.e.t
	t.Helper()
	// 3 minutes, and more for the long chaos run's million orders (about
	// 2,000/s get through its kills on a loaded 2-core machine).
	f.e.waitConsumed(f.group, "orders", rs, 3*time.Minute+time.Duration(f.sent/2000)*time.Second)
	f.waitCounted(rs...)
	for _, r := range rs {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit %d:\n%s", code, r.logText())
		}
	}
	checkFaultCounts(t, f.e.topic("out"), f.group+"-count-changelog", f.sent)
}

// waitCounted waits until a count per order sent is out: once the orders
// are consumed, their re-keyed copies may still wait in the repartition
// topic.
func (f *faultRun) waitCounted(rs ...*replica) {
	t := f.e.t
	t.Helper()
	out := f.e.topic("out")
	waitUntil(t, "a count per order", 3*time.Minute, rs, func() bool {
		n := 0
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := topicread.All(ctx, brokers, time.Second, func(*kgo.Record) { n++ }, out)
		return err == nil && n >= f.sent
	})
}

// checkFaultCounts checks the counts of faultTopology after orders
// 0..n-1: each group's counts run 1, 2, 3, ... (no record lost or counted
// twice), end at the group's number of orders with the exact sums, and the
// joined values are the group's country's; the changelog holds one record
// per order.
func checkFaultCounts(t *testing.T, out, changelog string, n int) {
	t.Helper()
	o := newCountOracle()
	rated, country := map[string]float64{}, map[string]string{}
	for i := range n {
		g := faultGroup(i)
		o.add(g, i)
		rated[g] += faultRate(faultCC(i))
		country[g] = faultCountries[faultCC(i)].name
	}
	checkCounts(t, out, changelog, o)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lastRated, lastCountry := map[string]float64{}, map[string]string{}
	err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		var v struct {
			Rated   float64
			Country string
		}
		if err := json.Unmarshal(r.Value, &v); err == nil {
			lastRated[string(r.Key)], lastCountry[string(r.Key)] = v.Rated, v.Country
		}
	}, out)
	if err != nil {
		t.Fatal(err)
	}
	for g, want := range rated {
		if lastRated[g] != want || lastCountry[g] != country[g] {
			t.Errorf("group %s: joined values end at rated %v, country %q; want %v and %q", g, lastRated[g], lastCountry[g], want, country[g])
		}
	}
}

// TestFaultAtEachCommitPhase kills a replica at each moment exactly-once
// depends on, by the engine's own fault injection (STREAMER_FAULT), not
// after a sleep: after its records are produced but before the offsets
// join the transaction, between TxnOffsetCommit and EndTxn, and after
// EndTxn before its stores commit. A second replica then runs on the same
// state directory; every count must still equal the oracle, with one
// changelog record per order.
func TestFaultAtEachCommitPhase(t *testing.T) {
	requireIntegration(t)
	for _, phase := range []string{"after-produce", "after-offsets", "after-endtxn"} {
		t.Run(phase, func(t *testing.T) {
			f := newFaultRun(t)
			f.send(2_000)
			r := f.startEnv("r1", "STREAMER_FAULT="+phase+":8")
			f.awaitKilled(r, phase, true)
			f.send(4_000)
			f.finish(f.startEnv("r1"))
		})
	}
}

// TestFaultMidRestore kills a replica while it restores its store from the
// changelog, while it loads the table, and while a bulk restore (no
// write-ahead log; the threshold lowered to 1,000 offsets so that a few
// thousand records make one) flushes, on a fresh state directory: the next
// start must not trust the half-built store or table.
func TestFaultMidRestore(t *testing.T) {
	requireIntegration(t)
	for _, phase := range []string{"mid-restore", "mid-table-load", "mid-bulk-flush"} {
		t.Run(phase, func(t *testing.T) {
			f := newFaultRun(t)
			if phase == "mid-bulk-flush" {
				f.flags = []string{"--bulk-restore-offsets", "1000"}
			}
			f.send(10_000)
			first := f.startEnv("r1")
			f.e.waitConsumed(f.group, "orders", []*replica{first}, 3*time.Minute)
			// Every order counted, so that the changelog holds 10,000
			// records: enough for a bulk restore.
			f.waitCounted(first)
			first.stop(t)
			// A new directory: the store and the table are read from Kafka.
			if err := os.RemoveAll(f.dir("r1")); err != nil {
				t.Fatal(err)
			}
			r := f.startEnv("r1", "STREAMER_FAULT="+phase+":1")
			f.awaitKilled(r, phase, false)
			f.send(2_000)
			f.finish(f.startEnv("r1"))
		})
	}
}

// TestZombie pauses a replica (SIGSTOP) past its session timeout, while
// its transaction is open: its partitions move to a second replica, and
// when it wakes (SIGCONT) it must be fenced. Nothing it wrote after it
// lost its partitions may count.
func TestZombie(t *testing.T) {
	requireIntegration(t)
	f := newFaultRun(t)
	f.send(5_000)
	r1 := f.startEnv("r1")
	f.e.waitLagBelow(f.group, "orders", 4_000, r1)
	more := faultOrders(f.sent, f.sent+5_000)
	f.sent += 5_000
	go f.e.produceQuiet("orders", more) // r1 is mid-stream when it stops
	time.Sleep(300 * time.Millisecond)
	if err := r1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	r2 := f.startEnv("r2")
	// Past the 10 s session: r2 gets every partition.
	waitFor(t, "r2 to take the partitions", time.Minute, func() bool { return assignedSince(r2, 0) })
	time.Sleep(2 * time.Second)
	if err := r1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second) // the zombie tries to commit
	f.send(2_000)
	f.finish(r1, r2)
}
