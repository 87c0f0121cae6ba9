package main

import (
	"image/png"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Both reports write their Markdown tables and a chart of one panel a
// figure, side by side: four panels of 300 (W6) or 350 points, 330 high.
func TestReportsWriteTablesAndChart(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name   string
		write  func(c config) error
		ratio  float64
		header string
	}{
		{"throughput", func(c config) error {
			return report(c, []outcome{
				{system: "streamer", round: 1, n: 1000, seconds: 1, cpu: 0.5, rssKB: 2048, ok: true},
				{system: "kstreams", round: 1, n: 1000, seconds: 2, cpu: 1, rssKB: 4096, ok: true},
			}, nil)
		}, 4 * 350.0 / 330, "| system | rounds | median records/s"},
		{"W6", func(c config) error {
			return reportW6(c, 1000, []w6Outcome{
				{system: "streamer", round: 1, ready: 1, restore: 0.5, restored: 1000, cpu: 0.4, rssKB: 2048, ok: true},
				{system: "kstreams", round: 1, ready: 3, restore: 2, restored: 1000, cpu: 2, rssKB: 4096, ok: true},
			})
		}, 4 * 300.0 / 330, "| system | restores | median ready after (s)"},
	} {
		c := config{workload: "W1", systems: []string{"streamer", "kstreams"},
			chart: filepath.Join(dir, tc.name+".png"), markdown: filepath.Join(dir, tc.name+".md")}
		if err := tc.write(c); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		md, err := os.ReadFile(c.markdown)
		if err != nil || !strings.Contains(string(md), tc.header) {
			t.Errorf("%s: Markdown %q, %v; want the medians' table", tc.name, md, err)
		}
		f, err := os.Open(c.chart)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		img, err := png.DecodeConfig(f)
		f.Close()
		if err != nil {
			t.Fatalf("%s: chart: %v", tc.name, err)
		}
		if got := float64(img.Width) / float64(img.Height); got < tc.ratio*0.99 || got > tc.ratio*1.01 {
			t.Errorf("%s: chart %dx%d, want width/height %.2f", tc.name, img.Width, img.Height, tc.ratio)
		}
	}
}
