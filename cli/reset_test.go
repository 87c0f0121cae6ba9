package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
)

// TestResetCommand runs reset on kfake against a topology whose group has
// never run: a dry run and a real one report the source offsets they set
// and the state directory they remove (the engine's tests cover the
// topics and a run after the reset).
func TestResetCommand(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, "in"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	file := filepath.Join(dir, "t.yaml")
	top := "name: r\ndatasets:\n  in: {topic: in}\n  out: {topic: out, create: {partitions: 1}}\npipes:\n  count:\n    from: in\n    to: out\n    aggregate: {fields: {n: {op: count}}}\n"
	if err := os.WriteFile(file, []byte(top), 0o644); err != nil {
		t.Fatal(err)
	}
	stateDir := filepath.Join(dir, "state")
	if err := os.MkdirAll(filepath.Join(stateDir, "streamer-r", "count", "0"), 0o755); err != nil {
		t.Fatal(err)
	}
	brokers := strings.Join(c.ListenAddrs(), ",")
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--dry-run"}, []string{
			"group streamer-r: offsets would be set to earliest: in[0]@0 in[1]@0",
			"state directory would be removed: " + filepath.Join(stateDir, "streamer-r"),
		}},
		{nil, []string{
			"group streamer-r: offsets set to earliest: in[0]@0 in[1]@0",
			"state directory removed: " + filepath.Join(stateDir, "streamer-r"),
		}},
	} {
		var out, errb bytes.Buffer
		args := append([]string{"reset", "--brokers", brokers, "--state-dir", stateDir}, tt.args...)
		if code := run(append(args, file), &out, &errb); code != ExitOK {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errb.String())
		}
		for _, w := range tt.want {
			if !strings.Contains(out.String(), w) {
				t.Errorf("%v: stdout lacks %q:\n%s", tt.args, w, out.String())
			}
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, "streamer-r")); !os.IsNotExist(err) {
		t.Errorf("state directory left: %v", err)
	}
}
