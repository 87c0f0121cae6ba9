//go:build cgo

package ml

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// ONNX is a model in the ONNX format, run in-process by ONNX Runtime
// (through cgo and a shared library loaded at run time).
//
// The model takes one float32 input of shape [batch, features] whose batch
// dimension is dynamic, and streamer reads one float output from it:
//
//   - a score tensor [batch] or [batch, 1]: one output per row (regression,
//     or a classifier's margin or probability);
//   - a class-probability tensor [batch, classes], as onnxmltools and
//     skl2onnx (with zipmap disabled) export classifiers. When such an output
//     has two columns and its name holds "prob", the model is a binary
//     classifier and its single output is the probability of class 1, the
//     same convention as the XGBoost evaluator's; otherwise there is one
//     output per column.
//
// Which output is read: ONNXOptions.Output when set, else the only float
// tensor output, else the only one whose name holds "prob" (onnxmltools'
// "probabilities", skl2onnx's "output_probability"). Integer label outputs
// are not read.
//
// Predict runs on the calling goroutine's thread (one intra-op thread unless
// ONNXOptions.Threads says otherwise), so several partitions score in
// parallel without oversubscribing the cores.
type ONNX struct {
	in, out  ONNXTensor
	features int
	cols     int  // columns of the output tensor: 1 for [batch] and [batch, 1]
	binary   bool // the output is [batch, 2] probabilities; report column 1
	double   bool // the output is float64

	mu      sync.RWMutex // Close excludes Predict
	session *ort.DynamicAdvancedSession
	buf     sync.Pool // *[]float32 or *[]float64 output scratch, reused across calls
}

var _ Model = (*ONNX)(nil)

// ONNXOptions configures LoadONNX. The zero value is usable when
// STREAMER_ONNXRUNTIME_LIB is set.
type ONNXOptions struct {
	// Library is the path of ONNX Runtime's shared library
	// (libonnxruntime.so). Empty means env STREAMER_ONNXRUNTIME_LIB.
	// A process loads one library: the first model's wins, and a later
	// model asking for another one fails.
	Library string
	// Output is the name of the output to read. Empty picks it (see ONNX).
	Output string
	// Features, when positive, is the feature count the caller declares.
	// It must match the model's input width, and it supplies that width
	// when the model leaves it dynamic.
	Features int
	// Threads is ONNX Runtime's intra-op thread count per Predict call.
	// 0 means 1: the calling thread does the work, which suits a replica
	// that already scores one partition per core. Larger values help big
	// batches of big models when cores are idle.
	Threads int
}

// ONNXTensor describes one input or output of an ONNX model.
type ONNXTensor struct {
	Name string
	// Shape as the model declares it; -1 marks a dynamic dimension.
	Shape []int64
	// Type is the element type: "float32", "float64", "int64", ...; or the
	// value kind when it is not a tensor ("sequence", "map", ...).
	Type string
}

// String reads like "input" float32[-1 6], or "output_probability" sequence.
func (t ONNXTensor) String() string {
	if t.Shape == nil {
		return fmt.Sprintf("%q %s", t.Name, t.Type)
	}
	return fmt.Sprintf("%q %s%v", t.Name, t.Type, t.Shape)
}

// LibraryEnv is the environment variable that names ONNX Runtime's shared
// library when ONNXOptions.Library is empty.
const LibraryEnv = "STREAMER_ONNXRUNTIME_LIB"

// onnxRuntimeVersion is the ONNX Runtime release whose C API headers
// onnxruntime_go v1.27.0 carries; the library must be that version or newer.
const onnxRuntimeVersion = "1.24.1"

const fetchHint = "set " + LibraryEnv + " to libonnxruntime.so; scripts/ml/onnxruntime.sh fetches it"

// runtimeEnv is the process's ONNX Runtime environment. onnxruntime_go keeps
// one global environment, so it is set up once, by the first LoadONNX that
// succeeds, and never torn down: models may share it at any time.
var runtimeEnv struct {
	sync.Mutex
	lib string // the library loaded, "" until then
}

