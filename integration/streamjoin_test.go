package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
)

// streamJoinTopology joins orders with the payments of the same customer
// made within 5s of them, left: an order no payment matches comes out once,
// with nulls, when no payment can match it any more. The two topics have
// different partition counts; the compiler merges them into one topic.
const streamJoinTopology = `
name: {{.ID}}
dead_letter: dlq
processing:
  commit_interval: 100ms
datasets:
  orders:
    topic: {{topic "orders"}}
  payments:
    topic: {{topic "payments"}}
  paid:
    topic: {{topic "paid"}}
    create: {partitions: 4}
  dlq:
    topic: {{topic "dlq"}}
    value: bytes
    create: {partitions: 1}
pipes:
  match:
    from: [orders, payments]
    to: paid
    stream_join:
      window: 5s
      grace: 1h
      type: left
      late: dlq
      fields: {payment: id, paid: amount}
`

// sjEvent is an order or a payment.
type sjEvent struct {
	id       int
	customer string
	t        int64 // ms
}

// sjPair is one output: an order and the payment it joined, or -1.
type sjPair struct{ order, payment int }

// TestStreamJoinKillAndRestart (issue #3, the stream–stream join): orders
// on 4 partitions and payments on 3, joined by customer within 5s on two
// replicas, one of which is SIGKILLed mid-stream and restarted on its state
// directory. The outputs must be exactly the pairs an oracle finds in the
// input (every order with every payment of its customer at most 5s away,
// each pair once), then, once a record far ahead closes the windows, every
// order without a payment once with nulls. A late order and a payment
// that is not JSON go to the dead-letter topic, and nothing else does.
func TestStreamJoinKillAndRestart(t *testing.T) {
	e := newEnv(t)
	e.createTopic("orders", 4)
	e.createTopic("payments", 3)
	file := e.writeTopology(streamJoinTopology, nil)
	group := "streamer-" + e.id
	merge := group + "-match-merge"

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 5))
	const n, customers = 12_000, 400
	base := time.Now().Add(-3*time.Hour).UnixMilli() + 777
	var orders, payments []sjEvent
	for i := range n {
		o := sjEvent{id: i, customer: fmt.Sprintf("c%d", rng.IntN(customers)), t: base + int64(i)*15 + rng.Int64N(2_000)}
		orders = append(orders, o)
		switch r := rng.IntN(10); {
		case r < 6: // paid, mostly within the window
			payments = append(payments, sjEvent{id: 1_000_000 + i, customer: o.customer, t: o.t + rng.Int64N(14_000) - 6_000})
		case r < 7: // another customer's payment, at about this time
			payments = append(payments, sjEvent{id: 2_000_000 + i, customer: fmt.Sprintf("c%d", rng.IntN(customers)), t: o.t + rng.Int64N(4_000)})
		}
	}
	// The oracle: nothing is late or expires before the flush (grace 1h
	// covers the whole input), so the pairs do not depend on the order in
	// which the merge topic interleaves the two streams.
	byCustomer := map[string][]sjEvent{}
	for _, p := range payments {
		byCustomer[p.customer] = append(byCustomer[p.customer], p)
	}
	want := map[sjPair]bool{}
	matched := 0
	for _, o := range orders {
		found := false
		for _, p := range byCustomer[o.customer] {
			if d := o.t - p.t; d >= -5_000 && d <= 5_000 {
				want[sjPair{o.id, p.id}] = true
				found = true
				matched++
			}
		}
		if !found {
			want[sjPair{o.id, -1}] = true
		}
	}

	rec := func(ev sjEvent, kind string) *kgo.Record {
		v := fmt.Sprintf(`{"id":%d,"kind":%q,"amount":%d}`, ev.id, kind, ev.id%97)
		return &kgo.Record{Key: []byte(ev.customer), Value: []byte(v), Timestamp: time.UnixMilli(ev.t)}
	}
	produce := func(from, to int) { // orders [from, to) and their share of payments
		t.Helper()
		var os, ps []*kgo.Record
		for _, o := range orders[from:to] {
			os = append(os, rec(o, "order"))
		}
		for _, p := range payments[len(payments)*from/n : len(payments)*to/n] {
			ps = append(ps, rec(p, "payment"))
		}
		e.produce("orders", os)
		e.produce("payments", ps)
	}

	dir1, dir2 := filepath.Join(e.dir, "state-r1"), filepath.Join(e.dir, "state-r2")
	start := func(id, dir string) *replica {
		// Purging the merge topic every second must not cost a record.
		return e.startArgs(file, id, "--metrics-addr", "off", "--state-dir", dir, "--purge-interval", "1s")
	}
	produce(0, n/4)
	r1, r2 := start("r1", dir1), start("r2", dir2)
	e.waitLagBelow(group, "orders", n/8, r1, r2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := n / 4; i < 3*n/4; i += n / 8 {
			produce(i, i+n/8)
			time.Sleep(200 * time.Millisecond)
		}
	}()
	time.Sleep(500 * time.Millisecond)
	r1.kill()
	time.Sleep(time.Second)
	r1 = start("r1", dir1)
	<-done
	produce(3*n/4, n)
	replicas := []*replica{r1, r2}
	e.waitConsumed(group, "orders", replicas, 3*time.Minute)
	e.waitConsumed(group, "payments", replicas, 3*time.Minute)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	count := func(topic string) int {
		c, err := topicread.Count(ctx, brokers, topic)
		if err != nil {
			return -1
		}
		return int(c[topic])
	}
	waitFor(t, "every pair to be joined", 3*time.Minute, func() bool { return count(e.topic("paid")) >= matched })

	// A flush order far ahead on every merge partition closes the windows:
	// the unmatched orders come out. Flush orders are ids n and up.
	part := kgo.StickyKeyPartitioner(nil).ForTopic(merge)
	for p := range 4 {
		key := ""
		for i := 0; key == ""; i++ {
			if k := fmt.Sprint("flush-", i); part.Partition(&kgo.Record{Key: []byte(k)}, 4) == p {
				key = k
			}
		}
		ev := sjEvent{id: n + p, customer: key, t: base + 2*time.Hour.Milliseconds()}
		e.produce("orders", []*kgo.Record{rec(ev, "flush")})
	}
	unmatched := len(want) - matched
	waitFor(t, "the unmatched orders to come out", 3*time.Minute, func() bool { return count(e.topic("paid")) >= matched+unmatched })
	// Then a late order (an hour and more behind the flush) and a payment
	// that is not JSON.
	late := sjEvent{id: n + 10, customer: "c1", t: base}
	e.produce("orders", []*kgo.Record{rec(late, "order")})
	e.produce("payments", []*kgo.Record{{Key: []byte("c2"), Value: []byte(`{"id":`), Timestamp: time.UnixMilli(base)}})
	waitFor(t, "the dead letters", 3*time.Minute, func() bool { return count(e.topic("dlq")) >= 2 })
	for _, r := range replicas {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit %d:\n%s", code, r.logText())
		}
	}

	got := map[sjPair]int{}
	var faults []string
	err := topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		var v struct {
			ID      int
			Kind    string
			Payment *int
			Paid    *int
		}
		if err := json.Unmarshal(r.Value, &v); err != nil || v.Kind != "order" {
			faults = append(faults, fmt.Sprintf("output %s: %v", r.Value, err))
			return
		}
		p := sjPair{v.ID, -1}
		if v.Payment != nil {
			p.payment = *v.Payment
			if v.Paid == nil || *v.Paid != p.payment%97 {
				faults = append(faults, fmt.Sprintf("output %s: paid is not the payment's amount", r.Value))
			}
		}
		got[p]++
	}, e.topic("paid"))
	if err != nil {
		t.Fatal(err)
	}
	for p, c := range got {
		switch {
		case !want[p]:
			faults = append(faults, fmt.Sprintf("pair %v is not in the oracle (%d times)", p, c))
		case c > 1:
			faults = append(faults, fmt.Sprintf("pair %v came out %d times", p, c))
		}
	}
	for p := range want {
		if got[p] == 0 {
			faults = append(faults, fmt.Sprintf("pair %v is missing", p))
		}
	}
	var dead []string
	err = topicread.All(ctx, brokers, 3*time.Second, func(r *kgo.Record) {
		h := map[string]string{}
		for _, x := range r.Headers {
			h[x.Key] = string(x.Value)
		}
		dead = append(dead, h["streamer.stage"]+" "+h["streamer.source.topic"]+": "+h["streamer.error"])
	}, e.topic("dlq"))
	if err != nil {
		t.Fatal(err)
	}
	if len(dead) != 2 || !strings.Contains(strings.Join(dead, "\n"), "late record") || !strings.Contains(strings.Join(dead, "\n"), "decode "+merge) {
		faults = append(faults, fmt.Sprintf("dead letters %q, want the late order and the payment that is not JSON", dead))
	}
	if len(faults) > 0 {
		t.Fatalf("%d faults; the first:\n%s", len(faults), strings.Join(faults[:min(10, len(faults))], "\n"))
	}
	// The replicas purged what they had consumed of the merge topic.
	starts, err := e.admin.ListStartOffsets(ctx, merge)
	if err != nil {
		t.Fatal(err)
	}
	var purged int64
	starts.Each(func(o kadm.ListedOffset) { purged += o.Offset })
	if purged == 0 {
		t.Errorf("nothing purged from %s", merge)
	}
	t.Logf("%d orders, %d payments: %d pairs and %d unmatched orders, each exactly once across a SIGKILL; 2 dead letters; %d merge records purged", n, len(payments), matched, unmatched, purged)
}
