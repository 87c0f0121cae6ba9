package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/streamerio/streamer/ml"
)

// W3, GBDT scoring of a tabular event stream, micro-batched, exactly once:
// each event carries a model's features (f0 … fN-1, null where missing) and
// comes out with the model's score added.
//
// The models and the oracle: a model file with held-out feature rows and the
// predictions of the library that trained it (xgboost or lightgbm, in
// Python), as ml/testdata's *-expected.json. Event i carries row i mod rows;
// its output must hold the library's prediction for that row within 1e-5
// (what ml's own tests require of the Go evaluators). So the oracle does not
// come from streamer's evaluator: a system scoring with a wrong model, wrong
// features or a wrong row is caught.
//
//   - small: ml/testdata/xgb-binary.json, 30 trees of depth 4 over 6
//     features (scripts/ml/train.py);
//   - prod: lgb-prod.txt, 400 trees of up to 63 leaves over 20 features,
//     trained deterministically by scripts/bench/train_w3.py (make
//     bench-peers-w3-model), not committed.
//
// The streamer runs a topology written by the command (w3Topology) beside a
// copy of the model; the hand-written systems score with the same pure-Go
// evaluator (package ml), so the comparison is of what surrounds the model:
// naive calls it once per record, careful once per poll on every core.

const w3Tolerance = 1e-5

// w3Model is a model file with its held-out rows and the library's
// predictions of them.
type w3Model struct {
	name     string // small or prod
	kind     string // xgboost or lightgbm
	path     string
	features int
	trees    string // for the description
	rows     [][]*float64
	want     []float64
}

// loadW3Model finds the model that -w3-model names.
func loadW3Model(name, dir string) (*w3Model, error) {
	m := &w3Model{name: name}
	var expected string
	switch name {
	case "small":
		m.kind, m.path, m.trees = "xgboost", filepath.Join("ml", "testdata", "xgb-binary.json"), "30 trees of depth 4"
		expected = filepath.Join("ml", "testdata", "xgb-binary-expected.json")
	case "prod":
		m.kind, m.path, m.trees = "lightgbm", filepath.Join(dir, "lgb-prod.txt"), "400 trees of up to 63 leaves"
		expected = filepath.Join(dir, "lgb-prod-expected.json")
	default:
		return nil, fmt.Errorf("-w3-model %q: want small or prod", name)
	}
	data, err := os.ReadFile(expected)
	if err != nil {
		if name == "prod" {
			return nil, fmt.Errorf("%w (train it first: make bench-peers-w3-model)", err)
		}
		return nil, err
	}
	var e struct {
		Features    [][]*float64 `json:"features"`
		Predictions []float64    `json:"predictions"`
	}
	if err := json.Unmarshal(data, &e); err != nil {
		return nil, fmt.Errorf("%s: %w", expected, err)
	}
	if len(e.Features) == 0 || len(e.Features) != len(e.Predictions) {
		return nil, fmt.Errorf("%s: %d rows and %d predictions", expected, len(e.Features), len(e.Predictions))
	}
	m.rows, m.want, m.features = e.Features, e.Predictions, len(e.Features[0])
	return m, nil
}

// w3Record is event i: its key (one of 5,000 accounts) and JSON value.
func (m *w3Model) record(i int) ([]byte, []byte) {
	var b bytes.Buffer
	fmt.Fprintf(&b, `{"event_id":%d,"account":"a-%d"`, i, i%5000)
	for k, v := range m.rows[i%len(m.rows)] {
		if v == nil {
			fmt.Fprintf(&b, `,"f%d":null`, k)
		} else {
			fmt.Fprintf(&b, `,"f%d":%s`, k, strconv.FormatFloat(*v, 'g', -1, 64))
		}
	}
	b.WriteByte('}')
	return []byte("a-" + strconv.Itoa(i%5000)), b.Bytes()
}

// check is W3's oracle for one output record: the event's id, and an error
// unless its key is the account's and its score the library's prediction.
func (m *w3Model) check(key, value []byte) (int, error) {
	var v struct {
		ID    *int     `json:"event_id"`
		Score *float64 `json:"score"`
	}
	if err := json.Unmarshal(value, &v); err != nil || v.ID == nil {
		return -1, fmt.Errorf("not an event: %.80s", value)
	}
	id := *v.ID
	switch want := m.want[id%len(m.want)]; {
	case v.Score == nil:
		return id, fmt.Errorf("no score")
	case math.Abs(*v.Score-want) > w3Tolerance:
		return id, fmt.Errorf("score %v, the library's %v", *v.Score, want)
	case string(key) != "a-"+strconv.Itoa(id%5000):
		return id, fmt.Errorf("key %q", key)
	}
	return id, nil
}

func (m *w3Model) workload() recordWorkload {
	var quix []string
	if m.kind == "lightgbm" {
		quix = []string{filepath.Join("bench", "peers", "quix", "score.py"), m.path, strconv.Itoa(m.features)}
	}
	return recordWorkload{
		quix:   quix,
		record: m.record,
		check:  m.check,
		describe: fmt.Sprintf("model %s (%s, %s, %d features, %s); oracle: the library's predictions of %d held-out rows, within %g",
			m.name, m.kind, m.trees, m.features, m.path, len(m.rows), w3Tolerance),
		workerArgs: []string{"-worker-model", m.path},
	}
}

