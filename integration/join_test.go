package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

const joinTopology = `
name: {{.ID}}
datasets:
  orders:
    topic: {{topic "orders"}}
    partitions: 4
  customers:
    topic: {{topic "customers"}}
    table: partitioned
    partitions: 4
  countries:
    topic: {{topic "countries"}}
    table: global
  with-customer: {}
  enriched:
    topic: {{topic "enriched"}}
    create: {partitions: 4}
pipes:
  customer:
    from: orders
    to: with-customer
    on_error: fail
    join: {table: customers, type: left, fields: {name: name, v: v}}
  country:
    from: with-customer
    to: enriched
    on_error: fail
    join: {table: countries, type: left, on: cc, fields: {country: name}}
`

// joinOracle tracks the tables as the test writes them, and the output each
// order must have: the table values current when it was produced.
type joinOracle struct {
	customers map[string]map[string]any
	countries map[string]string
	want      map[int]string
}

func (o *joinOracle) customer(key string, v map[string]any) *kgo.Record {
	r := &kgo.Record{Key: []byte(key)}
	if v == nil {
		delete(o.customers, key)
		return r // a tombstone
	}
	o.customers[key] = v
	r.Value, _ = json.Marshal(v)
	return r
}

func (o *joinOracle) country(cc, name string) *kgo.Record {
	r := &kgo.Record{Key: []byte(cc)}
	if name == "" {
		delete(o.countries, cc)
		return r
	}
	o.countries[cc] = name
	r.Value = []byte(fmt.Sprintf(`{"name":%q}`, name))
	return r
}

// orders returns orders from..to-1 and records what each must become.
func (o *joinOracle) orders(from, to int) []*kgo.Record {
	ccs := []string{"DE", "FR", "US", "IT"}
	var recs []*kgo.Record
	for i := from; i < to; i++ {
		key, cc := fmt.Sprintf("c%d", i%40), ccs[i%len(ccs)]
		out := map[string]any{"id": i, "cc": cc, "name": nil, "v": nil, "country": nil}
		if c, ok := o.customers[key]; ok {
			out["name"], out["v"] = c["name"], c["v"]
		}
		if n, ok := o.countries[cc]; ok {
			out["country"] = n
		}
		b, _ := json.Marshal(out)
		o.want[i] = string(b)
		recs = append(recs, &kgo.Record{Key: []byte(key), Value: []byte(fmt.Sprintf(`{"id":%d,"cc":%q}`, i, cc))})
	}
	return recs
}

// TestJoin (issue #3, test e): orders (4 partitions) joined with a
// partitioned customers table co-partitioned with them, then with a global
// countries table looked up by the order's country code, on a real broker
// with two replicas. Table rows come first, then orders; then, while the
// replicas run, rounds of table updates (new versions, tombstones, new keys,
// an aborted transaction that must never show) each followed by more
// orders. One replica is SIGKILLed between rounds and restarted on its
// state directory, so its tables resume from their checkpoints. Every
// order must come out exactly once, read_committed, enriched with the
// table values current when it was produced (the oracle tracks the tables
// as the test writes them); orders without a match pass with nulls.
func TestJoin(t *testing.T) {
	e := newEnv(t)
	e.createTopic("orders", 4)
	for name, parts := range map[string]int32{"customers": 4, "countries": 2} {
		resp, err := e.admin.CreateTopic(context.Background(), parts, 1, map[string]*string{"cleanup.policy": kadm.StringPtr("compact")}, e.topic(name))
		if err == nil {
			err = resp.Err
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	file := e.writeTopology(joinTopology, nil)
	group := "streamer-" + e.id
	o := &joinOracle{customers: map[string]map[string]any{}, countries: map[string]string{}, want: map[int]string{}}
	start := time.Now()

	// Round 0: customers c0..c29 of the 40 keys orders use; countries but IT.
	var rows []*kgo.Record
	for i := range 30 {
		rows = append(rows, o.customer(fmt.Sprintf("c%d", i), map[string]any{"name": fmt.Sprintf("n%d", i), "v": 0}))
	}
	e.produce("customers", rows)
	e.produce("countries", []*kgo.Record{o.country("DE", "Germany"), o.country("FR", "France"), o.country("US", "United States")})
	e.produce("orders", o.orders(0, 4000))
	dir1, dir2 := filepath.Join(e.dir, "state-r1"), filepath.Join(e.dir, "state-r2")
	r1 := e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir1)
	r2 := e.startArgs(file, "r2", "--metrics-addr", "off", "--state-dir", dir2)
	e.waitConsumed(group, "orders", []*replica{r1, r2}, 2*time.Minute)

	// Round 1, mid-stream: new versions, tombstones, new keys, a renamed and
	// a new country, and an aborted transaction over every key.
	rows = rows[:0]
	for i := range 20 {
		rows = append(rows, o.customer(fmt.Sprintf("c%d", i), map[string]any{"name": fmt.Sprintf("n%d", i), "v": 1}))
	}
	for i := 20; i < 25; i++ {
		rows = append(rows, o.customer(fmt.Sprintf("c%d", i), nil))
	}
	for i := 30; i < 35; i++ {
		rows = append(rows, o.customer(fmt.Sprintf("c%d", i), map[string]any{"name": fmt.Sprintf("n%d", i), "v": 1}))
	}
	e.produce("customers", rows)
	e.produce("countries", []*kgo.Record{o.country("FR", "République française"), o.country("IT", "Italy")})
	e.abortedTableWrites()
	e.produce("orders", o.orders(4000, 8000))
	e.waitConsumed(group, "orders", []*replica{r1, r2}, 2*time.Minute)

	// Round 2: r1 dies; the tables change while it is away; it restarts on
	// its state directory and catches its tables up from their checkpoints.
	r1.kill()
	rows = rows[:0]
	for i := range 40 {
		rows = append(rows, o.customer(fmt.Sprintf("c%d", i), map[string]any{"name": fmt.Sprintf("m%d", i), "v": 2}))
	}
	e.produce("customers", rows)
	e.produce("countries", []*kgo.Record{o.country("DE", "")}) // a tombstone
	r1 = e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir1)
	e.produce("orders", o.orders(8000, 12000))
	e.waitConsumed(group, "orders", []*replica{r1, r2}, 3*time.Minute)
	for _, r := range []*replica{r1, r2} {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit %d:\n%s", code, r.logText())
		}
	}
	took := time.Since(start)

	// Read back read_committed: each order once, as the oracle says, in
	// order per key.
	got := map[int]int{}
	last := map[string]int{}
	wrong := 0
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		var v struct{ ID int }
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Errorf("bad output %s: %v", r.Value, err)
			return
		}
		got[v.ID]++
		if want := o.want[v.ID]; !sameJSON(string(r.Value), want) {
			if wrong++; wrong <= 10 {
				t.Errorf("order %d (key %s): got %s, want %s", v.ID, r.Key, r.Value, want)
			}
		}
		if prev, ok := last[string(r.Key)]; ok && v.ID <= prev {
			t.Errorf("key %s: order %d after %d", r.Key, v.ID, prev)
		}
		last[string(r.Key)] = v.ID
	}, e.topic("enriched"))
	if err != nil {
		t.Fatal(err)
	}
	dups, missing := 0, 0
	for i := range 12000 {
		switch got[i] {
		case 0:
			missing++
		case 1:
		default:
			dups++
		}
	}
	if dups > 0 || missing > 0 || wrong > 0 || len(got) != 12000 {
		t.Fatalf("%d duplicated, %d missing, %d wrongly enriched, %d distinct of 12000", dups, missing, wrong, len(got))
	}
	t.Logf("12000 orders enriched exactly once across 3 rounds of table updates, a SIGKILL and a restart, in %v", took.Round(time.Millisecond))
}

