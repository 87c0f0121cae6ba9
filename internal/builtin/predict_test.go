package builtin_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/internal/builtin"
	"github.com/streamerio/streamer/pipes"
)

func buildPredict(t *testing.T, conf string, schema *pipes.Schema) (pipes.Pipe, error) {
	t.Helper()
	typ, _ := pipes.Lookup("predict")
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := typ.Decode(n.Content[0])
	if len(errs) > 0 {
		return nil, errs[0]
	}
	return cfg.New(&pipes.Env{Pipe: "score", FS: os.DirFS("../../ml/testdata"),
		Inputs: []pipes.Port{{Dataset: "in", Schema: schema}}, Outputs: []pipes.Port{{Dataset: "out"}}})
}

const predictConf = `
model: {type: xgboost, path: xgb-binary.json}
features: [{expr: f0}, {expr: f1}, {expr: f2}, {expr: f3}, {expr: f4}, {expr: f5}]
output: [score]
`

// TestPredictMatchesTheLibraries runs the held-out rows of models trained
// by the real libraries through the pipe, as records whose fields are the
// features (absent where missing), and compares the scores with the
// libraries' own. A record whose feature is not a number fails alone.
func TestPredictMatchesTheLibraries(t *testing.T) {
	for _, tt := range []struct{ model, expected string }{
		{"{type: xgboost, path: xgb-binary.json}", "xgb-binary-expected.json"},
		{"{type: lightgbm, path: lgb-binary.txt}", "lgb-binary-expected.json"},
		{"{type: onnx, path: onnx-binary.onnx}", "onnx-binary-expected.json"},
	} {
		t.Run(tt.expected, func(t *testing.T) {
			if strings.Contains(tt.model, "onnx") && os.Getenv("STREAMER_ONNXRUNTIME_LIB") == "" {
				if os.Getenv("STREAMER_REQUIRE_ONNX") == "1" {
					t.Fatal("STREAMER_REQUIRE_ONNX=1 but STREAMER_ONNXRUNTIME_LIB is unset")
				}
				t.Skip("no ONNX Runtime: set STREAMER_ONNXRUNTIME_LIB=$(scripts/ml/onnxruntime.sh)")
			}
			p, err := buildPredict(t, strings.Replace(predictConf, "{type: xgboost, path: xgb-binary.json}", tt.model, 1), nil)
			if err != nil {
				t.Fatal(err)
			}
			var want struct {
				Features    [][]*float64 `json:"features"`
				Predictions []float64    `json:"predictions"`
			}
			b, _ := os.ReadFile("../../ml/testdata/" + tt.expected)
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			batch := &pipes.Batch{}
			for _, row := range want.Features {
				v := map[string]any{}
				for i, x := range row {
					if x != nil {
						v[fmt.Sprintf("f%d", i)] = *x
					}
				}
				batch.Records = append(batch.Records, &pipes.Record{Value: v})
			}
			batch.Records = append(batch.Records, &pipes.Record{Value: map[string]any{"f0": "oops"}})
			out := pipes.NewOutput(1)
			if err := p.Process(context.Background(), batch, out); err != nil {
				t.Fatal(err)
			}
			if len(out.Records(0)) != len(want.Predictions) || len(out.Failures()) != 1 {
				t.Fatalf("%d scored of %d, %d failed", len(out.Records(0)), len(want.Predictions), len(out.Failures()))
			}
			for i, r := range out.Records(0) {
				if s := r.Value.(map[string]any)["score"].(float64); math.Abs(s-want.Predictions[i]) > 1e-5 {
					t.Fatalf("row %d: %v, the library says %v", i, s, want.Predictions[i])
				}
			}
			if !strings.Contains(out.Failures()[0].Err.Error(), "is not a number") {
				t.Errorf("failure: %v", out.Failures()[0].Err)
			}
		})
	}
}