// initRuntime loads lib and creates the environment, once per process. A
// failed attempt leaves nothing behind, so a later call may try again with
// another path.
func initRuntime(lib string) error {
	if _, err := os.Stat(lib); err != nil {
		return fmt.Errorf("onnx: ONNX Runtime library: %w; %s", err, fetchHint)
	}
	runtimeEnv.Lock()
	defer runtimeEnv.Unlock()
	if runtimeEnv.lib != "" {
		if runtimeEnv.lib != lib {
			return fmt.Errorf("onnx: this process already loaded ONNX Runtime from %s; one process can load only one, so use the same library for every model (asked for %s)", runtimeEnv.lib, lib)
		}
		return nil
	}
	if ort.IsInitialized() {
		// Someone else in the process set onnxruntime_go up: share it.
		runtimeEnv.lib = lib
		return nil
	}
	ort.SetSharedLibraryPath(lib)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		if strings.Contains(err.Error(), "ORT API base") {
			return fmt.Errorf("onnx: %s is too old for streamer, which needs ONNX Runtime %s or newer (%w); %s", lib, onnxRuntimeVersion, err, fetchHint)
		}
		return fmt.Errorf("onnx: loading ONNX Runtime from %s: %w; %s", lib, err, fetchHint)
	}
	runtimeEnv.lib = lib
	return nil
}

// LoadONNX loads the ONNX model at path and checks that streamer can score
// with it (see ONNX for the shapes it takes).
func LoadONNX(path string, opts ONNXOptions) (*ONNX, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("onnx model: %w", err)
	}
	return LoadONNXData(path, data, opts)
}

// LoadONNXData is LoadONNX for a model already read into memory; path
// names it in errors.
func LoadONNXData(path string, data []byte, opts ONNXOptions) (*ONNX, error) {
	lib := opts.Library
	if lib == "" {
		lib = os.Getenv(LibraryEnv)
	}
	if lib == "" {
		return nil, errors.New("onnx: no ONNX Runtime library: " + fetchHint)
	}
	if abs, err := filepath.Abs(lib); err == nil {
		lib = abs // so that two spellings of one path count as one library
	}
	if err := initRuntime(lib); err != nil {
		return nil, err
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("onnx model %s: %w", path, err)
	}
	m := &ONNX{}
	if err := m.checkInput(ins, opts.Features); err != nil {
		return nil, fmt.Errorf("onnx model %s: %w", path, err)
	}
	if err := m.pickOutput(outs, opts.Output); err != nil {
		return nil, fmt.Errorf("onnx model %s: %w", path, err)
	}

	so, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	defer so.Destroy()
	threads := max(1, opts.Threads)
	if err := so.SetIntraOpNumThreads(threads); err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	if err := so.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("onnx: session options: %w", err)
	}
	if threads > 1 {
		// Pool threads that spin between batches burn the cores the
		// other partitions need.
		if err := so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0"); err != nil {
			return nil, fmt.Errorf("onnx: session options: %w", err)
		}
	}
	m.session, err = ort.NewDynamicAdvancedSessionWithONNXData(data, []string{m.in.Name}, []string{m.out.Name}, so)
	if err != nil {
		return nil, fmt.Errorf("onnx model %s: %w", path, err)
	}
	return m, nil
}

// checkInput takes the model's one input: float32 [batch, features] with a
// dynamic batch.
func (m *ONNX) checkInput(ins []ort.InputOutputInfo, declared int) error {
	if len(ins) != 1 {
		names := make([]string, len(ins))
		for i := range ins {
			names[i] = describe(ins[i]).String()
		}
		return fmt.Errorf("it has %d inputs (%s); streamer feeds one float32 tensor [batch, features], so export the model with a single input", len(ins), strings.Join(names, ", "))
	}
	m.in = describe(ins[0])
	in := ins[0]
	if in.OrtValueType != ort.ONNXTypeTensor || in.DataType != ort.TensorElementDataTypeFloat {
		return fmt.Errorf("input %s is not a float32 tensor; export it as one, e.g. FloatTensorType([None, %d])", m.in, max(declared, 1))
	}
	if len(in.Dimensions) != 2 {
		return fmt.Errorf("input %s is not [batch, features]; export it with shape [None, features]", m.in)
	}
	if in.Dimensions[0] > 0 {
		return fmt.Errorf("input %s has a fixed batch of %d; export it with a dynamic batch dimension, shape [None, features]", m.in, in.Dimensions[0])
	}
	m.features = int(in.Dimensions[1])
	switch {
	case m.features > 0 && declared > 0 && declared != m.features:
		return fmt.Errorf("input %s takes %d features, but %d are declared", m.in, m.features, declared)
	case m.features <= 0 && declared <= 0:
		return fmt.Errorf("input %s leaves the feature count dynamic; declare how many features the model takes", m.in)
	case m.features <= 0:
		m.features = declared
	}
	return nil
}

