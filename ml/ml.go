// Package ml runs models inside the pipeline, not over a network hop.
//
// A Model scores a batch of feature rows at once, so that pipes can
// micro-batch. This package so far holds a pure-Go evaluator of XGBoost tree
// ensembles (JSON model format), checked against the xgboost library's own
// predictions; the micro-batcher, the ML pipe and the other backends are
// the rest of issue #5.
package ml

// Model scores feature rows.
type Model interface {
	// NumFeatures is the number of features a row holds.
	NumFeatures() int
	// NumOutputs is the number of scores per row: 1, or the number of
	// classes of a multi-class model.
	NumOutputs() int
	// Predict scores rows, a row-major matrix of len(out)/NumOutputs() rows
	// of NumFeatures() values each (NaN marks a missing value), into out.
	Predict(rows []float32, out []float64) error
}