// w3Topology is the streamer's topology for the model: the predict pipe
// with its defaults (batches of up to 256 rows, 2 ms linger, one call in
// flight per core).
func w3Topology(m *w3Model, modelFile string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# W3 of the peers benchmark (issue 16), written by go run ./bench/peers -workload W3.
name: peers-w3
description: Scores tabular events with a GBDT model, micro-batched, exactly once.
processing:
  commit_interval: 100ms
  start_offset: earliest
datasets:
  events:
    topic: peers-w3-events
    partitions: 6
  scored:
    topic: peers-w3-scored
    create: { partitions: 6 }
pipes:
  score:
    from: events
    to: scored
    predict:
      model: { type: %s, path: %s }
      output: [score]
      features:
`, m.kind, modelFile)
	for k := 0; k < m.features; k++ {
		fmt.Fprintf(&b, "        - expr: f%d\n", k)
	}
	return b.String()
}

// writeW3Topology writes the topology and a copy of the model into a fresh
// directory and returns the topology's path.
func writeW3Topology(m *w3Model) (string, error) {
	dir, err := os.MkdirTemp("", "peers-w3-")
	if err != nil {
		return "", err
	}
	data, err := os.ReadFile(m.path)
	if err != nil {
		return "", err
	}
	file := filepath.Base(m.path)
	if err := os.WriteFile(filepath.Join(dir, file), data, 0o644); err != nil {
		return "", err
	}
	path := filepath.Join(dir, "w3.yaml")
	return path, os.WriteFile(path, []byte(w3Topology(m, file)), 0o644)
}

// loadModelFile loads a model for the hand-written systems: xgboost JSON
// or lightgbm text, by extension.
func loadModelFile(path string) (ml.Model, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if strings.HasSuffix(path, ".json") {
		return ml.LoadXGBoostJSON(f)
	}
	return ml.LoadLightGBMText(f)
}

// w3Features decodes an event and reads its features into row.
func w3Features(value []byte, names []string, row []float32) (map[string]any, error) {
	var ev map[string]any
	if err := json.Unmarshal(value, &ev); err != nil {
		return nil, err
	}
	for k, name := range names {
		switch x := ev[name].(type) {
		case float64:
			row[k] = float32(x)
		case nil:
			row[k] = float32(math.NaN())
		default:
			return nil, fmt.Errorf("%s is %T, not a number", name, x)
		}
	}
	return ev, nil
}

func featureNames(n int) []string {
	names := make([]string, n)
	for k := range names {
		names[k] = "f" + strconv.Itoa(k)
	}
	return names
}

// w3Naive scores one event with one model call, as the first correct
// program does.
func w3Naive(m ml.Model) recordFn {
	names := featureNames(m.NumFeatures())
	row, out := make([]float32, len(names)), make([]float64, 1)
	return func(value []byte) ([]byte, bool, error) {
		ev, err := w3Features(value, names, row)
		if err != nil {
			return nil, false, err
		}
		if err := m.Predict(context.Background(), row, out); err != nil {
			return nil, false, err
		}
		ev["score"] = out[0]
		b, err := json.Marshal(ev)
		return b, true, err
	}
}

// w3Careful scores a poll: its events decoded, split into one chunk per
// core, each chunk scored in one model call.
func w3Careful(m ml.Model) batchFn {
	names := featureNames(m.NumFeatures())
	return func(values [][]byte) ([][]byte, error) {
		return parallelChunks(values, func(vals, outs [][]byte) error {
			rows := make([]float32, len(vals)*len(names))
			evs := make([]map[string]any, len(vals))
			for i, v := range vals {
				ev, err := w3Features(v, names, rows[i*len(names):(i+1)*len(names)])
				if err != nil {
					return err
				}
				evs[i] = ev
			}
			scores := make([]float64, len(vals))
			if err := m.Predict(context.Background(), rows, scores); err != nil {
				return err
			}
			for i, ev := range evs {
				ev["score"] = scores[i]
				b, err := json.Marshal(ev)
				if err != nil {
					return err
				}
				outs[i] = b
			}
			return nil
		})
	}
}

// parallelChunks splits values into GOMAXPROCS contiguous chunks and runs
// work on each in its own goroutine; outs[i] is the output of values[i].
func parallelChunks(values [][]byte, work func(vals, outs [][]byte) error) ([][]byte, error) {
	outs := make([][]byte, len(values))
	w := max(1, min(runtime.GOMAXPROCS(0), len(values)))
	size := (len(values) + w - 1) / w
	errs := make([]error, w)
	var wg sync.WaitGroup
	for k := range w {
		lo, hi := k*size, min((k+1)*size, len(values))
		if lo >= hi {
			continue
		}
		wg.Go(func() { errs[k] = work(values[lo:hi], outs[lo:hi]) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return nil, err
		}
	}
	return outs, nil
}