// pickOutput chooses the output to read and its layout.
func (m *ONNX) pickOutput(outs []ort.InputOutputInfo, name string) error {
	all := make([]string, len(outs))
	var floats []ort.InputOutputInfo
	zipmap := false
	for i, o := range outs {
		all[i] = describe(o).String()
		switch {
		case name != "" && o.Name != name:
		case o.OrtValueType == ort.ONNXTypeTensor && (o.DataType == ort.TensorElementDataTypeFloat || o.DataType == ort.TensorElementDataTypeDouble):
			floats = append(floats, o)
		case o.OrtValueType == ort.ONNXTypeSequence || o.OrtValueType == ort.ONNXTypeMap:
			zipmap = true
		}
	}
	list := strings.Join(all, ", ")
	if len(floats) > 1 {
		var probs []ort.InputOutputInfo
		for _, o := range floats {
			if strings.Contains(strings.ToLower(o.Name), "prob") {
				probs = append(probs, o)
			}
		}
		if len(probs) != 1 {
			return fmt.Errorf("it has several float outputs (%s); name the one to read", list)
		}
		floats = probs
	}
	if len(floats) == 0 {
		switch {
		case name != "" && zipmap:
			return fmt.Errorf("output %q is a sequence of maps (a ZipMap), not a tensor; export the classifier without ZipMap (skl2onnx: options={'zipmap': False})", name)
		case name != "":
			return fmt.Errorf("it has no float tensor output %q; its outputs are %s", name, list)
		case zipmap:
			return fmt.Errorf("its probabilities are a sequence of maps (a ZipMap), not a tensor; export the classifier without ZipMap (skl2onnx: options={'zipmap': False}); its outputs are %s", list)
		default:
			return fmt.Errorf("it has no float tensor output to read; its outputs are %s", list)
		}
	}
	o := floats[0]
	m.out = describe(o)
	m.double = o.DataType == ort.TensorElementDataTypeDouble
	d := o.Dimensions
	switch {
	case len(d) == 1 && d[0] <= 0:
		m.cols = 1
	case len(d) == 2 && d[0] <= 0 && d[1] > 0:
		m.cols = int(d[1])
	default:
		return fmt.Errorf("output %s is not [batch] or [batch, n] with a dynamic batch and a fixed n", m.out)
	}
	m.binary = m.cols == 2 && strings.Contains(strings.ToLower(o.Name), "prob")
	return nil
}

func (m *ONNX) NumFeatures() int { return m.features }

// NumOutputs is 1 for a score or a binary classifier's probability of class
// 1, and the number of columns otherwise.
func (m *ONNX) NumOutputs() int {
	if m.binary {
		return 1
	}
	return m.cols
}

// Input is the model's input as it declares it, for checking the features
// a topology declares against the model (NumFeatures is the width used).
func (m *ONNX) Input() ONNXTensor { return m.in }

// Output is the output that Predict reads.
func (m *ONNX) Output() ONNXTensor { return m.out }

