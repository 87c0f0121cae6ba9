//go:build !cgo

package ml

import (
	"context"
	"errors"
	"fmt"
)

// ONNX is a model in the ONNX format. Running one needs ONNX Runtime, a C
// library, so this build (without cgo) can only refuse it; the type and its
// options exist so that code using them still compiles.
type ONNX struct{}

var _ Model = (*ONNX)(nil)

// ONNXOptions configures LoadONNX; see the cgo build.
type ONNXOptions struct {
	Library  string
	Output   string
	Features int
	Threads  int
}

// ONNXTensor describes one input or output of an ONNX model.
type ONNXTensor struct {
	Name  string
	Shape []int64
	Type  string
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

var errNoCgo = errors.New("onnx: this streamer was built without cgo, and ONNX models need it to load ONNX Runtime; rebuild with CGO_ENABLED=1 and a C compiler, or use an XGBoost JSON model, which pure Go can score")

// LoadONNX fails: ONNX needs a cgo build.
func LoadONNX(path string, opts ONNXOptions) (*ONNX, error) {
	return nil, errNoCgo
}

// LoadONNXData needs cgo too.
func LoadONNXData(path string, data []byte, opts ONNXOptions) (*ONNX, error) {
	return nil, errNoCgo
}

func (*ONNX) NumFeatures() int                                    { return 0 }
func (*ONNX) NumOutputs() int                                     { return 0 }
func (*ONNX) Predict(context.Context, []float32, []float64) error { return errNoCgo }
func (*ONNX) Input() ONNXTensor                                   { return ONNXTensor{} }
func (*ONNX) Output() ONNXTensor                                  { return ONNXTensor{} }
func (*ONNX) Close() error                                        { return nil }
