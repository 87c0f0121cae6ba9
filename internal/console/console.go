// Package console serves the live topology page: the pipe DAG drawn as a
// picture, with per-pipe rates, lag and errors updated every second. It is
// the seed paper's built-in visualisation of a pipeline.
//
// The page is one embedded HTML file with no external assets. It reads two
// JSON endpoints: /api/topology (the DAG, fixed) and /api/stats (counters,
// polled; the page turns them into rates).
package console

import (
	_ "embed"
	"encoding/json"
	"maps"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/topology"
)

//go:embed page.html
var page []byte

// Console collects the counters the page shows; it is an engine hook.
type Console struct {
	top     *topology.Topology
	replica string
	stats   *engine.Stats
	pipes   map[string]*pipeCounters
	outputs map[string]*atomic.Int64
	started time.Time
	ready   func() bool
}

type pipeCounters struct {
	in, out, failed atomic.Int64
}

var (
	_ engine.PipeHook   = (*Console)(nil)
	_ engine.OutputHook = (*Console)(nil)
)

// New returns a console for one replica: stats are the engine's counters and
// ready its readiness.
func New(top *topology.Topology, replica string, stats *engine.Stats, ready func() bool) *Console {
	c := &Console{top: top, replica: replica, stats: stats, ready: ready, pipes: map[string]*pipeCounters{}, outputs: map[string]*atomic.Int64{}, started: time.Now()}
	for _, p := range top.Pipes {
		c.pipes[p.Name] = &pipeCounters{}
	}
	for _, d := range top.Sinks() {
		c.outputs[d.Name] = &atomic.Int64{}
	}
	return c
}

func (c *Console) OnPipeBatch(b engine.PipeBatch) {
	if p, ok := c.pipes[b.Pipe]; ok {
		p.in.Add(int64(b.In))
		p.out.Add(int64(b.Out))
		p.failed.Add(int64(b.Failed))
	}
}

func (c *Console) OnOutput(dataset string, _ time.Duration) {
	if n, ok := c.outputs[dataset]; ok {
		n.Add(1)
	}
}

