package pipes_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

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
	return cfg.New(&pipes.Env{Pipe: "score", FS: os.DirFS("../ml/testdata"),
		Inputs: []pipes.Port{{Dataset: "in", Schema: schema}}, Outputs: []pipes.Port{{Dataset: "out"}}})
}

const predictConf = `
model: {type: xgboost, path: xgb-binary.json}
features: [{expr: f0}, {expr: f1}, {expr: f2}, {expr: f3}, {expr: f4}, {expr: f5}]
output: [score]
`

// TestPredictMatchesXGBoost runs the held-out rows through the pipe, as
// records whose fields are the features (null where missing), and compares
// the scores with the xgboost library's.
func TestPredictMatchesXGBoost(t *testing.T) {
	p, err := buildPredict(t, predictConf, nil)
	if err != nil {
		t.Fatal(err)
	}
	var want struct {
		Features    [][]*float64 `json:"features"`
		Predictions []float64    `json:"predictions"`
	}
	b, _ := os.ReadFile("../ml/testdata/xgb-binary-expected.json")
	if err := json.Unmarshal(b, &want); err != nil {
		t.Fatal(err)
	}
	batch := &pipes.Batch{}
	for _, row := range want.Features {
		v := map[string]any{"id": len(batch.Records)}
		for i, x := range row {
			name := "f" + string(rune('0'+i))
			if x == nil {
				v[name] = nil
			} else {
				v[name] = *x
			}
		}
		batch.Records = append(batch.Records, &pipes.Record{Value: v})
	}
	batch.Records = append(batch.Records, &pipes.Record{Value: map[string]any{"f0": "oops"}})
	out := pipes.NewOutput(1)
	if err := p.Process(context.Background(), batch, out); err != nil {
		t.Fatal(err)
	}
	got := out.Records(0)
	if len(got) != len(want.Predictions) || len(out.Failures()) != 1 {
		t.Fatalf("%d scored, %d failed", len(got), len(out.Failures()))
	}
	for i, r := range got {
		s := r.Value.(map[string]any)["score"].(float64)
		if math.Abs(s-want.Predictions[i]) > 1e-5 {
			t.Fatalf("row %d: %v, xgboost says %v", i, s, want.Predictions[i])
		}
	}
	if !strings.Contains(out.Failures()[0].Err.Error(), "is not a number") {
		t.Errorf("failure: %v", out.Failures()[0].Err)
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
	}
	for _, tt := range tests {
		_, err := buildPredict(t, tt.conf, schema)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v, want %q", err, tt.want)
		}
	}
}
