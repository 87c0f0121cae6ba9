package ml_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"github.com/streamerio/streamer/ml"
)

// TestXGBoostMatchesTheLibrary compares streamer's predictions with the
// xgboost library's own, on a held-out set with missing values, for models
// that scripts/ml/train.py trained with the real library.
func TestXGBoostMatchesTheLibrary(t *testing.T) {
	for _, name := range []string{"binary", "regression", "multiclass"} {
		t.Run(name, func(t *testing.T) {
			f, err := os.Open("testdata/xgb-" + name + ".json")
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := ml.LoadXGBoostJSON(f)
			if err != nil {
				t.Fatal(err)
			}
			var want struct {
				Features    [][]*float64 `json:"features"`
				Predictions json.RawMessage
			}
			b, _ := os.ReadFile("testdata/xgb-" + name + "-expected.json")
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			flat := flatPredictions(t, want.Predictions, m.NumOutputs())
			rows := heldOut(want.Features)
			got := make([]float64, len(flat))
			if err := m.Predict(context.Background(), rows, got); err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range got {
				worst = max(worst, math.Abs(got[i]-flat[i]))
			}
			if worst > 1e-5 {
				t.Fatalf("largest difference from xgboost %g, want within 1e-5", worst)
			}
			t.Logf("%d rows, %d scores: largest difference from xgboost %.2g", len(want.Features), len(got), worst)
		})
	}
}

func TestXGBoostRejectsWhatItCannotScore(t *testing.T) {
	for _, tt := range []struct{ model, want string }{
		{`{"learner":{"gradient_booster":{"name":"gblinear"}}}`, "gblinear"},
		{`{"learner":{"learner_model_param":{"base_score":"0.5","num_class":"0","num_feature":"2"},"objective":{"name":"rank:pairwise"},"gradient_booster":{"name":"gbtree"}}}`, "rank:pairwise"},
		{`{"learner":{"learner_model_param":{"base_score":"0.5","num_class":"0","num_feature":"2"},"objective":{"name":"reg:squarederror"},"gradient_booster":{"name":"gbtree","model":{"trees":[{"left_children":[1,-1,-1],"right_children":[2,-1,-1],"split_indices":[5,0,0],"split_conditions":[0,1,2],"default_left":[0,0,0]}],"tree_info":[0]}}}}`, "outside"},
		{`not json`, "xgboost model"},
	} {
		if _, err := ml.LoadXGBoostJSON(strings.NewReader(tt.model)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.model, err, tt.want)
		}
	}
}

// BenchmarkXGBoost scores batches of 256 rows with the binary model.
func BenchmarkXGBoost(b *testing.B) {
	f, _ := os.Open("testdata/xgb-binary.json")
	m, err := ml.LoadXGBoostJSON(f)
	f.Close()
	if err != nil {
		b.Fatal(err)
	}
	const n = 256
	rows := make([]float32, n*m.NumFeatures())
	for i := range rows {
		rows[i] = float32(i%13) / 7
	}
	out := make([]float64, n)
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Predict(context.Background(), rows, out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}
