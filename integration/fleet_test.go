package integration

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestRollingRestart: three replicas share six partitions while records
// flow; each in turn is stopped with SIGTERM and started again under its
// replica id, as a StatefulSet rolls. With static membership (the replica
// id is the group instance id) a replica back within the session timeout
// gets its partitions again and the others lose none of theirs. Each
// stop takes under 10 s, and the output holds every record exactly once.
func TestRollingRestart(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 6)
	file := e.writeTopology(filterMap, nil)
	group := "streamer-" + e.id
	stop, fedTo := make(chan struct{}), make(chan int, 1)
	go func() {
		i := 0
		defer func() { fedTo <- i }()
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
			e.produceQuiet("in", inputRecords(i, i+500))
			i += 500
		}
	}()
	ids := []string{"r1", "r2", "r3"}
	rs := make([]*replica, len(ids))
	for i, id := range ids {
		rs[i] = e.start(file, id)
	}
	waitUntil(t, "the three replicas to get partitions", time.Minute, rs, func() bool {
		return assignedSince(rs[0], 0) && assignedSince(rs[1], 0) && assignedSince(rs[2], 0)
	})
	waitUntil(t, "progress", time.Minute, rs, func() bool {
		c, err := e.committed(group)
		return err == nil && c >= 5_000
	})
	// Rebalances from here on show in the logs of the replicas that are
	// not the one restarting. A revocation, a loss or a non-empty
	// assignment moves partitions to or from a live replica, which a
	// rolling restart must not cost; an empty assignment is a cooperative
	// round that moves nothing (kgo makes one when the group's leader
	// comes back, to check the topics).
	rebalances, moves := 0, 0
	for i, id := range ids {
		marks := make([]int, len(rs))
		for j, r := range rs {
			marks[j] = logLen(r)
		}
		took, code := rs[i].stop(t)
		t.Logf("%s: SIGTERM to exit %v (exit %d)", id, took.Round(time.Millisecond), code)
		if code != 0 || took > 10*time.Second {
			t.Errorf("%s: exit %d after %v of SIGTERM, want 0 within 10s:\n%s", id, code, took, rs[i].logText())
		}
		began := time.Now()
		rs[i] = e.start(file, id)
		waitUntil(t, id+" to be back with partitions", time.Minute, rs, func() bool { return assignedSince(rs[i], 0) })
		t.Logf("%s: back with its partitions %v after its start", id, time.Since(began).Round(time.Millisecond))
		time.Sleep(2 * time.Second) // processing, as a readiness gate would wait before the next pod
		for j, r := range rs {
			if j == i {
				continue
			}
			log := r.logText()[marks[j]:]
			moved := strings.Count(log, "partitions revoked") + strings.Count(log, "partitions lost") + len(assignedRe.FindAllStringIndex(log, -1))
			n := strings.Count(log, "partitions revoked") + strings.Count(log, "partitions lost") + strings.Count(log, "partitions assigned")
			if n > 0 {
				t.Logf("%s saw %d rebalance events (%d moving partitions) while %s restarted:\n%s", ids[j], n, moved, id, log)
			}
			rebalances += n
			moves += moved
		}
	}
	close(stop)
	n := <-fedTo
	e.waitConsumed(group, "in", rs, 3*time.Minute)
	for _, r := range rs {
		if took, code := r.stop(t); code != 0 || took > 10*time.Second {
			t.Errorf("exit %d after %v of SIGTERM", code, took)
		}
	}
	t.Logf("%d records; rebalance events seen by the replicas not restarting: %d, of which moved partitions: %d", n, rebalances, moves)
	if moves > 0 {
		t.Errorf("%d rebalance events moved partitions of live replicas during the roll, want none", moves)
	}
	// Without static membership every restart is two rounds (the leave and
	// the join), seen by both other replicas: 6 events here. With it, only
	// the group leader's return makes one round (2 events).
	if rebalances > 2 {
		t.Errorf("%d rebalance events during the roll, want at most the 2 of one round", rebalances)
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")), n)
}

