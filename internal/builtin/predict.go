package builtin

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"sync"
	"time"

	"github.com/streamerio/streamer/ml"
	"github.com/streamerio/streamer/pipes"
)

// PredictConfig configures the predict pipe.
type PredictConfig struct {
	Model    ModelConfig     `yaml:"model" required:"true" doc:"The model to score with: a file run in-process, or a model server."`
	Features []FeatureConfig `yaml:"features" required:"true" doc:"The model's input features, in its order: each an expression over the record, with a default for missing values."`
	Output   []pipes.Field   `yaml:"output" required:"true" doc:"Field(s) that receive the scores: one for a binary or regression model, one per class otherwise."`
	Batch    BatchConfig     `yaml:"batch" doc:"Micro-batching, shared by the partitions of a replica."`
	Timeout  time.Duration   `yaml:"timeout" default:"2s" doc:"Longest one model call may take before it counts as failed."`
	Retries  int             `yaml:"retries" default:"2" doc:"Retries of a model call that failed for a reason that may pass (timeout, connection, 5xx), with backoff. (retries+1) x timeout must stay under the transaction timeout (10s)."`
	// Unavailable is what happens to records whose model stays unreachable
	// after the retries, or whose breaker is open.
	Unavailable string `yaml:"on_unavailable" enum:"pause,on_error" default:"pause" doc:"When the model stays unreachable after the retries: pause (abort the transaction, wait, and score the same records again; nothing is lost) or on_error (hand the records to the pipe's on_error policy, such as the dead-letter dataset)."`
}

// ModelConfig says where a model lives.
type ModelConfig struct {
	Type string      `yaml:"type" required:"true" enum:"xgboost,lightgbm,onnx,kserve" doc:"Model format: xgboost (JSON, from save_model) or lightgbm (text, from save_model), both scored in pure Go; onnx, scored by ONNX Runtime (needs a cgo build and STREAMER_ONNXRUNTIME_LIB); or kserve, a model on an inference server speaking the Open Inference Protocol (KServe V2), such as MLServer or Triton."`
	Path pipes.Field `yaml:"path" doc:"xgboost, lightgbm, onnx: the model file, relative to the topology file."`
	URL  string      `yaml:"url" doc:"kserve: the server, http://host:port for REST or grpc://host:port for gRPC."`
	Name string      `yaml:"name" doc:"kserve: the model's name on the server."`
	// Version pins a kserve model version.
	Version string `yaml:"version" doc:"kserve: the model version. Default: the server's choice."`
	// Output names the output tensor to read.
	Token  string    `yaml:"token" doc:"kserve: a bearer token sent with every request, as a reference to it: ${env:NAME} or ${file:/path} (a Kubernetes Secret's mounted key), read when the replica connects. A token written out in the file is refused."`
	Output string    `yaml:"output" doc:"onnx, kserve: the model output holding the scores. Default: the only float output, or the one named like prob (onnx); the first declared output (kserve)."`
	Pos    pipes.Pos `yaml:"-" spec:"pos"`
}

// BatchConfig configures micro-batching.
type BatchConfig struct {
	MaxRows  int           `yaml:"max_rows" default:"256" doc:"Most records scored in one model call."`
	Linger   time.Duration `yaml:"linger" default:"2ms" doc:"How long a call that is not full waits for records from other partitions."`
	InFlight int           `yaml:"in_flight" doc:"Most model calls at once; when all are busy the replica stops polling. Default: one per core in-process, 4 for a server."`
}

// FeatureConfig is one model input.
type FeatureConfig struct {
	Name    string     `yaml:"name" doc:"The feature's name, for errors and docs. Default: the expression."`
	Expr    pipes.Expr `yaml:"expr" required:"true" doc:"Numeric expression over the record, such as amount or len(items)."`
	Type    string     `yaml:"type" enum:"number,integer,bool" default:"number" doc:"What the expression must give: number (int or float), integer, or bool (true is 1)."`
	Default *float64   `yaml:"default" doc:"Value when the expression gives null. Without it, null is a missing value (NaN), which trees route by their default branch."`
}

func init() {
	pipes.MustRegister("predict", pipes.Spec{
		Summary: "Scores records with a model inside the pipeline, in micro-batches shared by the replica's partitions, and writes the scores to fields.",
		Example: "model: {type: xgboost, path: models/fraud.json}\nfeatures:\n  - expr: amount\n  - expr: len(items)\n    default: 0\noutput: [fraud_score]\nbatch: {max_rows: 256, linger: 2ms}",
	}, newPredict)
}

