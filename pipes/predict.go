package pipes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sync"

	"github.com/streamerio/streamer/ml"
)

// PredictConfig configures the predict pipe.
type PredictConfig struct {
	Model    ModelConfig     `yaml:"model" required:"true" doc:"The model to score with, in-process."`
	Features []FeatureConfig `yaml:"features" required:"true" doc:"The model's input features, in its order: each an expression over the record, with a default for missing values."`
	Output   []Field         `yaml:"output" required:"true" doc:"Field(s) that receive the scores: one for a binary or regression model, one per class otherwise."`
}

// ModelConfig names a model file.
type ModelConfig struct {
	Type string `yaml:"type" required:"true" enum:"xgboost" doc:"Model format: xgboost (JSON, from save_model)."`
	Path Field  `yaml:"path" required:"true" doc:"Model file, relative to the topology file."`
}

// FeatureConfig is one model input.
type FeatureConfig struct {
	Expr    Expr     `yaml:"expr" required:"true" doc:"Numeric expression over the record, such as amount or len(items)."`
	Default *float64 `yaml:"default" doc:"Value when the expression gives null. Without it, null is a missing value, which trees route by their default branch."`
}

func init() {
	MustRegister("predict", Spec{
		Summary: "Scores each record with a model in the pipeline (no network hop) and writes the scores to fields.",
		Example: "model: {type: xgboost, path: models/fraud.json}\nfeatures:\n  - expr: amount\n  - expr: len(items)\n    default: 0\noutput: [fraud_score]",
	}, newPredict)
}

// models caches loaded models by file, so a replica's partition tasks share
// one copy. Models are safe for concurrent use.
var models sync.Map // fs path -> ml.Model

func loadModel(fsys fs.FS, c ModelConfig) (ml.Model, error) {
	if fsys == nil {
		return nil, Errorf(c.Path.Pos, "model %q: no files beside the topology to read it from", c.Path.Name)
	}
	key := fmt.Sprintf("%p:%s", fsys, c.Path.Name)
	if m, ok := models.Load(key); ok {
		return m.(ml.Model), nil
	}
	f, err := fsys.Open(c.Path.Name)
	if err != nil {
		return nil, Errorf(c.Path.Pos, "model: %v", err)
	}
	defer f.Close()
	m, err := ml.LoadXGBoostJSON(f)
	if err != nil {
		return nil, Errorf(c.Path.Pos, "model %q: %v", c.Path.Name, err)
	}
	models.Store(key, m)
	return m, nil
}

type predict struct {
	model    ml.Model
	features []*Program
	defaults []*float64
	outputs  []string
	rows     []float32 // scratch, reused per batch
	scores   []float64
	scored   []*Record
	schema   *Schema
}

func newPredict(c PredictConfig, env *Env) (Pipe, error) {
	m, err := loadModel(env.FS, c.Model)
	if err != nil {
		return nil, err
	}
	p := &predict{model: m}
	var errs []error
	for _, f := range c.Features {
		prog, err := env.Compile(f.Expr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if k := prog.Kind(); k != Any && k != Int32 && k != Int64 && k != Float32 && k != Float64 && k != Bool {
			errs = append(errs, Errorf(f.Expr.Pos, "feature %q is %s; a model needs numbers", f.Expr.Src, k))
		}
		p.features = append(p.features, prog)
		p.defaults = append(p.defaults, f.Default)
	}
	if len(c.Features) != m.NumFeatures() {
		errs = append(errs, Errorf(c.Model.Path.Pos, "model %q takes %d features; %d are given", c.Model.Path.Name, m.NumFeatures(), len(c.Features)))
	}
	if len(c.Output) != m.NumOutputs() {
		errs = append(errs, Errorf(c.Model.Path.Pos, "model %q gives %d scores per record; output names %d fields", c.Model.Path.Name, m.NumOutputs(), len(c.Output)))
	}
	for _, o := range c.Output {
		p.outputs = append(p.outputs, o.Name)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if in := env.InputSchema(); in != nil {
		p.schema = in.Clone()
		for _, o := range p.outputs {
			p.schema.Set(SchemaField{Name: o, Kind: Float64})
		}
	}
	return p, nil
}

// Process scores the whole batch in one call to the model: the batch is the
// micro-batch.
func (p *predict) Process(ctx context.Context, b *Batch, out *Output) error {
	nf := len(p.features)
	p.rows, p.scored = p.rows[:0], p.scored[:0]
next:
	for _, r := range b.Records {
		start := len(p.rows)
		for i, f := range p.features {
			v, err := f.Eval(r)
			if err != nil {
				p.rows = p.rows[:start]
				out.Fail(r, err)
				continue next
			}
			x, err := number(v, p.defaults[i])
			if err != nil {
				p.rows = p.rows[:start]
				out.Fail(r, fmt.Errorf("feature %q: %w", f.Source(), err))
				continue next
			}
			p.rows = append(p.rows, x)
		}
		if _, ok := r.Value.(map[string]any); !ok {
			p.rows = p.rows[:start]
			out.Fail(r, fmt.Errorf("predict needs a record with fields, got %T", r.Value))
			continue
		}
		p.scored = append(p.scored, r)
	}
	if len(p.scored) == 0 {
		return nil
	}
	k := p.model.NumOutputs()
	if cap(p.scores) < len(p.scored)*k {
		p.scores = make([]float64, len(p.scored)*k)
	}
	p.scores = p.scores[:len(p.scored)*k]
	if err := p.model.Predict(ctx, p.rows[:len(p.scored)*nf], p.scores); err != nil {
		return err // the whole batch: the transaction aborts
	}
	for i, r := range p.scored {
		for j, o := range p.outputs {
			SetPath(r.Value, o, p.scores[i*k+j])
		}
		out.Emit(0, r)
	}
	clear(p.scored)
	return nil
}

// number turns a feature value into the model's float32; nil takes the
// default, or is missing (NaN).
func number(v any, def *float64) (float32, error) {
	switch x := v.(type) {
	case nil:
		if def != nil {
			return float32(*def), nil
		}
		return float32(math.NaN()), nil
	case float64:
		return float32(x), nil
	case float32:
		return x, nil
	case int:
		return float32(x), nil
	case int32:
		return float32(x), nil
	case int64:
		return float32(x), nil
	case bool:
		if x {
			return 1, nil
		}
		return 0, nil
	}
	return 0, fmt.Errorf("%T is not a number", v)
}

func (p *predict) OutputSchema(int) *Schema { return p.schema }

func (p *predict) UsedFields() ([]string, bool) { return usedFields(p.features, p.outputs...) }

var (
	_ SchemaDeriver = (*predict)(nil)
	_ FieldUser     = (*predict)(nil)
)
