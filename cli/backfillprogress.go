package cli

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/schollz/progressbar/v3"

	"github.com/streamerio/streamer/engine"
)

// showProgress reports a bounded run's progress until done is closed: on
// bar every half second when there is one, else as a log line every
// every.
func showProgress(log *slog.Logger, bar *progressBar, e *engine.Engine, every time.Duration, start time.Time, done <-chan struct{}) {
	if bar != nil {
		every = 500 * time.Millisecond
	}
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		p := e.BoundedProgress()
		if p == nil || p.Checked.IsZero() {
			continue
		}
		if bar != nil {
			bar.update(p)
			continue
		}
		attrs := []any{"done", p.Done, "total", p.Total, "percent", fmt.Sprintf("%.1f", 100*float64(p.Done)/float64(max(1, p.Total))), "records_in", p.RecordsIn}
		if el := time.Since(start).Seconds(); p.Done > 0 && el > 0 {
			rate := float64(p.Done) / el
			attrs = append(attrs, "offsets_per_s", int64(rate), "eta", (time.Duration(float64(p.Total-p.Done)/rate) * time.Second).Round(time.Second))
		}
		if len(p.Behind) > 0 {
			attrs = append(attrs, "behind", stragglers(p.Behind))
		}
		if p.Draining {
			attrs = append(attrs, "draining", "internal topics")
		}
		log.Info("backfill progress", attrs...)
	}
}

// registerProgress adds the progress of e's bounded run to reg, as of
// its last check of the group's offsets.
func registerProgress(reg *prometheus.Registry, e *engine.Engine) {
	progress := func(f func(*engine.BoundedProgress) float64) func() float64 {
		return func() float64 {
			if p := e.BoundedProgress(); p != nil {
				return f(p)
			}
			return 0
		}
	}
	reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "streamer_backfill_offsets_done", Help: "Offsets of the backfill's source ranges committed by its whole group (transaction markers included), as of the last check."},
			progress(func(p *engine.BoundedProgress) float64 { return float64(p.Done) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "streamer_backfill_offsets_total", Help: "Offsets in the backfill's source ranges (transaction markers included)."},
			progress(func(p *engine.BoundedProgress) float64 { return float64(p.Total) })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "streamer_backfill_partitions_behind", Help: "Source partitions of the backfill not yet committed up to their end."},
			progress(func(p *engine.BoundedProgress) float64 { return float64(len(p.Behind)) })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "streamer_backfill_records_in_total", Help: "Records of the backfill's source ranges this replica read and processed."},
			progress(func(p *engine.BoundedProgress) float64 { return float64(p.RecordsIn) })),
	)
}

// stragglers names the three partitions with the most left to do.
func stragglers(behind []engine.PartitionLag) string {
	ls := append([]engine.PartitionLag(nil), behind...)
	for i := range ls { // a partial selection sort: three at most
		if i == 3 {
			break
		}
		m := i
		for j := i + 1; j < len(ls); j++ {
			if ls[j].Lag > ls[m].Lag {
				m = j
			}
		}
		ls[i], ls[m] = ls[m], ls[i]
	}
	var parts []string
	for i, l := range ls {
		if i == 3 {
			parts = append(parts, fmt.Sprintf("+%d more", len(ls)-3))
			break
		}
		parts = append(parts, fmt.Sprintf("%s[%d]:%d", l.Topic, l.Partition, l.Lag))
	}
	return strings.Join(parts, " ")
}

// progressBar shows a backfill's progress on a terminal: offsets of the
// range committed by the whole group, the rate, the time left and the
// partitions furthest behind. Log lines are written through it, so that
// they clear the bar before they are printed.
type progressBar struct {
	mu  sync.Mutex
	out io.Writer
	bar *progressbar.ProgressBar
}

func newProgressBar(out io.Writer) *progressBar { return &progressBar{out: out} }

func (b *progressBar) update(p *engine.BoundedProgress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar == nil {
		b.bar = progressbar.NewOptions64(p.Total,
			progressbar.OptionSetWriter(b.out),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("offsets"),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionClearOnFinish(),
		)
	}
	desc := "backfill"
	switch {
	case p.Draining:
		desc = "backfill: draining internal topics"
	case len(p.Behind) > 0 && len(p.Behind) <= 3:
		desc = "backfill; behind: " + stragglers(p.Behind)
	}
	b.bar.Describe(desc)
	_ = b.bar.Set64(p.Done)
}

// finish clears the bar; a nil bar does nothing.
func (b *progressBar) finish() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Finish()
		b.bar = nil
	}
}

// Write prints a log line above the bar.
func (b *progressBar) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.bar != nil {
		_ = b.bar.Clear()
	}
	return b.out.Write(p)
}
