package engine_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/state"
)

const joining = `
name: joins
datasets:
  orders:    {topic: orders}
  customers: {topic: customers, table: partitioned}
  countries: {topic: countries, table: global}
  mid: {}
  out: {topic: out, create: {partitions: 3}}
pipes:
  customer:
    from: orders
    to: mid
    on_error: fail
    join: {table: customers, type: left, fields: {name: name, v: v}}
  country:
    from: mid
    to: out
    on_error: fail
    join: {table: countries, on: cc, type: left, fields: {country: name}}
`

// joinOracle tracks the tables as the test writes them, and what each
// order must be enriched with: the values current when it was produced.
type joinOracle struct {
	customers map[string]map[string]any
	countries map[string]string
	want      map[int]string // order id → expected output JSON
}

func (o *joinOracle) expect(id int, key, cc string) {
	out := map[string]any{"id": id, "cc": cc, "name": nil, "v": nil, "country": nil}
	if c, ok := o.customers[key]; ok {
		out["name"], out["v"] = c["name"], c["v"]
	}
	if n, ok := o.countries[cc]; ok {
		out["country"] = n
	}
	b, _ := json.Marshal(out)
	o.want[id] = string(b)
}

// TestTablesFreshAndRestored joins orders with a partitioned and a global
// table on kfake. Table updates written between polls (and an aborted
// transaction that must never show) are seen by every order produced after
// them. A second replica on the same state directory resumes the tables
// from their checkpoints: the table topics' records read by the first are
// deleted before it starts, so re-reading them would fail.
func TestTablesFreshAndRestored(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders", "customers"), kfake.SeedTopics(2, "countries"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	top := compile(t, joining)
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(&testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.DefaultProduceTopic("orders"))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	o := &joinOracle{customers: map[string]map[string]any{}, countries: map[string]string{}, want: map[int]string{}}
	putCustomer := func(key string, v map[string]any) *kgo.Record {
		r := &kgo.Record{Topic: "customers", Key: []byte(key)}
		if v == nil {
			delete(o.customers, key)
		} else {
			o.customers[key] = v
			r.Value, _ = json.Marshal(v)
		}
		return r
	}
	putCountry := func(cc, name string) *kgo.Record {
		o.countries[cc] = name
		return &kgo.Record{Topic: "countries", Key: []byte(cc), Value: []byte(fmt.Sprintf(`{"name":%q}`, name))}
	}
	produce := func(recs ...*kgo.Record) {
		t.Helper()
		if err := cl.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	orders := func(from, to int) {
		t.Helper()
		var recs []*kgo.Record
		for i := from; i < to; i++ {
			key, cc := fmt.Sprintf("c%d", i%20), fmt.Sprintf("C%d", i%5)
			o.expect(i, key, cc)
			recs = append(recs, &kgo.Record{Topic: "orders", Key: []byte(key), Value: []byte(fmt.Sprintf(`{"id":%d,"cc":%q}`, i, cc))})
		}
		produce(recs...)
	}
	// abortedUpdate writes table rows in a transaction that aborts: a
	// read_committed table never holds them.
	abortedUpdate := func() {
		t.Helper()
		tx, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.TransactionalID("table-writer"))
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Close()
		if err := tx.BeginTransaction(); err != nil {
			t.Fatal(err)
		}
		for i := range 20 {
			r := &kgo.Record{Topic: "customers", Key: []byte(fmt.Sprintf("c%d", i)), Value: []byte(`{"name":"aborted","v":-1}`)}
			if err := tx.ProduceSync(context.Background(), r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.EndTransaction(context.Background(), kgo.TryAbort); err != nil {
			t.Fatal(err)
		}
	}

	run := func(id string, until int64, during func(e *engine.Engine)) {
		t.Helper()
		e, err := engine.New(top, engine.Options{Brokers: brokers, ReplicaID: id, StateDir: dir, Logger: log, SessionTimeout: 6 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		wait := func(n int64) {
			t.Helper()
			deadline := time.Now().Add(30 * time.Second)
			for e.Stats().CommittedIn.Load() < n {
				select {
				case err := <-done:
					t.Fatalf("replica %s stopped: %v", id, err)
				default:
				}
				if time.Now().After(deadline) {
					cancel()
					t.Fatalf("replica %s committed %d of %d", id, e.Stats().CommittedIn.Load(), n)
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		if during != nil {
			wait(until / 2)
			during(e)
		}
		wait(until)
		cancel()
		if err := <-done; err != nil {
			t.Fatalf("replica %s: %v", id, err)
		}
	}

	// Phase 1: customers c0..c14 (c15..c19 unknown), countries C0..C3.
	var rows []*kgo.Record
	for i := range 15 {
		rows = append(rows, putCustomer(fmt.Sprintf("c%d", i), map[string]any{"name": fmt.Sprintf("n%d", i), "v": 1}))
	}
	for i := range 4 {
		rows = append(rows, putCountry(fmt.Sprintf("C%d", i), fmt.Sprintf("country-%d", i)))
	}
	produce(rows...)
	orders(0, 1000)
	run("a", 2000, func(*engine.Engine) {
		// Phase 2, while the replica runs: new versions, a tombstone, a
		// new key, a renamed country, and an aborted update; then orders.
		rows = rows[:0]
		for i := 1; i < 16; i++ {
			rows = append(rows, putCustomer(fmt.Sprintf("c%d", i), map[string]any{"name": fmt.Sprintf("n%d", i), "v": 2}))
		}
		rows = append(rows, putCustomer("c0", nil), putCountry("C0", "renamed"))
		produce(rows...)
		abortedUpdate()
		orders(1000, 2000)
	})

	// The first replica read the tables to their ends; delete those records
	// (as retention would): the next replica must resume from its
	// checkpoints, not from the start.
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(context.Background(), "customers", "countries")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.DeleteRecords(context.Background(), kadm.Offsets(ends.Offsets())); err != nil {
		t.Fatal(err)
	}

	// Phase 3, on a fresh replica with the same state directory.
	rows = rows[:0]
	for i := 1; i < 20; i++ {
		rows = append(rows, putCustomer(fmt.Sprintf("c%d", i), map[string]any{"name": fmt.Sprintf("n%d", i), "v": 3}))
	}
	produce(rows...)
	orders(2000, 3000)
	run("b", 1000, nil)

	// Every order exactly once, with the table values of its time.
	got := map[int]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = topicread.All(ctx, brokers, time.Second, func(r *kgo.Record) {
		var v struct{ ID int }
		if err := json.Unmarshal(r.Value, &v); err != nil {
			t.Errorf("bad output %s: %v", r.Value, err)
			return
		}
		got[v.ID]++
		if want := o.want[v.ID]; !jsonEqual(string(r.Value), want) {
			t.Errorf("order %d: got %s, want %s", v.ID, r.Value, want)
		}
	}, "out")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3000 {
		if got[i] != 1 {
			t.Errorf("order %d written %d times", i, got[i])
		}
	}

	// The stores' checkpoints are the table topics' ends.
	ends, err = adm.ListEndOffsets(context.Background(), "customers", "countries")
	if err != nil {
		t.Fatal(err)
	}
	ends.Each(func(lo kadm.ListedOffset) {
		name := lo.Topic // the datasets are named as their topics
		st, err := state.OpenPebble(state.Dir(dir, top.Group, "table-"+name, lo.Partition))
		if err != nil {
			t.Fatal(err)
		}
		defer st.Close()
		off, ok, err := st.Checkpoint()
		if lo.Offset == 0 && !ok && err == nil {
			return // an empty partition: nothing was ever read or committed
		}
		if err != nil || !ok || off != lo.Offset {
			t.Errorf("table %s partition %d: checkpoint %d (%v, %v), want %d", name, lo.Partition, off, ok, err, lo.Offset)
		}
	})
}

func jsonEqual(a, b string) bool {
	var x, y any
	if json.Unmarshal([]byte(a), &x) != nil || json.Unmarshal([]byte(b), &y) != nil {
		return false
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return string(xa) == string(ya)
}

// TestTableNotCoPartitioned: a partitioned table whose topic has another
// partition count than the stream that joins it stops the replica at start
// with an error naming both topics and counts (the file declares no counts,
// so only the engine can see it).
func TestTableNotCoPartitioned(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, "orders"), kfake.SeedTopics(2, "customers"), kfake.SeedTopics(1, "countries"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	brokers := cluster.ListenAddrs()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.ProduceSync(context.Background(), &kgo.Record{Topic: "orders", Key: []byte("c1"), Value: []byte(`{"id":1,"cc":"DE"}`)}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	e, err := engine.New(compile(t, joining), engine.Options{Brokers: brokers, StateDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = e.Run(ctx)
	want := `partitioned table "customers" (topic customers) has 2 partitions, but stream "orders" (topic orders), which pipe "customer" joins with it, has 3`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("Run = %v, want it to contain %q", err, want)
	}
}

// TestTableFromADeletedTopic: a table topic deleted and made again (a
// reset of its data) holds, by the time a replica comes back on its old
// state directory, more records than that replica's store had read. The
// store must be rebuilt from the new topic, not caught up from its old
// checkpoint: "de" exists only in the old topic.
func TestTableFromADeletedTopic(t *testing.T) {
	brokers := cluster(t, map[string]int32{"orders": 1, "countries": 1})
	top := compile(t, `
name: countries
datasets:
  orders:    {topic: orders}
  countries: {topic: countries, table: global}
  out: {topic: out, create: {partitions: 1}}
pipes:
  country:
    from: orders
    to: out
    on_error: fail
    join: {table: countries, on: cc, type: left, fields: {country: name}}
`)
	cl := client(t, brokers)
	adm := kadm.NewClient(cl)
	ctx := context.Background()
	send := func(topic string, kv ...string) {
		t.Helper()
		var recs []*kgo.Record
		for i := 0; i < len(kv); i += 2 {
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(kv[i]), Value: []byte(kv[i+1])})
		}
		if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	dir := t.TempDir()
	send("countries", "de", `{"name":"Germany"}`, "fr", `{"name":"France"}`)
	send("orders", "o0", `{"id":0,"cc":"de"}`)
	runReplica(t, top, brokers, "a", dir, 1)

	resp, err := adm.DeleteTopic(ctx, "countries")
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		t.Fatal(err)
	}
	if _, err := adm.CreateTopic(ctx, 1, 1, nil, "countries"); err != nil {
		t.Fatal(err)
	}
	cl.PurgeTopicsFromClient("countries") // it knows the old topic's ID
	send("countries", "fr", `{"name":"France"}`, "it", `{"name":"Italy"}`, "es", `{"name":"Spain"}`)
	send("orders", "o1", `{"id":1,"cc":"de"}`, "o2", `{"id":2,"cc":"es"}`)
	runReplica(t, top, brokers, "a", dir, 2)

	got := map[string]string{}
	ctx2, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = topicread.All(ctx2, brokers, time.Second, func(r *kgo.Record) { got[string(r.Key)] = string(r.Value) }, "out")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"o0": `{"id":0,"cc":"de","country":"Germany"}`,
		"o1": `{"id":1,"cc":"de","country":null}`,
		"o2": `{"id":2,"cc":"es","country":"Spain"}`,
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: %s, want %s", k, got[k], w)
		}
	}
}
