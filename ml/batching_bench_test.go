package ml_test

import (
	"context"
	"fmt"
	"os"
	"testing"

	"github.com/streamerio/streamer/ml"
)

// benchModels are the in-process models the batching benchmark scores with;
// onnx_test.go adds ONNX Runtime's when the library is present.
var benchModels = []struct {
	name string
	load func(tb testing.TB) ml.Model
}{
	{"xgboost", func(tb testing.TB) ml.Model { return loadFile(tb, "testdata/xgb-binary.json", xgb) }},
	{"lightgbm", func(tb testing.TB) ml.Model { return loadFile(tb, "testdata/lgb-binary.txt", lgb) }},
}

func xgb(f *os.File) (ml.Model, error) { return ml.LoadXGBoostJSON(f) }
func lgb(f *os.File) (ml.Model, error) { return ml.LoadLightGBMText(f) }

func loadFile(tb testing.TB, path string, load func(*os.File) (ml.Model, error)) ml.Model {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	m, err := load(f)
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// BenchmarkBatching compares scoring one record per model call with
// micro-batches of 256, for each in-process model: called directly on one
// goroutine, and through a Batcher from one caller per core (as a
// replica's partitions call it). rows/s is the figure to compare.
//
//	go test ./ml/ -run '^$' -bench Batching
func BenchmarkBatching(b *testing.B) {
	for _, bm := range benchModels {
		m := bm.load(b)
		nf := m.NumFeatures()
		rows := make([]float32, 256*nf)
		for i := range rows {
			rows[i] = float32(i%13)/7 - 0.8
		}
		for _, n := range []int{1, 256} {
			b.Run(fmt.Sprintf("%s/direct/rows=%d", bm.name, n), func(b *testing.B) {
				out := make([]float64, n*m.NumOutputs())
				for b.Loop() {
					if err := m.Predict(context.Background(), rows[:n*nf], out); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
			})
			b.Run(fmt.Sprintf("%s/batcher/rows=%d", bm.name, n), func(b *testing.B) {
				bt := ml.NewBatcher(m, ml.BatchOptions{})
				defer bt.Close()
				b.RunParallel(func(pb *testing.PB) {
					out := make([]float64, n*m.NumOutputs())
					for pb.Next() {
						if err := bt.Predict(context.Background(), rows[:n*nf], out); err != nil {
							b.Error(err)
							return
						}
					}
				})
				b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "rows/s")
			})
		}
	}
}
