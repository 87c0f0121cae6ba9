package engine

import (
	"strings"
	"testing"
	"time"
)

func TestParseTarget(t *testing.T) {
	now := time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		in   string
		kind TargetKind
		time time.Time
		offs map[string]map[int32]int64
	}{
		{"earliest", TargetEarliest, time.Time{}, nil},
		{"latest", TargetLatest, time.Time{}, nil},
		{"now", TargetLatest, time.Time{}, nil},
		{"2026-11-01T00:00:00Z", TargetTime, time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC), nil},
		{"24h", TargetTime, now.Add(-24 * time.Hour), nil},
		{"90m", TargetTime, now.Add(-90 * time.Minute), nil},
		{"in:0:100,in:1:7, other.topic:3:0", TargetOffsets, time.Time{}, map[string]map[int32]int64{"in": {0: 100, 1: 7}, "other.topic": {3: 0}}},
	} {
		got, err := ParseTarget(c.in, now)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if got.Kind != c.kind || !got.Time.Equal(c.time) || got.String() != strings.TrimSpace(c.in) {
			t.Errorf("%q: got kind %d time %v", c.in, got.Kind, got.Time)
		}
		if c.offs != nil {
			for topic, ps := range c.offs {
				for p, o := range ps {
					if got.Offsets[topic][p] != o {
						t.Errorf("%q: %s[%d] = %d, want %d", c.in, topic, p, got.Offsets[topic][p], o)
					}
				}
			}
			if len(got.Offsets) != len(c.offs) {
				t.Errorf("%q: offsets %v", c.in, got.Offsets)
			}
		}
	}
	for _, bad := range []string{"", "yesterday", "-24h", "0s", "in:x:1", "in:0:-1", "in:0", ":0:1", "in:0:1,in:0:2", "2026-13-01T00:00:00Z"} {
		if _, err := ParseTarget(bad, now); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestBackfillGroup(t *testing.T) {
	if g, err := BackfillGroup("streamer-x", "2026-11.fix_1"); err != nil || g != "streamer-x-backfill-2026-11.fix_1" {
		t.Errorf("got %q, %v", g, err)
	}
	for _, bad := range []string{"", "../x", "a/b", "-x", "a..b", strings.Repeat("a", 65), "a b"} {
		if _, err := BackfillGroup("g", bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}
