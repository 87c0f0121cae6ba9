package main

import (
	"fmt"
	"image/color"
	"os"
	"runtime"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// summary is a system's figures over its rounds that matched the oracle:
// medians, leaving out Kafka Streams' first round (JIT warm-up) when it had
// more than one.
type summary struct {
	system      string
	rounds      int
	rate, cpuUs float64
	util        float64 // process CPU / wall / cores, in %
	rssMiB      float64
}

func summarize(c config, outs []outcome) []summary {
	var ss []summary
	for _, sys := range c.systems {
		var rates, cpus, utils, rss []float64
		for _, o := range outs {
			if o.system != sys || !o.ok {
				continue
			}
			if sys == "kstreams" && o.round == 1 && c.ksRounds > 1 {
				continue
			}
			rates = append(rates, o.rate())
			cpus = append(cpus, o.cpuMicros())
			utils = append(utils, 100*o.cpu/o.seconds/float64(runtime.NumCPU()))
			rss = append(rss, float64(o.rssKB)/1024)
		}
		if len(rates) == 0 {
			continue
		}
		ss = append(ss, summary{system: sys, rounds: len(rates), rate: median(rates), cpuUs: median(cpus), util: median(utils), rssMiB: median(rss)})
	}
	return ss
}

func report(c config, outs []outcome, lats []latOutcome) error {
	fmt.Println()
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "system\tround\trecords/s\tseconds\tCPU µs/record\tCPU cores\tCPU utilisation (%d cores)\tpeak RSS MiB\tload average\toutput\t\n", runtime.NumCPU())
	var md strings.Builder
	fmt.Fprintf(&md, "| system | round | records/s | seconds | CPU µs/record | CPU (cores) | CPU utilisation (of %d) | peak RSS MiB | load average (1/5/15 min) | output |\n|---|---|---|---|---|---|---|---|---|---|\n", runtime.NumCPU())
	for _, o := range outs {
		verdict := "matches the oracle"
		if o.system == "passthrough" {
			verdict = "a copy of the input (no work, no transactions)"
		}
		if o.ok && strings.HasPrefix(o.note, "read back read_committed: ") && o.note != "read back read_committed: matches the oracle" {
			verdict = strings.TrimPrefix(o.note, "read back read_committed: ")
		}
		switch o.system {
		case "goka":
			verdict += " (Goka is at least once: no transactions)"
		case "ray":
			verdict += " (Ray Data is at least once: no Kafka transactions)"
		}
		rate, cpu, cores := fmt.Sprintf("%.0f", o.rate()), fmt.Sprintf("%.1f", o.cpuMicros()), fmt.Sprintf("%.2f", o.cpu/o.seconds)
		util := fmt.Sprintf("%.0f%%", 100*o.cpu/o.seconds/float64(runtime.NumCPU()))
		if !o.ok {
			verdict, rate, cpu, cores, util = o.note, "not timed", "-", "-", "-"
		}
		load := o.load
		if load == "" {
			load = "-"
		}
		fmt.Fprintf(w, "%s\t%d\t%s\t%.2f\t%s\t%s\t%s\t%.0f\t%s\t%s\t\n", o.system, o.round, rate, o.seconds, cpu, cores, util, float64(o.rssKB)/1024, load, verdict)
		fmt.Fprintf(&md, "| %s | %d | %s | %.2f | %s | %s | %s | %.0f | %s | %s |\n", o.system, o.round, rate, o.seconds, cpu, cores, util, float64(o.rssKB)/1024, load, verdict)
	}
	w.Flush()
	ss := summarize(c, outs)
	fmt.Println("\nmedians (kstreams without its first, JIT warm-up round):")
	md.WriteString("\n| system | rounds | median records/s | CPU µs/record | CPU utilisation | peak RSS MiB | streamer ÷ system (records/s) |\n|---|---|---|---|---|---|---|\n")
	var streamerRate float64
	for _, s := range ss {
		if s.system == "streamer" {
			streamerRate = s.rate
		}
	}
	for _, s := range ss {
		ratio := "-"
		if streamerRate > 0 && s.system != "streamer" {
			ratio = fmt.Sprintf("%.2f", streamerRate/s.rate)
		}
		fmt.Printf("  %-11s %d rounds %9.0f records/s %6.1f µs CPU/record %3.0f%% CPU %5.0f MiB  streamer/this %s\n", s.system, s.rounds, s.rate, s.cpuUs, s.util, s.rssMiB, ratio)
		fmt.Fprintf(&md, "| %s | %d | %.0f | %.1f | %.0f%% | %.0f | %s |\n", s.system, s.rounds, s.rate, s.cpuUs, s.util, s.rssMiB, ratio)
	}
	if len(lats) > 0 {
		fmt.Printf("\nend-to-end latency at %.0f records/s offered (record timestamp to committed and readable, read_committed):\n", lats[0].rate)
		md.WriteString("\n| system | offered records/s | achieved | samples | p50 ms | p99 ms | max ms | p50 of the first / last tenth, ms | kept up | load average before → after | output |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
		for _, l := range lats {
			p50, p99, mx := "-", "-", "-"
			if l.ok {
				p50, p99, mx = ms(l.quantile(0.5)), ms(l.quantile(0.99)), ms(l.quantile(1))
			}
			kept := "yes"
			if !l.kept() {
				kept = "no: backlog grew"
			}
			fmt.Printf("  %-9s p50 %s ms  p99 %s ms  max %s ms  first/last tenth %s/%s ms, kept up: %s (%d samples, %.0f/s achieved, load %s -> %s) %s\n",
				l.system, p50, p99, mx, ms(l.head), ms(l.tail), kept, len(l.samples), l.achieved, l.load1, l.load2, l.note)
			fmt.Fprintf(&md, "| %s | %.0f | %.0f | %d | %s | %s | %s | %s / %s | %s | %s → %s | %s |\n", l.system, l.rate, l.achieved,
				len(l.samples), p50, p99, mx, ms(l.head), ms(l.tail), kept, l.load1, l.load2, l.note)
		}
	}
	var draw func() error
	if len(ss) > 0 {
		draw = func() error { return chart(c, ss, lats) }
	}
	return finishReport(c, md.String(), draw)
}

// finishReport writes the Markdown tables md to c.markdown when it is set
// and, when draw is not nil, draws the chart into c.chart with it and says
// where.
func finishReport(c config, md string, draw func() error) error {
	if c.markdown != "" {
		if err := os.WriteFile(c.markdown, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if draw == nil {
		return nil
	}
	if err := draw(); err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	fmt.Println("chart:", c.chart)
	return nil
}

// chart draws one bar panel per figure, side by side, into c.chart.
func chart(c config, ss []summary, lats []latOutcome) error {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.system
		if s.system == "goka" || s.system == "ray" {
			names[i] = s.system + "*"
		}
	}
	var once []string
	for _, n := range names {
		if strings.HasSuffix(n, "*") {
			once = append(once, strings.TrimSuffix(n, "*"))
		}
	}
	xlabel := ""
	if len(once) > 0 {
		xlabel = "*: at least once (" + strings.Join(once, ", ") + ")"
	}
	specs := []struct {
		title, y string
		f        func(summary) float64
	}{
		{c.workload + ": throughput (medians of the rounds; kstreams without round 1)", "records/s", func(s summary) float64 { return s.rate }},
		{"CPU per record", "µs (process CPU time)", func(s summary) float64 { return s.cpuUs }},
		{fmt.Sprintf("CPU utilisation (%d cores)", runtime.NumCPU()), "% (process CPU / wall / cores)", func(s summary) float64 { return s.util }},
		{"peak RSS", "MiB", func(s summary) float64 { return s.rssMiB }},
	}
	var row []*plot.Plot
	for _, sp := range specs {
		vs := make(plotter.Values, len(ss))
		for i, s := range ss {
			vs[i] = sp.f(s)
		}
		p, err := barPanel(sp.title, sp.y, xlabel, names, vs)
		if err != nil {
			return err
		}
		row = append(row, p)
	}
	var ok []latOutcome
	for _, l := range lats {
		if l.ok {
			ok = append(ok, l)
		}
	}
	if len(ok) > 0 {
		p, err := latencyPanel(ok)
		if err != nil {
			return err
		}
		row = append(row, p)
	}
	return savePanels(c.chart, row, 350)
}

// barPanel draws one bar a system (names, values vs), each with its value
// written above it.
func barPanel(title, ylabel, xlabel string, names []string, vs plotter.Values) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = ylabel
	bars, err := plotter.NewBarChart(vs, vg.Points(28))
	if err != nil {
		return nil, err
	}
	p.Add(bars)
	p.NominalX(names...)
	p.X.Label.Text = xlabel
	p.Y.Min = 0
	p.Y.Max = 1.12 * slices.Max(vs)
	labels := make([]string, len(vs))
	xys := make(plotter.XYs, len(vs))
	for i, v := range vs {
		labels[i] = fmt.Sprintf("%.3g", v)
		xys[i] = plotter.XY{X: float64(i), Y: v}
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xys, Labels: labels})
	if err != nil {
		return nil, err
	}
	for i := range l.TextStyle {
		l.TextStyle[i].XAlign = draw.XCenter
		l.TextStyle[i].YAlign = draw.YBottom
	}
	p.Add(l)
	return p, nil
}

