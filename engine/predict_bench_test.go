package engine_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
	"testing/fstest"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/ml"
	"github.com/streamerio/streamer/topology"
)

// BenchmarkPredictPipeline compares a model's throughput alone, in a tight
// loop of 256-row calls, with its throughput inside the pipeline: JSON
// records decoded, features computed, scored through the shared
// micro-batcher and encoded, one Task per partition for 8 partitions. The
// in-process models are synthetic XGBoost ensembles (random splits over six
// features) of a cheap size and of a size whose cost dominates, as a
// production fraud model's would; with STREAMER_MLSERVER_GRPC set, a model
// on MLServer too.
//
//	go test ./engine/ -run '^$' -bench PredictPipeline
//	scripts/with-mlserver.sh go test ./engine/ -run '^$' -bench PredictPipeline
func BenchmarkPredictPipeline(b *testing.B) {
	type bench struct {
		name, model string // model: the topology's model block
		files       fstest.MapFS
		load        func() (ml.Model, error)
		parallel    int // model-only callers per core
	}
	var benches []bench
	for _, size := range []struct{ trees, depth int }{{30, 4}, {500, 8}} {
		model := syntheticXGBoost(size.trees, size.depth, 6)
		benches = append(benches, bench{
			name:     fmt.Sprintf("xgboost-trees=%d,depth=%d", size.trees, size.depth),
			model:    "{type: xgboost, path: model.json}",
			files:    fstest.MapFS{"model.json": {Data: model}},
			load:     func() (ml.Model, error) { return ml.LoadXGBoostJSON(bytes.NewReader(model)) },
			parallel: 1,
		})
	}
	// With a real MLServer (scripts/with-mlserver.sh), a remote model too:
	// the model alone is 4 calls of 256 rows in flight, as the batcher's
	// default for a server.
	if url := os.Getenv("STREAMER_MLSERVER_GRPC"); url != "" {
		benches = append(benches, bench{
			name:  "kserve-grpc",
			model: fmt.Sprintf("{type: kserve, url: %q, name: xgb-binary}", url),
			load: func() (ml.Model, error) {
				return ml.NewKServe(context.Background(), ml.KServeOptions{URL: url, Model: "xgb-binary", Features: 6, Outputs: 1})
			},
			parallel: 2,
		})
	}
	for _, bm := range benches {
		b.Run(bm.name+"/model-only", func(b *testing.B) {
			m, err := bm.load()
			if err != nil {
				b.Fatal(err)
			}
			// The same feature values as the pipeline's records.
			rows := make([]float32, 0, 256*6)
			for i := range 256 {
				for _, mod := range featureMods {
					rows = append(rows, float32(i%mod-40))
				}
			}
			b.SetParallelism(bm.parallel)
			b.RunParallel(func(pb *testing.PB) {
				out := make([]float64, 256)
				for pb.Next() {
					if err := m.Predict(context.Background(), rows, out); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N*256)/b.Elapsed().Seconds(), "records/s")
		})
		b.Run(bm.name+"/pipeline", func(b *testing.B) {
			top, err := topology.Compile("predict.yaml", []byte(strings.Replace(predictTopology, "MODEL", bm.model, 1)), bm.files)
			if err != nil {
				b.Fatal(err)
			}
			in := make([]*kgo.Record, 256)
			for i := range in {
				in[i] = &kgo.Record{Topic: "events", Key: []byte(fmt.Sprint(i)), Offset: int64(i),
					Value: fmt.Appendf(nil, `{"id":%d,"a":%d,"b":%d,"c":%d,"d":%d,"e":%d,"f":%d,"note":"some text the model does not read"}`,
						i, i%featureMods[0]-40, i%featureMods[1]-40, i%featureMods[2]-40, i%featureMods[3]-40, i%featureMods[4]-40, i%featureMods[5]-40)}
			}
			// One goroutine per partition's Task, as the engine runs a
			// poll's partitions.
			const partitions = 8
			per := (b.N + partitions - 1) / partitions
			var wg sync.WaitGroup
			b.ResetTimer()
			for w := range partitions {
				wg.Add(1)
				go func() {
					defer wg.Done()
					task, err := engine.NewTask(top, "events", int32(w), engine.TaskOptions{Logger: discard})
					if err != nil {
						b.Error(err)
						return
					}
					defer task.Close()
					emit := func(*kgo.Record) {}
					for range per {
						if err := task.Process(context.Background(), in, emit); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.ReportMetric(float64(per*partitions*len(in))/b.Elapsed().Seconds(), "records/s")
		})
	}
}

var featureMods = [6]int{97, 89, 83, 79, 73, 71}

const predictTopology = `
name: bench-predict
datasets:
  events: {topic: events}
  scored: {topic: scored}
pipes:
  score:
    from: events
    to: scored
    predict:
      model: MODEL
      features: [{expr: a}, {expr: b}, {expr: c}, {expr: d}, {expr: e}, {expr: f}]
      output: [score]
`

// syntheticXGBoost writes an XGBoost JSON model of full binary trees with
// random splits, for benchmarks.
func syntheticXGBoost(trees, depth, features int) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	type tree struct {
		Left        []int     `json:"left_children"`
		Right       []int     `json:"right_children"`
		Index       []int     `json:"split_indices"`
		Conditions  []float32 `json:"split_conditions"`
		DefaultLeft []int     `json:"default_left"`
	}
	var ts []tree
	var info []int
	nodes := 1<<(depth+1) - 1
	for range trees {
		var t tree
		for n := range nodes {
			if n < nodes/2 {
				t.Left, t.Right = append(t.Left, 2*n+1), append(t.Right, 2*n+2)
				t.Index = append(t.Index, rng.IntN(features))
				t.Conditions = append(t.Conditions, float32(rng.IntN(80)-40))
			} else {
				t.Left, t.Right = append(t.Left, -1), append(t.Right, -1)
				t.Index = append(t.Index, 0)
				t.Conditions = append(t.Conditions, float32(rng.NormFloat64()*0.1))
			}
			t.DefaultLeft = append(t.DefaultLeft, rng.IntN(2))
		}
		ts = append(ts, t)
		info = append(info, 0)
	}
	m := map[string]any{"learner": map[string]any{
		"learner_model_param": map[string]any{"base_score": "0.5", "num_class": "0", "num_feature": fmt.Sprint(features)},
		"objective":           map[string]any{"name": "binary:logistic"},
		"gradient_booster":    map[string]any{"name": "gbtree", "model": map[string]any{"trees": ts, "tree_info": info}},
	}}
	out, _ := json.Marshal(m)
	return out
}
