package integration

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestResetAndRunAgain: a keyed count runs to the end of its input and
// stops; `streamer reset` (refused while a replica runs) clears its
// changelog, offsets and state directory; a changed topology, writing to a
// new output under the same group, then processes every record again from
// empty state: each key's counts start at 1 and end at its number of
// records, and the new changelog holds one record per input record.
func TestResetAndRunAgain(t *testing.T) {
	e := newEnv(t)
	e.createTopic("in", 4)
	group := "streamer-" + e.id
	changelog := group + "-count-changelog"
	const n, keys = 5_000, 97
	dir := filepath.Join(e.dir, "state-r1")
	file := e.writeTopology(countTopology, nil)
	e.produce("in", inputRecords(0, n))
	r1 := e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir)
	e.waitConsumed(group, "in", []*replica{r1}, 2*time.Minute)

	reset := func(extra ...string) (string, error) {
		args := append([]string{"reset", file, "--brokers", strings.Join(brokers, ","), "--state-dir", dir}, extra...)
		out, err := exec.Command(binary, args...).CombinedOutput()
		return string(out), err
	}
	if out, err := reset(); err == nil || !strings.Contains(out, "stop them first") {
		t.Fatalf("reset while a replica runs: %v\n%s", err, out)
	}
	if _, code := r1.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r1.log)
	}
	out, err := reset()
	if err != nil {
		t.Fatalf("reset: %v\n%s", err, out)
	}
	for _, want := range []string{"offsets set to earliest", "topics deleted: " + changelog, "state directory removed: " + filepath.Join(dir, group)} {
		if !strings.Contains(out, want) {
			t.Errorf("reset output lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, group)); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}

	file = e.writeTopology(strings.ReplaceAll(countTopology, `{{topic "out"}}`, `{{topic "out2"}}`), nil)
	r1 = e.startArgs(file, "r1", "--metrics-addr", "off", "--state-dir", dir)
	e.waitConsumed(group, "in", []*replica{r1}, 2*time.Minute)
	if _, code := r1.stop(t); code != 0 {
		t.Fatalf("exit %d:\n%s", code, r1.log)
	}
	o := newCountOracle()
	o.addCounted(0, n, keys)
	checkCounts(t, e.topic("out2"), changelog, o)
}
