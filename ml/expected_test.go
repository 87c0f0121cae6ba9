package ml_test

import (
	"encoding/json"
	"math"
	"testing"
)

// heldOut turns the features of a scripts/ml expectations file (null where
// missing) into a row-major matrix, NaN for missing.
func heldOut(features [][]*float64) []float32 {
	var rows []float32
	for _, r := range features {
		for _, v := range r {
			if v == nil {
				rows = append(rows, float32(math.NaN()))
			} else {
				rows = append(rows, float32(*v))
			}
		}
	}
	return rows
}

// flatPredictions reads a library's predictions, a list of scores or (with
// several outputs) a list of rows of scores, row-major.
func flatPredictions(t testing.TB, raw json.RawMessage, outputs int) []float64 {
	t.Helper()
	var flat []float64
	if outputs == 1 {
		if err := json.Unmarshal(raw, &flat); err != nil {
			t.Fatal(err)
		}
		return flat
	}
	var rows [][]float64
	if err := json.Unmarshal(raw, &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		flat = append(flat, r...)
	}
	return flat
}