func TestPredictValidation(t *testing.T) {
	schema := &pipes.Schema{Fields: []pipes.SchemaField{{Name: "f0", Kind: pipes.Float64}, {Name: "name", Kind: pipes.String}}}
	tests := []struct{ conf, want string }{
		{strings.Replace(predictConf, "{expr: f5}", "{expr: f5}, {expr: f0}", 1), "takes 6 features; 7 are given"},
		{strings.Replace(predictConf, "[score]", "[a, b]", 1), "gives 1 scores per record; output names 2 fields"},
		{strings.Replace(predictConf, "xgb-binary.json", "nope.json", 1), "nope.json"},
		{strings.Replace(predictConf, "{expr: f1}", "{expr: name}", 1), `feature "name" is string`},
		{strings.Replace(predictConf, "{expr: f1}", "{expr: nmae}", 1), `unknown name nmae (did you mean "name"?)`},
		{strings.Replace(predictConf, "{expr: f1}", "{expr: f0, type: bool}", 1), `feature "f0" is float64; its type is bool`},
		{predictConf + "timeout: 3s\nretries: 2\n", "could outlast the transaction timeout"},
		{predictConf + "batch: {max_rows: -1}\n", "must not be negative"},
		{"model: {type: xgboost}\nfeatures: [{expr: f0}]\noutput: [s]\n", "needs a path"},
		{"model: {type: kserve, url: 'http://127.0.0.1:1', name: m, token: abc123}\nfeatures: [{expr: f0}]\noutput: [s]\n", "token: give a reference, ${env:NAME} or ${file:/path}, not the token itself"},
		{"model: {type: kserve, url: 'http://127.0.0.1:1', name: m, token: 'x${env:T}'}\nfeatures: [{expr: f0}]\noutput: [s]\n", "token: give a reference"},
	}
	for _, tt := range tests {
		_, err := buildPredict(t, tt.conf, schema)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v, want %q", err, tt.want)
		}
	}
}

// flakyModel scores a row as its first feature; it rejects rows whose
// first feature is negative, and is unreachable while down is set.
type flakyModel struct{ down bool }

func (m *flakyModel) NumFeatures() int { return 1 }
func (m *flakyModel) NumOutputs() int  { return 1 }
func (m *flakyModel) Predict(_ context.Context, rows []float32, out []float64) error {
	if m.down {
		return retryable{errors.New("connection refused")}
	}
	for i, v := range rows {
		if v < 0 {
			return fmt.Errorf("negative input in row %d", i)
		}
		out[i] = float64(v)
	}
	return nil
}

type retryable struct{ error }

func (retryable) Retryable() bool { return true }

// TestPredictFailures checks what happens to records when the model
// rejects some of them, and when it cannot be reached.
func TestPredictFailures(t *testing.T) {
	for _, tt := range []struct {
		name, extra string
		down        bool
		ids         []float64
		scored      []float64 // ids emitted with their score
		failed      int
		err         error
	}{
		{name: "rejected records fail alone", ids: []float64{1, -2, 3, -4, 5}, scored: []float64{1, 3, 5}, failed: 2},
		{name: "unreachable model pauses", down: true, ids: []float64{1, 2}, err: pipes.ErrUnavailable},
		{name: "unreachable model fails records with on_error", extra: "on_unavailable: on_error\n", down: true, ids: []float64{1, 2}, failed: 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			builtin.InjectModel("xgboost", fsys, "flaky.json", &flakyModel{down: tt.down})
			typ, _ := pipes.Lookup("predict")
			var n yaml.Node
			conf := "model: {type: xgboost, path: flaky.json}\nfeatures: [{expr: id}]\noutput: [score]\nretries: 1\ntimeout: 100ms\n" + tt.extra
			if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
				t.Fatal(err)
			}
			cfg, errs := typ.Decode(n.Content[0])
			if len(errs) > 0 {
				t.Fatal(errs)
			}
			p, err := cfg.New(&pipes.Env{Pipe: tt.name, FS: fsys, Inputs: []pipes.Port{{Dataset: "in"}}, Outputs: []pipes.Port{{Dataset: "out"}}})
			if err != nil {
				t.Fatal(err)
			}
			b := &pipes.Batch{}
			for _, id := range tt.ids {
				b.Records = append(b.Records, &pipes.Record{Value: map[string]any{"id": id}})
			}
			out := pipes.NewOutput(1)
			err = p.Process(context.Background(), b, out)
			if !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
				t.Fatalf("Process: %v, want %v", err, tt.err)
			}
			var scored []float64
			for _, r := range out.Records(0) {
				v := r.Value.(map[string]any)
				if v["score"] != v["id"] {
					t.Errorf("record %v scored %v", v["id"], v["score"])
				}
				scored = append(scored, v["id"].(float64))
			}
			if fmt.Sprint(scored) != fmt.Sprint(tt.scored) && len(scored)+len(tt.scored) > 0 {
				t.Errorf("scored %v, want %v", scored, tt.scored)
			}
			if len(out.Failures()) != tt.failed {
				t.Errorf("%d failed, want %d: %v", len(out.Failures()), tt.failed, out.Failures())
			}
		})
	}
}
