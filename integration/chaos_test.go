package integration

import (
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// chaosLong runs the long chaos form: 1M orders instead of 60k.
var chaosLong = flag.Bool("chaos-long", false, "run the long chaos test (1M records, about 15 minutes)")

// brokerControl returns the script that stops and starts the test broker
// (scripts/kafka/kafka.sh, with the broker's environment), or skips the
// test: a broker the tests did not start is not theirs to stop.
func brokerControl(t *testing.T) func(action string) {
	t.Helper()
	script := os.Getenv("STREAMER_BROKER_CONTROL")
	if script == "" {
		t.Skip("STREAMER_BROKER_CONTROL (the kafka.sh that runs the test broker) is not set: make test sets it")
	}
	return func(action string) {
		t.Helper()
		cmd := exec.Command(script, action)
		// A restart of a broker that holds many topics, on a loaded machine,
		// has taken 47 s here: give it more than kafka.sh's default 90 s.
		cmd.Env = append(os.Environ(), "KAFKA_KEEP_DATA=1", "KAFKA_START_TIMEOUT=240")
		start := time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			fatalf(t, "kafka.sh %s failed after %v: %v\n%s", action, time.Since(start).Round(time.Millisecond), err, out)
		}
		t.Logf("kafka.sh %s took %v", action, time.Since(start).Round(time.Millisecond))
	}
}

// TestSigtermDuringBrokerOutage: with the broker down and a transaction
// open, SIGTERM must stop a replica within 10 s with a clear message, not
// hang on a flush or a group leave that cannot succeed. A replica left
// running through an outage longer than the transaction timeout must not
// exit: it starts again in its process (cli/rejoin.go) and, once the
// broker is back, finishes the stream with nothing lost or doubled.
func TestSigtermDuringBrokerOutage(t *testing.T) {
	requireIntegration(t)
	broker := brokerControl(t)
	f := newFaultRun(t)
	f.send(30_000)
	r1, r2 := f.startEnv("r1"), f.startEnv("r2")
	f.e.waitLagBelow(f.group, "orders", 25_000, r1, r2)
	broker("stop")
	restarted := false
	defer func() {
		if !restarted {
			broker("start")
		}
	}()
	down := time.Now()
	time.Sleep(time.Second)
	took, code := r1.stop(t)
	t.Logf("with the broker down, SIGTERM took %v, exit code %d", took, code)
	if took > 10*time.Second {
		t.Errorf("SIGTERM took %v with the broker down, want under 10 s:\n%s", took, r1.logText())
	}
	// Past the transaction timeout (20 s): r2's transaction cannot end.
	for time.Since(down) < 27*time.Second {
		if r2.exited() {
			fatalf(t, "r2 exited %v into the broker outage (%v); it should wait for the broker (its log is above)", time.Since(down).Round(time.Second), r2.err)
		}
		time.Sleep(500 * time.Millisecond)
	}
	broker("start")
	restarted = true
	f.finish(r2)
	if !strings.Contains(r2.logText(), "starts again in this process") {
		t.Errorf("r2 never said it starts again after the outage:\n%s", r2.logText())
	}
}

// TestChaos runs 3 replicas over 12 partitions while a loop SIGKILLs or
// SIGSTOPs (past the session timeout, then SIGCONT: a zombie) a random
// replica every few seconds, and restarts the broker once mid-run. Every
// count must still equal the oracle. The short form (60k orders) runs in
// make test; -chaos-long runs 1M.
func TestChaos(t *testing.T) {
	requireIntegration(t)
	broker := brokerControl(t)
	n, step := 60_000, 6_000
	if *chaosLong {
		n, step = 1_000_000, 50_000
	}
	e := newEnv(t)
	e.createTopic("orders", 12)
	e.createTopic("countries", 1)
	f := &faultRun{e: e, file: e.writeTopology(strings.Replace(faultTopology, "partitions: 4", "partitions: 12", 1), nil), group: "streamer-" + e.id}
	f.sendCountries()
	ids := []string{"r1", "r2", "r3"}
	rs := map[string]*replica{}
	for _, id := range ids {
		rs[id] = f.startEnv(id)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	brokerRestarted := false
	for f.sent < n {
		f.send(min(step, n-f.sent))
		id := ids[rng.IntN(len(ids))]
		r := rs[id]
		switch {
		case !brokerRestarted && f.sent >= n/2:
			t.Logf("%d sent: restarting the broker", f.sent)
			broker("stop")
			broker("start")
			brokerRestarted = true
		case rng.IntN(3) == 0:
			t.Logf("%d sent: SIGSTOP %s past its session, then SIGCONT", f.sent, id)
			_ = r.cmd.Process.Signal(syscall.SIGSTOP)
			time.Sleep(12 * time.Second)
			_ = r.cmd.Process.Signal(syscall.SIGCONT)
		default:
			t.Logf("%d sent: SIGKILL %s and restart it", f.sent, id)
			r.kill()
			rs[id] = f.startEnv(id)
		}
		for _, id := range ids {
			if rs[id].exited() { // a fenced zombie may stop: start it again
				log := rs[id].logText()
				t.Logf("%s exited (%v); restarting it. Its last words: %s", id, rs[id].err, log[max(0, len(log)-600):])
				rs[id] = f.startEnv(id)
			}
		}
		time.Sleep(2 * time.Second)
	}
	var all []*replica
	for _, id := range ids {
		all = append(all, rs[id])
	}
	f.finish(all...)
}