// Models and batchers are per process: a replica's partition tasks share
// one copy of a model, and one batcher per model and batch settings, so
// that small partitions still fill batches. Both are safe for concurrent
// use.
var (
	models   sync.Map // model key -> ml.Model
	batchers sync.Map // model key + settings -> *ml.Batcher
)

// loadModel loads (once per process) the model c names.
func loadModel(fsys fs.FS, c ModelConfig, features, outputs int) (ml.Model, string, error) {
	if c.Type == "kserve" {
		key := fmt.Sprintf("kserve:%s:%s:%s:%s:%d:%d", c.URL, c.Name, c.Version, c.Output, features, outputs)
		if m, ok := models.Load(key); ok {
			return m.(ml.Model), key, nil
		}
		m, err := newRemoteModel(c, features, outputs)
		if err != nil {
			return nil, "", err
		}
		got, _ := models.LoadOrStore(key, m)
		return got.(ml.Model), key, nil
	}
	if c.Path.Name == "" {
		return nil, "", pipes.Errorf(c.Pos, "model: a %s model needs a path", c.Type)
	}
	if fsys == nil {
		return nil, "", pipes.Errorf(c.Path.Pos, "model %q: no files beside the topology to read it from", c.Path.Name)
	}
	key := fmt.Sprintf("%s:%p:%s:%s", c.Type, fsys, c.Path.Name, c.Output)
	if m, ok := models.Load(key); ok {
		return m.(ml.Model), key, nil
	}
	data, err := fs.ReadFile(fsys, c.Path.Name)
	if err != nil {
		return nil, "", pipes.Errorf(c.Path.Pos, "model: %v", err)
	}
	var m ml.Model
	switch c.Type {
	case "xgboost":
		m, err = ml.LoadXGBoostJSON(bytes.NewReader(data))
	case "lightgbm":
		m, err = ml.LoadLightGBMText(bytes.NewReader(data))
	case "onnx":
		// The feature count is checked against the input signature by the
		// constructor, with the declared features' position.
		m, err = ml.LoadONNXData(c.Path.Name, data, ml.ONNXOptions{Output: c.Output})
	default:
		err = fmt.Errorf("model type %q is not supported", c.Type)
	}
	if err != nil {
		return nil, "", pipes.Errorf(c.Path.Pos, "model %q: %v", c.Path.Name, err)
	}
	got, _ := models.LoadOrStore(key, m)
	return got.(ml.Model), key, nil
}

type predict struct {
	model       *ml.Batcher
	name        string
	features    []*pipes.Program
	defaults    []*float64
	outputs     []string
	unavailable string
	rows        []float32 // scratch, reused per batch
	scores      []float64
	scored      []*pipes.Record
	schema      *pipes.Schema
}

