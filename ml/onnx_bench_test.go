//go:build cgo

package ml_test

import (
	"os"
	"testing"

	"github.com/streamerio/streamer/ml"
)

// ONNX Runtime joins the batching benchmark when its library is present.
func init() {
	if os.Getenv(ml.LibraryEnv) == "" {
		return
	}
	benchModels = append(benchModels, struct {
		name string
		load func(tb testing.TB) ml.Model
	}{"onnx", func(tb testing.TB) ml.Model {
		m, err := ml.LoadONNX("testdata/onnx-binary.onnx", ml.ONNXOptions{})
		if err != nil {
			tb.Fatal(err)
		}
		return m
	}})
}