// savePanels draws the panels side by side, width points each and 330
// high, into a PNG at path.
func savePanels(path string, row []*plot.Plot, width float64) error {
	img := vgimg.New(vg.Points(width*float64(len(row))), vg.Points(330))
	dc := draw.New(img)
	t := draw.Tiles{Rows: 1, Cols: len(row), PadX: vg.Points(12), PadTop: vg.Points(6), PadBottom: vg.Points(6), PadLeft: vg.Points(6), PadRight: vg.Points(6)}
	cs := plot.Align([][]*plot.Plot{row}, t, dc)
	for i, p := range row {
		p.Draw(cs[0][i])
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[n/2]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f", float64(d)/1e6) }

// latencyPanel draws p50 and p99 side by side for each system.
func latencyPanel(ls []latOutcome) (*plot.Plot, error) {
	p := plot.New()
	p.Title.Text = fmt.Sprintf("latency at %.0f records/s (p50 left, p99 right)", ls[0].rate)
	p.Y.Label.Text = "ms, timestamp to committed and readable"
	names := make([]string, len(ls))
	var p50, p99 plotter.Values
	var xy50, xy99 plotter.XYs
	var lab50, lab99 []string
	w := vg.Points(14)
	for i, l := range ls {
		names[i] = l.system
		a, b := float64(l.quantile(0.5))/1e6, float64(l.quantile(0.99))/1e6
		p50, p99 = append(p50, a), append(p99, b)
		xy50, xy99 = append(xy50, plotter.XY{X: float64(i), Y: a}), append(xy99, plotter.XY{X: float64(i), Y: b})
		lab50, lab99 = append(lab50, fmt.Sprintf("%.0f", a)), append(lab99, fmt.Sprintf("%.0f", b))
	}
	b50, err := plotter.NewBarChart(p50, w)
	if err != nil {
		return nil, err
	}
	b50.Offset = -w / 2
	b99, err := plotter.NewBarChart(p99, w)
	if err != nil {
		return nil, err
	}
	b99.Offset = w / 2
	b99.Color = color.Gray{Y: 90}
	p.Add(b50, b99)
	p.NominalX(names...)
	p.Y.Min = 0
	p.Y.Max = 1.12 * slices.Max(p99)
	for _, set := range []struct {
		xys    plotter.XYs
		labels []string
		dx     vg.Length
	}{{xy50, lab50, -w / 2}, {xy99, lab99, w / 2}} {
		l, err := plotter.NewLabels(plotter.XYLabels{XYs: set.xys, Labels: set.labels})
		if err != nil {
			return nil, err
		}
		l.Offset = vg.Point{X: set.dx}
		for i := range l.TextStyle {
			l.TextStyle[i].XAlign = draw.XCenter
			l.TextStyle[i].YAlign = draw.YBottom
		}
		p.Add(l)
	}
	return p, nil
}