func newPredict(c PredictConfig, env *pipes.Env) (pipes.Pipe, error) {
	m, key, err := loadModel(env.FS, c.Model, len(c.Features), len(c.Output))
	if err != nil {
		return nil, err
	}
	p := &predict{name: env.Pipe, unavailable: c.Unavailable}
	label := c.Model.Path.Name
	if label == "" {
		label = c.Model.Name
	}
	var errs []error
	for _, f := range c.Features {
		prog, err := env.Compile(f.Expr)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := checkFeatureKind(f, prog.Kind()); err != nil {
			errs = append(errs, err)
		}
		p.features = append(p.features, prog)
		p.defaults = append(p.defaults, f.Default)
	}
	if len(c.Features) != m.NumFeatures() {
		sig := ""
		if o, ok := m.(interface{ Input() ml.ONNXTensor }); ok {
			sig = fmt.Sprintf(" (its input is %s)", o.Input())
		}
		errs = append(errs, pipes.Errorf(c.Model.Pos, "model %q takes %d features%s; %d are given", label, m.NumFeatures(), sig, len(c.Features)))
	}
	if len(c.Output) != m.NumOutputs() {
		errs = append(errs, pipes.Errorf(c.Model.Pos, "model %q gives %d scores per record; output names %d fields", label, m.NumOutputs(), len(c.Output)))
	}
	for _, o := range c.Output {
		p.outputs = append(p.outputs, o.Name)
	}
	if c.Batch.MaxRows < 0 || c.Batch.InFlight < 0 || c.Batch.Linger < 0 {
		errs = append(errs, pipes.Errorf(c.Model.Pos, "batch settings must not be negative"))
	}
	if c.Timeout <= 0 || c.Retries < 0 {
		errs = append(errs, pipes.Errorf(c.Model.Pos, "timeout must be positive and retries at least 0"))
	} else if worst := time.Duration(c.Retries+1) * c.Timeout; worst >= 8*time.Second {
		errs = append(errs, pipes.Errorf(c.Model.Pos, "(retries+1) x timeout is %v: a call could outlast the transaction timeout (10s); lower them", worst))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if in := env.InputSchema(); in != nil {
		p.schema = in.Clone()
		for _, o := range p.outputs {
			p.schema.Set(pipes.SchemaField{Name: o, Kind: pipes.Float64})
		}
	}
	if env.Partition < 0 {
		return p, nil // validating: no batcher needed
	}
	opts := ml.BatchOptions{MaxRows: c.Batch.MaxRows, Linger: c.Batch.Linger, InFlight: c.Batch.InFlight,
		Timeout: c.Timeout, Retries: c.Retries, Name: env.Pipe}
	if c.Retries == 0 {
		opts.Retries = -1
	}
	for _, h := range env.Hooks {
		if bh, ok := h.(ml.BatchHook); ok {
			opts.Hook = bh
			break
		}
	}
	bkey := fmt.Sprintf("%s|%s|%d|%v|%d|%v|%d", key, env.Pipe, opts.MaxRows, opts.Linger, opts.InFlight, opts.Timeout, opts.Retries)
	b, ok := batchers.Load(bkey)
	if !ok {
		b, _ = batchers.LoadOrStore(bkey, ml.NewBatcher(m, opts))
	}
	p.model = b.(*ml.Batcher)
	return p, nil
}

// checkFeatureKind checks a feature expression's static kind against its
// declared type, where the schema tells it.
func checkFeatureKind(f FeatureConfig, k pipes.Kind) error {
	ok := k == pipes.Any
	switch f.Type {
	case "integer":
		ok = ok || k == pipes.Int32 || k == pipes.Int64
	case "bool":
		ok = ok || k == pipes.Bool
	default:
		ok = ok || k == pipes.Int32 || k == pipes.Int64 || k == pipes.Float32 || k == pipes.Float64 || k == pipes.Bool
	}
	if !ok {
		return pipes.Errorf(f.Expr.Pos, "feature %q is %s; its type is %s", f.Expr.Src, k, f.Type)
	}
	return nil
}

// Process scores the batch's records through the shared batcher. Records
// whose features cannot be computed, or that the model rejects, are failed
// one by one; an unreachable model pauses the replica (or fails the
// records, with on_unavailable: on_error).
func (p *predict) Process(ctx context.Context, b *pipes.Batch, out *pipes.Output) error {
	nf := len(p.features)
	p.rows, p.scored = p.rows[:0], p.scored[:0]
next:
	for _, r := range b.Records {
		if _, ok := r.Value.(map[string]any); !ok {
			out.Fail(r, fmt.Errorf("predict needs a record with fields, got %T", r.Value))
			continue
		}
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
		p.scored = append(p.scored, r)
	}
	if len(p.scored) == 0 {
		return nil
	}
	defer clear(p.scored)
	k := p.model.NumOutputs()
	if cap(p.scores) < len(p.scored)*k {
		p.scores = make([]float64, len(p.scored)*k)
	}
	p.scores = p.scores[:len(p.scored)*k]
	err := p.model.Predict(ctx, p.rows[:len(p.scored)*nf], p.scores)
	var rowErrs *ml.RowErrors
	switch {
	case err == nil:
	case errors.As(err, &rowErrs):
	case errors.Is(err, ml.ErrUnavailable) && p.unavailable == "pause":
		return fmt.Errorf("%w: %v", pipes.ErrUnavailable, err)
	case errors.Is(err, ml.ErrUnavailable):
		for _, r := range p.scored {
			out.Fail(r, err)
		}
		return nil
	default:
		return err // the context's: the transaction aborts
	}
	for i, r := range p.scored {
		if rowErrs != nil {
			if e, bad := rowErrs.Rows[i]; bad {
				out.Fail(r, fmt.Errorf("model rejected the record: %w", e))
				continue
			}
		}
		for j, o := range p.outputs {
			pipes.SetPath(r.Value, o, p.scores[i*k+j])
		}
		out.Emit(0, r)
	}
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

func (p *predict) OutputSchema(int) *pipes.Schema { return p.schema }

func (p *predict) UsedFields() ([]string, bool) { return pipes.UsedFields(p.features, p.outputs...) }

var (
	_ pipes.SchemaDeriver = (*predict)(nil)
	_ pipes.FieldUser     = (*predict)(nil)
)