// Predict scores rows. The input tensor wraps rows without a copy, and the
// output buffer is pooled, so a steady batch size allocates only the small
// tensor headers.
func (m *ONNX) Predict(_ context.Context, rows []float32, out []float64) error {
	k := m.NumOutputs()
	n := len(out) / k
	if len(out)%k != 0 || len(rows) != n*m.features {
		return fmt.Errorf("onnx: %d values for %d scores of %d outputs and %d features", len(rows), len(out), k, m.features)
	}
	if n == 0 {
		return nil
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.session == nil {
		return errors.New("onnx: Predict after Close")
	}
	in, err := ort.NewTensor(ort.NewShape(int64(n), int64(m.features)), rows)
	if err != nil {
		return fmt.Errorf("onnx: input tensor: %w", err)
	}
	defer in.Destroy()
	shape := ort.NewShape(int64(n))
	if len(m.out.Shape) == 2 {
		shape = ort.NewShape(int64(n), int64(m.cols))
	}
	if m.double {
		if !m.binary && k == m.cols {
			// The output has out's exact layout: ONNX Runtime writes
			// straight into it.
			return run(m.session, in, shape, out)
		}
		p := m.scratch64(n * m.cols)
		defer m.buf.Put(p)
		if err := run(m.session, in, shape, *p); err != nil {
			return err
		}
		m.collect64(*p, out)
		return nil
	}
	p := m.scratch32(n * m.cols)
	defer m.buf.Put(p)
	if err := run(m.session, in, shape, *p); err != nil {
		return err
	}
	m.collect32(*p, out)
	return nil
}

// run binds dst as the output tensor and runs the session.
func run[T float32 | float64](s *ort.DynamicAdvancedSession, in ort.Value, shape ort.Shape, dst []T) error {
	t, err := ort.NewTensor(shape, dst)
	if err != nil {
		return fmt.Errorf("onnx: output tensor: %w", err)
	}
	defer t.Destroy()
	if err := s.Run([]ort.Value{in}, []ort.Value{t}); err != nil {
		return fmt.Errorf("onnx: %w", err)
	}
	return nil
}

func (m *ONNX) scratch32(n int) *[]float32 {
	p, _ := m.buf.Get().(*[]float32)
	if p == nil || cap(*p) < n {
		b := make([]float32, n)
		p = &b
	}
	*p = (*p)[:n]
	return p
}

func (m *ONNX) scratch64(n int) *[]float64 {
	p, _ := m.buf.Get().(*[]float64)
	if p == nil || cap(*p) < n {
		b := make([]float64, n)
		p = &b
	}
	*p = (*p)[:n]
	return p
}

// collect32 copies the output tensor into out, keeping column 1 of a binary
// classifier's probabilities.
func (m *ONNX) collect32(src []float32, out []float64) {
	if m.binary {
		for i := range out {
			out[i] = float64(src[2*i+1])
		}
		return
	}
	for i, v := range src {
		out[i] = float64(v)
	}
}

func (m *ONNX) collect64(src []float64, out []float64) {
	if m.binary {
		for i := range out {
			out[i] = src[2*i+1]
		}
		return
	}
	copy(out, src)
}

// Close releases the session. Predict fails afterwards; the process's ONNX
// Runtime environment stays for other models.
func (m *ONNX) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.session == nil {
		return nil
	}
	err := m.session.Destroy()
	m.session = nil
	return err
}

// describe turns onnxruntime_go's signature entry into an ONNXTensor.
func describe(io ort.InputOutputInfo) ONNXTensor {
	t := ONNXTensor{Name: io.Name}
	switch io.OrtValueType {
	case ort.ONNXTypeTensor, ort.ONNXTypeSparseTensor:
		t.Shape = slices.Clone(io.Dimensions)
		t.Type = elementTypes[io.DataType]
		if t.Type == "" {
			t.Type = io.DataType.String()
		}
	case ort.ONNXTypeSequence:
		t.Type = "sequence"
	case ort.ONNXTypeMap:
		t.Type = "map"
	default:
		t.Type = io.OrtValueType.String()
	}
	return t
}

var elementTypes = map[ort.TensorElementDataType]string{
	ort.TensorElementDataTypeFloat:   "float32",
	ort.TensorElementDataTypeDouble:  "float64",
	ort.TensorElementDataTypeFloat16: "float16",
	ort.TensorElementDataTypeInt8:    "int8",
	ort.TensorElementDataTypeInt16:   "int16",
	ort.TensorElementDataTypeInt32:   "int32",
	ort.TensorElementDataTypeInt64:   "int64",
	ort.TensorElementDataTypeUint8:   "uint8",
	ort.TensorElementDataTypeUint16:  "uint16",
	ort.TensorElementDataTypeUint32:  "uint32",
	ort.TensorElementDataTypeUint64:  "uint64",
	ort.TensorElementDataTypeBool:    "bool",
	ort.TensorElementDataTypeString:  "string",
}
