package state_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/streamerio/streamer/state"
)

// TestDirStaysUnderRoot: whatever the group and store names, a store's
// directory is strictly inside the state directory, so that removing it
// (a wipe, a reset) cannot touch anything else. The topology compiler
// refuses such names; this is the second line of defence.
func TestDirStaysUnderRoot(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "state")
	hostile := []string{"", ".", "..", "../..", "x/../../..", "/etc", "a/b", `..\..`, "../" + strings.Repeat("../", 20) + "tmp", "./.", "x/..", "\x00"}
	for _, g := range append(hostile, "good") {
		for _, s := range append(hostile, "good") {
			dir := state.Dir(root, g, s, 3)
			rel, err := filepath.Rel(root, dir)
			if err != nil || rel == "." || strings.HasPrefix(rel, "..") || filepath.IsAbs(rel) {
				t.Errorf("Dir(%q, %q) = %s: not under %s", g, s, dir, root)
				continue
			}
			if parts := strings.Split(rel, string(filepath.Separator)); len(parts) != 3 {
				t.Errorf("Dir(%q, %q) = %s: %d levels under the root, want 3 (group, store, partition)", g, s, dir, len(parts))
			}
		}
	}
	if got, want := state.Dir(root, "g", "s", 3), filepath.Join(root, "g", "s", "3"); got != want {
		t.Errorf("Dir of good names = %s, want %s", got, want)
	}
	for _, name := range hostile {
		if state.CheckPathName(name) == nil {
			t.Errorf("CheckPathName(%q) accepts a name that is not one plain path element", name)
		}
	}
	if err := state.CheckPathName("streamer-orders_1.v2"); err != nil {
		t.Error(err)
	}
}
