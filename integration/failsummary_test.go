package integration

import (
	"fmt"
	"strings"
	"sync"
	"testing"
)

// A failing test prints each replica's whole log after its failure
// message (main_test.go, startWith's cleanup), so a CI excerpt of the
// output's tail shows logs but not why the test failed. The summary below
// is printed last instead: the failure message of the wait helpers and
// one line per replica.

// failures holds, per test, the first message fatalf failed it with.
var failures sync.Map // *testing.T → string

// fatalf records the message for the summary and fails the test now.
func fatalf(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	// The first line says what failed; the last lines of a long message
	// (a script's output, a log) usually say why.
	lines := strings.Split(strings.TrimSpace(msg), "\n")
	short := lines[0]
	if len(lines) > 1 {
		tail := lines[max(1, len(lines)-10):]
		if len(tail) < len(lines)-1 {
			short += "\n  [...]"
		}
		short += "\n" + strings.Join(tail, "\n")
	}
	failures.LoadOrStore(t, short)
	t.Fatal(msg)
}

// summary is what the test's replicas did, for the failure summary.
type summary struct {
	mu       sync.Mutex
	replicas []summaryLine
}

type summaryLine struct {
	id string
	r  *replica
}

func (s *summary) add(id string, r *replica) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replicas = append(s.replicas, summaryLine{id, r})
}

// printOnFailure registers the summary as the test's first cleanup, so
// that it runs after every other and is the last output of a failed test.
func (s *summary) printOnFailure(t *testing.T) {
	t.Cleanup(func() {
		defer failures.Delete(t)
		if !t.Failed() {
			return
		}
		var b strings.Builder
		if msg, ok := failures.Load(t); ok {
			fmt.Fprintf(&b, "FAILED: %s\n", msg)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		for i, l := range s.replicas {
			state := "running at the end (killed by the cleanup)"
			if l.r.cmd.ProcessState != nil && !l.r.killedByCleanup {
				state = l.r.cmd.ProcessState.String()
			}
			log := strings.TrimSpace(l.r.logText())
			last := log[strings.LastIndexByte(log, '\n')+1:]
			fmt.Fprintf(&b, "replica %d (%s): %s; last log line: %.400s\n", i+1, l.id, state, last)
		}
		t.Log("summary of the failure (the replicas' whole logs are above):\n" + b.String())
	})
}
