package integration

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const countTopology = `
name: {{.ID}}
datasets:
  in:
    topic: {{topic "in"}}
  counts:
    topic: {{topic "out"}}
    create: {partitions: 6}
pipes:
  count:
    from: in
    to: counts
    on_error: fail
    aggregate:
      fields:
        n: {op: count}
        total: {op: sum, of: n}
`

// TestStatefulKillAndRestart: a keyed count on 6 partitions and 2
// replicas; one is SIGKILLed mid-run and restarted on its state directory.
// Every key's counts run 1, 2, 3, ... with no gap or repeat and end at the
// number of its records (an oracle computed here), and the changelog holds
// exactly one record per input record: no write was lost or doubled.
func TestStatefulKillAndRestart(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(countTopology, nil)
	group := "streamer-" + e.id
	const n, keys = 60_000, 97
	dir1, dir2 := filepath.Join(e.dir, "state-r1"), filepath.Join(e.dir, "state-r2")
	e.produce("in", inputRecords(0, 20_000))
	r1 := e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir1)
	r2 := e.startArgs(file, "r2", "--metrics-addr", "off", "--state-dir", dir2)
	e.waitLagBelow(group, "in", 15_000, r1, r2)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 20_000; i < 50_000; i += 5_000 {
			e.produceQuiet("in", inputRecords(i, i+5_000))
			time.Sleep(150 * time.Millisecond)
		}
	}()
	time.Sleep(400 * time.Millisecond)
	r1.kill()
	time.Sleep(time.Second)
	r1 = e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir1)
	<-done
	// The restarted replica must take partitions back (restoring their
	// state from its directory and the changelog) and count the last records.
	waitFor(t, "the restarted replica to get partitions", time.Minute, func() bool {
		return strings.Contains(r1.logText(), "partitions assigned") && !strings.Contains(r1.logText(), "partitions=map[]")
	})
	e.produce("in", inputRecords(50_000, n))
	e.waitConsumed(group, "in", []*replica{r1, r2}, 3*time.Minute)
	for _, r := range []*replica{r1, r2} {
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit %d:\n%s", code, r.log)
		}
	}

	// The oracle: inputRecords keys record i as k<i%97>, with n = i, as
	// produceCounted does with 97 keys.
	o := newCountOracle()
	o.addCounted(0, n, keys)
	checkCounts(t, e.topic("out"), group+"-count-changelog", o)
}