// abortedTableWrites writes a row for every customer and country in a
// transaction that aborts: read_committed tables never hold them.
func (e *env) abortedTableWrites() {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID(e.id+"-table-writer"))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.BeginTransaction(); err != nil {
		e.t.Fatal(err)
	}
	var recs []*kgo.Record
	for i := range 40 {
		recs = append(recs, &kgo.Record{Topic: e.topic("customers"), Key: []byte(fmt.Sprintf("c%d", i)), Value: []byte(`{"name":"aborted","v":-1}`)})
	}
	for _, cc := range []string{"DE", "FR", "US", "IT"} {
		recs = append(recs, &kgo.Record{Topic: e.topic("countries"), Key: []byte(cc), Value: []byte(`{"name":"aborted"}`)})
	}
	if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatal(err)
	}
	if err := cl.EndTransaction(context.Background(), kgo.TryAbort); err != nil {
		e.t.Fatal(err)
	}
}

func sameJSON(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

const joinUndeclared = `
name: {{.ID}}
datasets:
  orders: {topic: {{topic "orders"}}}
  customers: {topic: {{topic "customers"}}, table: partitioned}
  enriched: {topic: {{topic "enriched"}}, create: {partitions: 4}}
pipes:
  customer:
    from: orders
    to: enriched
    join: {table: customers, into: customer}
`

// TestJoinNotCoPartitioned: a partitioned table whose topic has another
// partition count than its stream (the file declares neither, so the
// compiler could not see it) stops the replica at start, exit code 1, with
// an error naming both topics and counts; nothing is written.
func TestJoinNotCoPartitioned(t *testing.T) {
	e := newEnv(t)
	e.createTopic("orders", 4)
	e.createTopic("customers", 3)
	e.produce("customers", []*kgo.Record{{Key: []byte("c1"), Value: []byte(`{"name":"Ada"}`)}})
	e.produce("orders", []*kgo.Record{{Key: []byte("c1"), Value: []byte(`{"id":1}`)}})
	r := e.start(e.writeTopology(joinUndeclared, nil), "r1")
	select {
	case <-r.done:
	case <-time.After(time.Minute):
		t.Fatalf("the replica is still running:\n%s", r.logText())
	}
	want := fmt.Sprintf("partitioned table \"customers\" (topic %s) has 3 partitions, but stream \"orders\" (topic %s), which pipe \"customer\" joins with it, has 4", e.topic("customers"), e.topic("orders"))
	if code := r.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(r.logText(), want) {
		t.Fatalf("exit %d, want 1 and the log to contain %s:\n%s", code, want, r.logText())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n := 0
	if err := topicread.All(ctx, brokers, time.Second, func(*kgo.Record) { n++ }, e.topic("enriched")); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("%d records written", n)
	}
}
