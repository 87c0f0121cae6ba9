// Package integration tests streamer end to end against a real Apache Kafka
// broker: the built binary runs as replicas in separate processes, which the
// tests kill, restart and signal.
//
// The tests run only when STREAMER_INTEGRATION=1, with the broker in
// STREAMER_BROKERS; `make test` starts a broker and sets both. Otherwise
// each test skips (go test -v shows SKIP and why): every test begins with
// requireIntegration, directly or through newEnv.
package integration

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"text/template"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

var (
	brokers []string
	binary  string
)

// enabled reports whether the tests may use a broker.
var enabled = os.Getenv("STREAMER_INTEGRATION") == "1"

// requireIntegration skips t unless the integration tests are enabled.
// Every test calls it first (newEnv does), so that `go test ./...` shows
// these tests as skipped rather than passed.
func requireIntegration(t *testing.T) {
	t.Helper()
	if !enabled {
		t.Skip("integration test: set STREAMER_INTEGRATION=1 and STREAMER_BROKERS (make integration does)")
	}
}

func TestMain(m *testing.M) {
	if !enabled {
		os.Exit(m.Run()) // each test skips; nothing to build
	}
	brokers = strings.Split(os.Getenv("STREAMER_BROKERS"), ",")
	if brokers[0] == "" {
		brokers = []string{"127.0.0.1:9092"}
	}
	dir, err := os.MkdirTemp("", "streamer-it-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "streamer")
	build := exec.Command("go", "build", "-o", binary, "../cmd/streamer")
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Println("building streamer:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// env is one test's isolated world: its own topic names and consumer group.
type env struct {
	t      *testing.T
	id     string
	dir    string
	admin  *kadm.Client
	client *kgo.Client
	sum    *summary
}

func newEnv(t *testing.T) *env {
	t.Helper()
	requireIntegration(t)
	sum := &summary{}
	sum.printOnFailure(t)
	name := strings.NewReplacer("/", ".").Replace(strings.ToLower(t.Name())) // subtests: a/b
	id := fmt.Sprintf("%s-%d", name, time.Now().UnixNano()%1_000_000_000)
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return &env{t: t, id: id, dir: t.TempDir(), admin: kadm.NewClient(cl), client: cl, sum: sum}
}

// topic returns this test's name for a topic.
func (e *env) topic(name string) string { return e.id + "-" + name }

func (e *env) createTopic(name string, partitions int32) {
	e.t.Helper()
	resp, err := e.admin.CreateTopic(context.Background(), partitions, 1, nil, e.topic(name))
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		e.t.Fatalf("creating %s: %v", e.topic(name), err)
	}
}

// writeTopology renders a topology template with {{topic "name"}} for topic
// names and {{.ID}}, and returns its path.
func (e *env) writeTopology(tmpl string, files map[string]string) string {
	e.t.Helper()
	var b bytes.Buffer
	t := template.Must(template.New("t").Funcs(template.FuncMap{"topic": e.topic}).Parse(tmpl))
	err := t.Execute(&b, struct{ ID string }{e.id})
	if err != nil {
		e.t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(e.dir, name), []byte(content), 0o644); err != nil {
			e.t.Fatal(err)
		}
	}
	path := filepath.Join(e.dir, "topology.yaml")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		e.t.Fatal(err)
	}
	return path
}

func (e *env) produce(topic string, recs []*kgo.Record) {
	e.t.Helper()
	for _, r := range recs {
		r.Topic = e.topic(topic)
	}
	if err := e.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Fatalf("producing: %v", err)
	}
}

// produceQuiet produces from a goroutine other than the test's: errors are
// reported with t.Error, not t.Fatal.
func (e *env) produceQuiet(topic string, recs []*kgo.Record) {
	for _, r := range recs {
		r.Topic = e.topic(topic)
	}
	if err := e.client.ProduceSync(context.Background(), recs...).FirstErr(); err != nil {
		e.t.Errorf("producing: %v", err)
	}
}

// replica is one `streamer run` process.
type replica struct {
	cmd  *exec.Cmd
	log  *bytes.Buffer
	lw   *lockedWriter
	done chan struct{}
	err  error
	// killedByCleanup: the test's cleanup killed it (it was still running).
	killedByCleanup bool
}

// logText returns what the replica logged so far.
func (r *replica) logText() string {
	r.lw.mu.Lock()
	defer r.lw.mu.Unlock()
	return r.log.String()
}

func (e *env) start(file, replicaID string) *replica {
	e.t.Helper()
	return e.startArgs(file, replicaID, "--metrics-addr", "off")
}

// startArgs starts a replica with extra flags.
func (e *env) startArgs(file, replicaID string, extra ...string) *replica {
	e.t.Helper()
	return e.startWith(nil, file, replicaID, extra...)
}

