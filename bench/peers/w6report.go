package main

import (
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
)

// w6Summary is a system's medians over its restores that passed the check.
type w6Summary struct {
	system                    string
	rounds                    int
	ready, restore, rate, cpu float64
	rssMiB                    float64
}

// reportW6 prints W6's table (and writes it as Markdown to c.markdown) and
// draws its chart.
func reportW6(c config, keys int, outs []w6Outcome) error {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "system\tround\tready after s\trestore s\trestore records/s\trecords restored\tCPU s to ready\tpeak RSS MiB at ready\tload avg before → after\tstate check\t")
	var md strings.Builder
	md.WriteString("| system | round | ready after (s) | first restore began (s) | restore (s) | restore records/s | records restored | CPU s to ready | peak RSS MiB at ready (whole run) | probes committed after ready (s) | load average before → after | restored state |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, o := range outs {
		ready, rate, cpu := fmt.Sprintf("%.2f", o.ready), fmt.Sprintf("%.0f", o.rate()), fmt.Sprintf("%.2f", o.cpu)
		if !o.ok {
			ready, rate, cpu = "not timed", "-", "-"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%.2f\t%s\t%d\t%s\t%.0f\t%s → %s\t%s\t\n", o.system, o.round, ready, o.restore, rate, o.restored, cpu,
			float64(o.rssKB)/1024, o.load1, o.load2, o.note)
		fmt.Fprintf(&md, "| %s | %d | %s | %.2f | %.2f | %s | %d | %s | %.0f (%.0f) | %.2f | %s → %s | %s |\n", o.system, o.round, ready, o.began, o.restore, rate, o.restored, cpu,
			float64(o.rssKB)/1024, float64(o.exitRSSKB)/1024, o.probed, o.load1, o.load2, o.note)
	}
	w.Flush()
	var ss []w6Summary
	for _, sys := range c.systems {
		var ready, restore, rate, cpu, rss []float64
		for _, o := range outs {
			if o.system == sys && o.ok {
				ready, restore, rate = append(ready, o.ready), append(restore, o.restore), append(rate, o.rate())
				cpu, rss = append(cpu, o.cpu), append(rss, float64(o.rssKB)/1024)
			}
		}
		if len(ready) > 0 {
			ss = append(ss, w6Summary{system: sys, rounds: len(ready), ready: median(ready), restore: median(restore),
				rate: median(rate), cpu: median(cpu), rssMiB: median(rss)})
		}
	}
	fmt.Printf("\nmedians, %d keys:\n", keys)
	md.WriteString("\n| system | restores | median ready after (s) | restore (s) | restore records/s | CPU s to ready | peak RSS MiB at ready | system's ready ÷ streamer's |\n|---|---|---|---|---|---|---|---|\n")
	var streamerReady float64
	for _, s := range ss {
		if s.system == "streamer" {
			streamerReady = s.ready
		}
	}
	for _, s := range ss {
		ratio := "-"
		if streamerReady > 0 && s.system != "streamer" {
			ratio = fmt.Sprintf("%.2f", s.ready/streamerReady)
		}
		fmt.Printf("  %-9s %d restores  ready after %6.2f s  restore %6.2f s  %9.0f records/s  CPU %6.2f s  %5.0f MiB  this/streamer (ready) %s\n",
			s.system, s.rounds, s.ready, s.restore, s.rate, s.cpu, s.rssMiB, ratio)
		fmt.Fprintf(&md, "| %s | %d | %.2f | %.2f | %.0f | %.2f | %.0f | %s |\n", s.system, s.rounds, s.ready, s.restore, s.rate, s.cpu, s.rssMiB, ratio)
	}
	var draw func() error
	if len(ss) > 0 {
		draw = func() error { return chartW6(c, keys, ss) }
	}
	return finishReport(c, md.String(), draw)
}

// chartW6 draws one bar panel per figure, side by side, as chart does for
// the throughput workloads.
func chartW6(c config, keys int, ss []w6Summary) error {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.system
	}
	specs := []struct {
		title, y string
		f        func(w6Summary) float64
	}{
		{fmt.Sprintf("W6: ready after losing the disk (%d keys)", keys), "s from process start", func(s w6Summary) float64 { return s.ready }},
		{"restore rate", "records/s", func(s w6Summary) float64 { return s.rate }},
		{"CPU from start to ready", "s (process CPU time)", func(s w6Summary) float64 { return s.cpu }},
		{"peak RSS at ready", "MiB", func(s w6Summary) float64 { return s.rssMiB }},
	}
	var row []*plot.Plot
	for _, sp := range specs {
		vs := make(plotter.Values, len(ss))
		for i, s := range ss {
			vs[i] = sp.f(s)
		}
		p, err := barPanel(sp.title, sp.y, "", names, vs)
		if err != nil {
			return err
		}
		row = append(row, p)
	}
	return savePanels(c.chart, row, 300)
}
