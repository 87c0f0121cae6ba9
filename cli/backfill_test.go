package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseSinks(t *testing.T) {
	got, err := parseSinks([]string{"scored=scored-bf", "dlq=x=y"})
	if err != nil || got["scored"] != "scored-bf" || got["dlq"] != "x=y" || len(got) != 2 {
		t.Errorf("got %v, %v", got, err)
	}
	for _, bad := range [][]string{{"scored"}, {"=t"}, {"s="}, {"s=a", "s=b"}} {
		if _, err := parseSinks(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// TestBackfillUsageErrors: bad positions and flags are usage errors,
// reported before any broker is contacted.
func TestBackfillUsageErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"backfill", "x.yaml"}, "--from is required"},
		{[]string{"backfill", "x.yaml", "--from", "yesterday"}, `--from: "yesterday"`},
		{[]string{"backfill", "x.yaml", "--from", "earliest", "--to", "in:0"}, "--to:"},
		{[]string{"backfill", "x.yaml", "--from", "earliest", "--sink", "out"}, `--sink "out": want NAME=TOPIC`},
		{[]string{"backfill", "x.yaml", "--from", "earliest", "--rate", "-1"}, "--rate must be ≥ 0"},
		{[]string{"offsets", "reset", "x.yaml", "--to", "soon"}, `--to: "soon"`},
	} {
		var out, errb bytes.Buffer
		if code := run(c.args, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), c.want) {
			t.Errorf("%v: exit %d, want %d with %q:\n%s", c.args, code, ExitUsage, c.want, errb.String())
		}
	}
}