// startWith starts a replica with extra environment variables and flags.
func (e *env) startWith(environ []string, file, replicaID string, extra ...string) *replica {
	e.t.Helper()
	args := append([]string{"run", file, "--brokers", strings.Join(brokers, ","), "--replica-id", replicaID}, extra...)
	// Without --state-dir, a replica keeps its state in a directory of the
	// test's own (the same one across restarts of the same replica id), not
	// in the working directory.
	return e.startCmd(replicaID, append([]string{"STREAMER_STATE_DIR=" + filepath.Join(e.dir, "state", replicaID)}, environ...), args...)
}

// startCmd starts the streamer command args (run, backfill, ...) with
// extra environment variables; id is what the test's log and failure
// summary call it. It is killed at the end of the test if it still runs.
func (e *env) startCmd(id string, environ []string, args ...string) *replica {
	e.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append(os.Environ(), environ...)
	var log bytes.Buffer
	lw := &lockedWriter{w: &log}
	cmd.Stdout, cmd.Stderr = lw, lw
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	r := &replica{cmd: cmd, log: &log, lw: lw, done: make(chan struct{})}
	go func() { r.err = cmd.Wait(); close(r.done) }()
	e.sum.add(id, r)
	e.t.Cleanup(func() {
		if r.cmd.ProcessState == nil {
			r.killedByCleanup = true
			_ = r.cmd.Process.Kill()
			<-r.done
		}
		if e.t.Failed() {
			e.t.Logf("replica %s log:\n%s", id, log.String())
		}
	})
	return r
}

type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// stop sends SIGTERM and returns how long the replica took to exit and its
// exit code.
func (r *replica) stop(t *testing.T) (time.Duration, int) {
	t.Helper()
	start := time.Now()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.done:
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.done
		fatalf(t, "replica did not exit within 30s of SIGTERM")
	}
	return time.Since(start), r.cmd.ProcessState.ExitCode()
}

// kill sends SIGKILL: no commit, no group leave.
func (r *replica) kill() {
	_ = r.cmd.Process.Kill()
	<-r.done
}

func (r *replica) exited() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// waitConsumed waits until the group has committed offsets up to the end of
// every partition of the input topic, or fails after timeout.
func (e *env) waitConsumed(group, input string, replicas []*replica, timeout time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lag, err := e.lag(group, input)
		if err == nil && lag == 0 {
			return
		}
		for _, r := range replicas {
			if r.exited() {
				fatalf(e.t, "a replica exited early (%v):\n%s", r.err, r.log.String())
			}
		}
		if time.Now().After(deadline) {
			fatalf(e.t, "group %s still has lag %d on %s after %v (err %v)", group, lag, input, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitSettled waits until no transaction is open on the topics: every
// partition's last stable offset has reached its high watermark. A replica
// SIGKILLed for good leaves its transaction open until the broker times it
// out (the transaction timeout, 20 s), and read_committed readers see
// nothing past it until then.
func (e *env) waitSettled(timeout time.Duration, topics ...string) {
	e.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		hw, err := e.admin.ListEndOffsets(ctx, topics...)
		var stable kadm.ListedOffsets
		if err == nil {
			stable, err = e.admin.ListCommittedOffsets(ctx, topics...)
		}
		cancel()
		open := 0
		if err == nil {
			hw.Each(func(o kadm.ListedOffset) {
				if s, ok := stable.Lookup(o.Topic, o.Partition); !ok || s.Offset < o.Offset {
					open++
				}
			})
			if open == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			fatalf(e.t, "%d partitions of %v still have open transactions after %v (err %v)", open, topics, timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// lag returns end offsets minus committed offsets, summed over partitions.
func (e *env) lag(group, input string) (int64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ends, err := e.admin.ListEndOffsets(ctx, e.topic(input))
	if err != nil {
		return -1, err
	}
	committed, err := e.admin.FetchOffsets(ctx, group)
	if err != nil {
		return -1, err
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		c, ok := committed.Lookup(o.Topic, o.Partition)
		at := int64(0)
		if ok {
			at = c.At
		}
		lag += o.Offset - at
	})
	return lag, nil
}

// waitLagBelow waits, a minute at most, until the replicas have worked the
// group's lag on input down below max.
func (e *env) waitLagBelow(group, input string, max int64, replicas ...*replica) {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for lag, err := e.lag(group, input); err != nil || lag > max || lag < 0; lag, err = e.lag(group, input) {
		if time.Now().After(deadline) {
			var logs []string
			for _, r := range replicas {
				logs = append(logs, r.logText())
			}
			fatalf(e.t, "no progress: lag %d (%v)\n%s", lag, err, strings.Join(logs, "\n"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}
