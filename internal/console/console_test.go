package console_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/console"
	"github.com/streamerio/streamer/topology"
)

func TestEndpoints(t *testing.T) {
	top, err := topology.Load("../../examples/enrichment/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	c, srv := serve(t, top)
	c.OnPipeBatch(engine.PipeBatch{Pipe: "valid", In: 10, Out: 8, Failed: 1})
	c.OnOutput("enriched", 0)

	var g console.Graph
	get(t, srv.URL+"/api/topology", &g)
	layer := map[string]int{}
	kind := map[string]string{}
	for _, n := range g.Nodes {
		layer[n.ID], kind[n.ID] = n.Layer, n.Kind
	}
	// Columns follow the data: orders → valid → valid-orders → enrich → enriched → …
	for _, chain := range [][]string{{"ds:orders", "pipe:valid", "ds:valid-orders", "pipe:enrich", "ds:enriched", "pipe:gold-tier", "ds:gold"}} {
		for i := 1; i < len(chain); i++ {
			if layer[chain[i]] != layer[chain[i-1]]+1 {
				t.Errorf("%s in column %d after %s in %d", chain[i], layer[chain[i]], chain[i-1], layer[chain[i-1]])
			}
		}
	}
	if kind["ds:orders"] != "source" || kind["ds:dead-letters"] != "deadletter" || kind["ds:valid-orders"] != "memory" || kind["pipe:enrich"] != "pipe" {
		t.Errorf("kinds %v", kind)
	}
	dashed := 0
	for _, e := range g.Edges {
		if e.Dashed {
			dashed++
		}
	}
	if dashed != len(top.Pipes) {
		t.Errorf("%d dashed edges, want one per pipe (%d)", dashed, len(top.Pipes))
	}

	var s console.Stats
	get(t, srv.URL+"/api/stats", &s)
	if s.Pipes["valid"].In != 10 || s.Pipes["valid"].Failed != 1 || s.Outputs["enriched"] != 1 || !s.Ready {
		t.Errorf("stats %+v", s)
	}

	resp, err := http.Get(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := os.ReadFile("page.html")
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") || len(page) == 0 {
		t.Errorf("page content type %q", ct)
	}
}

// serve runs a ready replica's console for top on a test server.
func serve(t *testing.T, top *topology.Topology) (*console.Console, *httptest.Server) {
	t.Helper()
	c := console.New(top, "r1", engine.NewStats(), func() bool { return true })
	mux := http.NewServeMux()
	c.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return c, srv
}

func get(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

// TestGraphOfMerge: the topics the compiler inserts are drawn, so that the
// page shows how data flows: the inputs of a stream join feed its merge
// source, which feeds one side per input, each in a column after the last.
func TestGraphOfMerge(t *testing.T) {
	top, err := topology.Load("../../examples/stream-join/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, srv := serve(t, top)
	var g console.Graph
	get(t, srv.URL+"/api/topology", &g)
	layer := map[string]int{}
	for _, n := range g.Nodes {
		layer[n.ID] = n.Layer
	}
	edges := map[string]bool{}
	for _, e := range g.Edges {
		edges[e.From+" → "+e.To] = true
	}
	for _, chain := range [][]string{
		{"ds:orders", "pipe:by-order", "ds:orders-by-id", "ds:match-merge", "ds:match-merge-0-orders-by-id", "pipe:match", "ds:paid-orders"},
		{"ds:match-merge", "ds:match-merge-1-payments", "pipe:match"},
	} {
		for i := 1; i < len(chain); i++ {
			if !edges[chain[i-1]+" → "+chain[i]] {
				t.Errorf("no edge %s → %s", chain[i-1], chain[i])
			}
			if layer[chain[i]] != layer[chain[i-1]]+1 {
				t.Errorf("%s in column %d after %s in %d", chain[i], layer[chain[i]], chain[i-1], layer[chain[i-1]])
			}
		}
	}
	if !edges["ds:payments → ds:match-merge"] {
		t.Errorf("payments do not feed the merge: %v", edges)
	}
}
