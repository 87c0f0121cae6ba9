package integration

import (
	"context"
	"encoding/json"
	"math"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/streamerio/streamer/ml"
)

// mlserverURLs are the real MLServer's REST and gRPC addresses, which
// scripts/with-mlserver.sh exports; the test fails without them, since
// `make test` provides them.
func mlserverURLs(t *testing.T) map[string]string {
	t.Helper()
	urls := map[string]string{
		"http": os.Getenv("STREAMER_MLSERVER_HTTP"),
		"grpc": os.Getenv("STREAMER_MLSERVER_GRPC"),
	}
	if urls["http"] == "" || urls["grpc"] == "" {
		t.Fatal("STREAMER_MLSERVER_HTTP and STREAMER_MLSERVER_GRPC are not set: make test starts MLServer (scripts/with-mlserver.sh)")
	}
	return urls
}

// xgbCase is one of the XGBoost models in ml/testdata, with its held-out
// rows and the xgboost library's predictions for them.
type xgbCase struct {
	local   *ml.Ensemble
	rows    []float32 // row-major, NaN where the feature is missing
	want    []float64 // row-major scores
	outputs int
}

func loadXGBCase(t *testing.T, name string) xgbCase {
	t.Helper()
	f, err := os.Open("../ml/testdata/xgb-" + name + ".json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	local, err := ml.LoadXGBoostJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	var exp struct {
		Features    [][]*float64    `json:"features"`
		Predictions json.RawMessage `json:"predictions"`
	}
	b, err := os.ReadFile("../ml/testdata/xgb-" + name + "-expected.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	c := xgbCase{local: local, outputs: local.NumOutputs()}
	for _, r := range exp.Features {
		for _, v := range r {
			if v == nil {
				c.rows = append(c.rows, float32(math.NaN()))
			} else {
				c.rows = append(c.rows, float32(*v))
			}
		}
	}
	if c.outputs == 1 {
		err = json.Unmarshal(exp.Predictions, &c.want)
	} else {
		var rows [][]float64
		err = json.Unmarshal(exp.Predictions, &rows)
		for _, r := range rows {
			c.want = append(c.want, r...)
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// maxDiff is the largest absolute difference between two score vectors.
func maxDiff(t *testing.T, got, want []float64) float64 {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d scores, want %d", len(got), len(want))
	}
	worst := 0.0
	for i := range got {
		if math.IsNaN(got[i]) {
			t.Fatalf("score %d is NaN", i)
		}
		worst = max(worst, math.Abs(got[i]-want[i]))
	}
	return worst
}

// TestMLServerMatchesLocalXGBoost scores the held-out rows, missing values
// included, of real XGBoost models on a real MLServer over REST and gRPC,
// in one request and in uneven batches, and checks the scores against
// streamer's own evaluator and the xgboost library's predictions.
func TestMLServerMatchesLocalXGBoost(t *testing.T) {
	requireIntegration(t)
	urls := mlserverURLs(t)
	ctx := context.Background()
	for _, name := range []string{"binary", "multiclass", "regression"} {
		c := loadXGBCase(t, name)
		local := make([]float64, len(c.want))
		if err := c.local.Predict(ctx, c.rows, local); err != nil {
			t.Fatal(err)
		}
		for _, proto := range []string{"http", "grpc"} {
			t.Run(name+"/"+proto, func(t *testing.T) {
				// Features and outputs come from the server's metadata,
				// and must agree with the local model's.
				m, err := ml.NewKServe(ctx, ml.KServeOptions{URL: urls[proto], Model: "xgb-" + name, Version: "1", Timeout: 30 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer m.Close()
				if m.NumFeatures() != c.local.NumFeatures() || m.NumOutputs() != c.outputs {
					t.Fatalf("server model has %d features, %d outputs; the local one %d, %d", m.NumFeatures(), m.NumOutputs(), c.local.NumFeatures(), c.outputs)
				}
				n := len(c.want) / c.outputs
				f := m.NumFeatures()

				whole := make([]float64, len(c.want))
				if err := m.Predict(ctx, c.rows, whole); err != nil {
					t.Fatal(err)
				}
				// Uneven batches: every request of another size and offset.
				batched := make([]float64, len(c.want))
				for lo, size := 0, 1; lo < n; lo, size = lo+size, size%37+7 {
					hi := min(n, lo+size)
					if err := m.Predict(ctx, c.rows[lo*f:hi*f], batched[lo*c.outputs:hi*c.outputs]); err != nil {
						t.Fatalf("rows %d-%d: %v", lo, hi, err)
					}
				}
				for _, cmp := range []struct {
					what      string
					got, want []float64
				}{
					{"one request vs xgboost", whole, c.want},
					{"one request vs streamer's evaluator", whole, local},
					{"batches vs xgboost", batched, c.want},
				} {
					d := maxDiff(t, cmp.got, cmp.want)
					if d > 1e-5 {
						t.Errorf("%s: largest difference %g, want within 1e-5", cmp.what, d)
					}
					t.Logf("%d rows, %s: largest difference %.2g", n, cmp.what, d)
				}
			})
		}
	}
}

// TestMLServerRefusesWhatDoesNotFit checks the client's view of the real
// server's refusals: a model configured with the wrong number of features,
// an unknown model or version (not retryable), and a server that is not
// there (retryable).
func TestMLServerRefusesWhatDoesNotFit(t *testing.T) {
	requireIntegration(t)
	urls := mlserverURLs(t)
	ctx := context.Background()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nobody := lis.Addr().String()
	lis.Close()
	for _, proto := range []string{"http", "grpc"} {
		for _, tt := range []struct {
			name      string
			opts      ml.KServeOptions
			retryable bool
			says      string
		}{
			{"wrong features", ml.KServeOptions{Model: "xgb-binary", Features: 7}, false, "takes 6 features, but the model is configured with 7"},
			{"wrong outputs", ml.KServeOptions{Model: "xgb-multiclass", Outputs: 2}, false, "gives 3 scores per row, but the model is configured with 2"},
			{"unknown model", ml.KServeOptions{Model: "no-such-model"}, false, "not found"},
			{"unknown version", ml.KServeOptions{Model: "xgb-binary", Version: "9"}, false, "not found"},
			{"unknown output", ml.KServeOptions{Model: "xgb-binary", Output: "probabilities"}, false, `no output named "probabilities"`},
			{"no server", ml.KServeOptions{URL: proto + "://" + nobody, Model: "xgb-binary"}, true, ""},
		} {
			t.Run(proto+"/"+tt.name, func(t *testing.T) {
				opts := tt.opts
				if opts.URL == "" {
					opts.URL = urls[proto]
				}
				opts.Timeout = 5 * time.Second
				m, err := ml.NewKServe(ctx, opts)
				if err == nil {
					m.Close()
					t.Fatal("accepted")
				}
				if !strings.Contains(err.Error(), tt.says) || ml.IsRetryable(err) != tt.retryable {
					t.Fatalf("error %q (retryable %v), want one saying %q, retryable %v", err, ml.IsRetryable(err), tt.says, tt.retryable)
				}
				t.Log(err)
			})
		}
	}
}