// TestDuplicateReplicaID: two replicas on one machine with every default
// (the replica id is the hostname, the state directory ./streamer-state):
// the second is refused at start with the flags to set. A replica of
// another topology with the same defaults runs beside the first. Given their own
// state directories and metrics addresses but still the same id, the broker
// fences one of them, which stops with exit 1 and says why.
func TestDuplicateReplicaID(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 2)
	file := e.writeTopology(filterMap, nil)
	e.produce("in", inputRecords(0, 1000))
	group := "streamer-" + e.id
	work := t.TempDir()
	run := func(file string, extra ...string) *replica {
		args := append([]string{"run", file, "--brokers", strings.Join(brokers, ",")}, extra...)
		cmd := exec.Command(binary, args...)
		cmd.Dir = work
		cmd.Env = withoutEnv(os.Environ(), "STREAMER_STATE_DIR", "STREAMER_REPLICA_ID", "STREAMER_METRICS_ADDR")
		r := &replica{cmd: cmd, done: make(chan struct{})}
		r.log = new(bytes.Buffer)
		r.lw = &lockedWriter{w: r.log}
		cmd.Stdout, cmd.Stderr = r.lw, r.lw
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		go func() { r.err = cmd.Wait(); close(r.done) }()
		t.Cleanup(func() {
			if !r.exited() {
				r.kill()
			}
		})
		return r
	}
	a := run(file, "--metrics-addr", "127.0.0.1:0")
	e.waitConsumed(group, "in", []*replica{a}, time.Minute)
	b := run(file, "--metrics-addr", "127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	select {
	case <-b.done:
	case <-ctx.Done():
		t.Fatalf("the second replica on the same state directory still runs:\n%s", b.logText())
	}
	if code := b.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(b.logText(), "give each replica on one machine its own --state-dir, --replica-id and --metrics-addr") {
		t.Errorf("second replica: exit %d:\n%s", code, b.logText())
	}
	if a.exited() {
		t.Fatalf("the first replica stopped:\n%s", a.logText())
	}

	// Another topology (another group) shares the default state directory
	// and replica id: it runs beside the first.
	src, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	otherSrc := strings.Replace(strings.Replace(string(src), "name: "+e.id+"\n", "name: "+e.id+"-other\n", 1), e.topic("out"), e.topic("out2"), 1)
	otherFile := filepath.Join(e.dir, "other.yaml")
	if err := os.WriteFile(otherFile, []byte(otherSrc), 0o644); err != nil {
		t.Fatal(err)
	}
	d := run(otherFile, "--metrics-addr", "127.0.0.1:0")
	e.waitConsumed(group+"-other", "in", []*replica{d}, time.Minute)
	if _, code := d.stop(t); code != 0 {
		t.Errorf("the other topology's replica: exit %d:\n%s", code, d.logText())
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out2")), 1000)
	if a.exited() {
		t.Fatalf("the first replica stopped:\n%s", a.logText())
	}

	// Same id, own state directories: one is fenced.
	c := run(file, "--metrics-addr", "127.0.0.1:0", "--state-dir", filepath.Join(work, "other"))
	var fenced, other *replica
	select {
	case <-a.done:
		fenced, other = a, c
	case <-c.done:
		fenced, other = c, a
	case <-time.After(40 * time.Second):
		t.Fatalf("two live replicas with one id both still run after 40s:\n%s\n---\n%s", a.logText(), c.logText())
	}
	if code := fenced.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(fenced.logText(), "needs its own --replica-id") {
		t.Errorf("the fenced replica: exit %d:\n%s", code, fenced.logText())
	}
	t.Logf("fenced replica's error: %s", lastLine(fenced.logText()))
	e.produce("in", inputRecords(1000, 2000))
	e.waitConsumed(group, "in", []*replica{other}, time.Minute)
	if _, code := other.stop(t); code != 0 {
		t.Errorf("the replica left: exit %d", code)
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")), 2000)
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	return s[strings.LastIndexByte(s, '\n')+1:]
}
