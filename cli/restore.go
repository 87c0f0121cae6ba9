package cli

import (
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/streamerio/streamer/engine"
)

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// restoreBar shows the state restores under way as one progress bar on a
// terminal, in place of the engine's periodic progress lines (it is an
// engine.RestoreDisplay). The bar counts changelog offsets over every
// restore since it appeared, and goes away when they are all done. Log
// lines are written through it, so that they clear the bar before they
// are printed rather than mixing with it.
type restoreBar struct {
	mu   sync.Mutex
	out  io.Writer // the terminal
	bar  *progressbar.ProgressBar
	runs map[restoreKey]engine.RestoreProgress
	// width is the bar's, 0 for progressbar's default; throttle is the
	// least time between redraws. Tests set both.
	width    int
	throttle time.Duration
}

type restoreKey struct {
	store     string
	partition int32
}

var _ engine.RestoreDisplay = (*restoreBar)(nil)

func newRestoreBar(out io.Writer) *restoreBar {
	return &restoreBar{out: out, runs: map[restoreKey]engine.RestoreProgress{}, throttle: 200 * time.Millisecond}
}

func (b *restoreBar) DisplaysRestoreProgress() {}

func (b *restoreBar) OnRestoreProgress(p engine.RestoreProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := restoreKey{p.Store, p.Partition}
	if _, ok := b.runs[k]; !ok && (p.Done || p.Total() == 0) {
		return // nothing to read, or never shown: no bar for it
	}
	b.runs[k] = p
	var total, done int64
	running := 0
	for _, r := range b.runs {
		total += r.Total()
		if r.Done {
			done += r.Total() // stopped or failed ones count as over
			continue
		}
		done += r.Position - r.From
		running++
	}
	if b.bar == nil {
		opts := []progressbar.Option{
			progressbar.OptionSetWriter(b.out),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("records"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(b.throttle),
			progressbar.OptionClearOnFinish(),
		}
		if b.width > 0 {
			opts = append(opts, progressbar.OptionSetWidth(b.width))
		}
		b.bar = progressbar.NewOptions64(total, opts...)
	} else if b.bar.GetMax64() != total {
		b.bar.ChangeMax64(total)
	}
	b.bar.Describe(describe(b.runs, running))
	if running == 0 {
		_ = b.bar.Finish() // clears it
		b.bar = nil
		clear(b.runs)
		return
	}
	_ = b.bar.Set64(done)
}

// describe names what is restoring: "restoring count[3]" or "restoring
// state (4 partitions)".
func describe(runs map[restoreKey]engine.RestoreProgress, running int) string {
	if running == 1 {
		for k, r := range runs {
			if !r.Done {
				return fmt.Sprintf("restoring %s[%d]", k.store, k.partition)
			}
		}
	}
	return fmt.Sprintf("restoring state (%d partitions)", running)
}

// Write prints a log line above the bar.
func (b *restoreBar) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Clear()
	}
	return b.out.Write(p)
}

// notReady says why a replica is not ready, or "" if it is: the restores
// under way, with how far each is, or that it has not joined its group.
func notReady(r readiness) string {
	if rs := r.Restoring(); len(rs) > 0 {
		var sb strings.Builder
		fmt.Fprintf(&sb, "not ready: restoring state (%d store partitions)\n", len(rs))
		for _, p := range rs {
			sb.WriteString(p.String())
			sb.WriteByte('\n')
		}
		return sb.String()
	}
	if n := r.LoadingTables(); n > 0 {
		return fmt.Sprintf("not ready: reading the tables that %d assigned partitions join\n", n)
	}
	if !r.Ready() {
		return "not ready: the replica has not joined its group yet\n"
	}
	return ""
}