// Register adds the page and its endpoints to mux: / and /api/*.
func (c *Console) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	})
	mux.HandleFunc("GET /api/topology", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, c.graph()) })
	mux.HandleFunc("GET /api/stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, c.snapshot()) })
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// Graph is the DAG as the page draws it.
type Graph struct {
	Name    string `json:"name"`
	Group   string `json:"group"`
	Replica string `json:"replica"`
	Nodes   []Node `json:"nodes"`
	Edges   []Edge `json:"edges"`
}

// Node is a dataset or a pipe. Layer is its column: the longest path from a
// source to it.
type Node struct {
	ID     string `json:"id"`
	Label  string `json:"label"`
	Kind   string `json:"kind"` // source, sink, memory, deadletter, pipe
	Detail string `json:"detail"`
	Layer  int    `json:"layer"`
}

// Edge joins two nodes; dashed edges carry failures to the dead letters.
type Edge struct {
	From   string `json:"from"`
	To     string `json:"to"`
	Dashed bool   `json:"dashed,omitempty"`
}

func (c *Console) graph() Graph {
	g := Graph{Name: c.top.Name, Group: c.top.Group, Replica: c.replica}
	layer := map[string]int{}
	// Pipes come in topological order, so one pass finds the layers.
	for _, p := range c.top.Pipes {
		l := 0
		for _, in := range p.Inputs {
			// An internal source sits after what writes its topic.
			switch {
			case in.RepartitionOf != nil:
				layer["ds:"+in.Name] = layer["ds:"+in.RepartitionOf.Name] + 1
			case in.MergeOf != nil:
				m := 0
				for _, f := range c.top.Feeding(in.MergeOf) {
					m = max(m, layer["ds:"+f.Name]+1)
				}
				layer["ds:"+in.MergeOf.Name], layer["ds:"+in.Name] = m, m+1
			}
			l = max(l, layer["ds:"+in.Name]+1)
		}
		layer["pipe:"+p.Name] = l
		for _, o := range p.Outputs {
			layer["ds:"+o.Name] = l + 1
		}
	}
	maxLayer := 0
	for _, l := range layer {
		maxLayer = max(maxLayer, l)
	}
	for _, name := range slices.Sorted(maps.Keys(c.top.Datasets)) {
		d := c.top.Datasets[name]
		kind, detail := "memory", "in memory"
		switch {
		case d == c.top.DeadLetter:
			kind, detail = "deadletter", d.Topic
			layer["ds:"+name] = maxLayer + 1
		case d.IsSource():
			kind, detail = "source", d.Topic
		case d.Topic != "":
			kind, detail = "sink", d.Topic
		}
		g.Nodes = append(g.Nodes, Node{ID: "ds:" + name, Label: name, Kind: kind, Detail: detail, Layer: layer["ds:"+name]})
	}
	// The topics the compiler inserted: a re-keyed dataset feeds its
	// repartition source, the inputs of a merge its merge source, which
	// feeds one side per input.
	for _, name := range slices.Sorted(maps.Keys(c.top.Datasets)) {
		d := c.top.Datasets[name]
		if d.Repartition != nil {
			g.Edges = append(g.Edges, Edge{From: "ds:" + name, To: "ds:" + d.Repartition.Name})
		}
		for _, m := range d.Merges {
			g.Edges = append(g.Edges, Edge{From: "ds:" + name, To: "ds:" + m.Source.Name})
		}
		for _, side := range d.Sides {
			g.Edges = append(g.Edges, Edge{From: "ds:" + name, To: "ds:" + side.Name})
		}
	}
	for _, p := range c.top.Pipes {
		g.Nodes = append(g.Nodes, Node{ID: "pipe:" + p.Name, Label: p.Name, Kind: "pipe", Detail: p.Type, Layer: layer["pipe:"+p.Name]})
		for _, in := range p.Inputs {
			g.Edges = append(g.Edges, Edge{From: "ds:" + in.Name, To: "pipe:" + p.Name})
		}
		for _, o := range p.Outputs {
			g.Edges = append(g.Edges, Edge{From: "pipe:" + p.Name, To: "ds:" + o.Name})
		}
		if p.OnError == topology.DeadLetter && c.top.DeadLetter != nil {
			g.Edges = append(g.Edges, Edge{From: "pipe:" + p.Name, To: "ds:" + c.top.DeadLetter.Name, Dashed: true})
		}
	}
	return g
}

// Stats are the counters the page polls.
type Stats struct {
	// Seconds since the replica started, for rates.
	Seconds     float64              `json:"seconds"`
	Ready       bool                 `json:"ready"`
	RecordsIn   int64                `json:"records_in"`
	RecordsOut  int64                `json:"records_out"`
	DeadLetters int64                `json:"dead_letters"`
	Commits     int64                `json:"commits"`
	Aborts      int64                `json:"aborts"`
	Lag         int64                `json:"lag"`
	Pipes       map[string]PipeStats `json:"pipes"`
	Outputs     map[string]int64     `json:"outputs"`
}

// PipeStats are one pipe's counters.
type PipeStats struct {
	In     int64 `json:"in"`
	Out    int64 `json:"out"`
	Failed int64 `json:"failed"`
}

func (c *Console) snapshot() Stats {
	s := Stats{
		Seconds:     time.Since(c.started).Seconds(),
		Ready:       c.ready(),
		RecordsIn:   c.stats.RecordsIn.Load(),
		RecordsOut:  c.stats.RecordsOut.Load(),
		DeadLetters: c.stats.DeadLettered.Load(),
		Commits:     c.stats.Commits.Load(),
		Aborts:      c.stats.Aborts.Load(),
		Lag:         c.stats.TotalLag(),
		Pipes:       map[string]PipeStats{},
		Outputs:     map[string]int64{},
	}
	for name, p := range c.pipes {
		s.Pipes[name] = PipeStats{In: p.in.Load(), Out: p.out.Load(), Failed: p.failed.Load()}
	}
	for name, n := range c.outputs {
		s.Outputs[name] = n.Load()
	}
	return s
}
