package integration

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestTopologyPageInChromium opens the live topology page of a running
// replica in headless Chromium (Debian's chromium, which make test
// installs): the page must draw every pipe and dataset of the DAG, and its
// per-pipe counters and rates must move while traffic flows. It saves a
// screenshot to $STREAMER_ARTIFACTS (or a temporary directory).
func TestTopologyPageInChromium(t *testing.T) {
	requireIntegration(t)
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium is not installed (make test installs Debian's package): %v", err)
	}
	e := newEnv(t)
	e.createTopic("in", 3)
	file := e.writeTopology(filterMap, nil)
	port := freePort(t)
	r := e.startArgs(file, "r1", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port))
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	waitFor(t, "the replica to be ready", 60*time.Second, func() bool { return httpStatus(url+"readyz") == 200 })

	stop := make(chan struct{})
	produced := make(chan struct{})
	go func() {
		defer close(produced)
		for i := 0; ; i += 300 {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			recs := inputRecords(i, i+300)
			recs[3].Value = []byte(`{"id":1,"n":"x"}`) // an error for the page to show
			e.produceQuiet("in", recs)
		}
	}()
	defer func() { close(stop); <-produced }()

	// Chromium driven over the DevTools protocol, in real time: the page
	// polls every second and shows rates from the deltas.
	// chromedp's defaults keep timers of a page in the background running at
	// full pace (the page polls every second), and start no extra services.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-quic", true), chromedp.WindowSize(1400, 700))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	if err := chromedp.Do(browser); err != nil { // starts the browser, with no timeout
		t.Fatalf("starting chromium: %v", err)
	}
	ctx, cancelTimeout := context.WithTimeout(browser, 60*time.Second)
	defer cancelTimeout()

	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(`#node-pipe-shape[data-in-total]`))); err != nil {
		t.Fatalf("loading the page: %v", err)
	}
	drawn, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll("svg g[id^=node-]")].map(g => g.id)`))
	if err != nil {
		t.Fatal(err)
	}
	dashed, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll("path.edge.dashed").length`))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"node-pipe-keep", "node-pipe-shape", "node-ds-in", "node-ds-kept", "node-ds-out", "node-ds-dlq"} {
		if !slices.Contains(drawn, id) {
			t.Errorf("the page does not draw %s (it draws %v)", id, drawn)
		}
	}
	if dashed != 2 {
		t.Errorf("%d dashed edges to the dead letters, want 2 (one per pipe)", dashed)
	}

	type pipeState struct {
		Total int64   `json:"total"`
		Rate  float64 `json:"rate"`
		Text  string  `json:"text"`
	}
	read := func() map[string]pipeState {
		t.Helper()
		m, err := chromedp.Run(ctx, chromedp.Evaluate[map[string]pipeState](`Object.fromEntries([...document.querySelectorAll("g.pipe")].map(g =>
			[g.dataset.name, {total: Number(g.dataset.inTotal || 0), rate: Number(g.dataset.inRate || 0), text: g.querySelector("text.rate").textContent}]))`))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	time.Sleep(2500 * time.Millisecond)
	a := read()
	time.Sleep(2500 * time.Millisecond)
	b := read()
	for _, pipe := range []string{"keep", "shape"} {
		if a[pipe].Total == 0 || b[pipe].Total <= a[pipe].Total {
			t.Errorf("pipe %s: records in %d then %d; want them rising", pipe, a[pipe].Total, b[pipe].Total)
		}
		if b[pipe].Rate <= 0 || !strings.Contains(b[pipe].Text, "/s") {
			t.Errorf("pipe %s shows %q (rate %v) while traffic flows", pipe, b[pipe].Text, b[pipe].Rate)
		}
	}
	if !strings.Contains(b["keep"].Text, "err") {
		t.Errorf("pipe keep fails a record per batch, but shows %q", b["keep"].Text)
	}
	header, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS("header")))
	if err != nil || !strings.Contains(header, "ready") {
		t.Errorf("header %q (%v)", header, err)
	}

	dir := os.Getenv("STREAMER_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 gives a PNG
	if err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(dir, "topology-page.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil || len(png) < 5000 {
		t.Fatalf("screenshot %s: %d bytes, %v", shot, len(png), err)
	}
	t.Logf("screenshot: %s; pipe keep shows %q", shot, b["keep"].Text)
	if _, code := r.stop(t); code != 0 {
		t.Errorf("replica exit %d", code)
	}
}
