// Package ml scores models inside the pipeline (XGBoost and LightGBM in
// pure Go, ONNX through ONNX Runtime) or on an inference server over the
// Open Inference Protocol (KServe V2, REST or gRPC).
//
// A Model scores a batch of feature rows at once. A Batcher, which the
// predict pipe shares between a replica's partitions, merges their rows into
// micro-batches, bounds the calls in flight, retries, and breaks the circuit
// to a failing server.
package ml

import "context"

// Model scores feature rows. Implementations are safe for concurrent use.
type Model interface {
	// NumFeatures is the number of features a row holds.
	NumFeatures() int
	// NumOutputs is the number of scores per row: 1, or the number of
	// classes of a multi-class model.
	NumOutputs() int
	// Predict scores rows, a row-major matrix of len(out)/NumOutputs() rows
	// of NumFeatures() values each (NaN marks a missing value), into out.
	// A remote model honours ctx's deadline and cancellation; an in-process
	// one may ignore it.
	Predict(ctx context.Context, rows []float32, out []float64) error
}
