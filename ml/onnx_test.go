//go:build cgo

package ml_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/streamerio/streamer/ml"
)

// onnxLibrary returns the ONNX Runtime library the tests load. Without one
// they skip, unless STREAMER_REQUIRE_ONNX=1 (as in make test), where a
// missing library must not pass silently.
func onnxLibrary(t testing.TB) string {
	t.Helper()
	lib := os.Getenv(ml.LibraryEnv)
	if lib == "" {
		const msg = "no ONNX Runtime: run with " + ml.LibraryEnv + "=$(scripts/ml/onnxruntime.sh)"
		if os.Getenv("STREAMER_REQUIRE_ONNX") == "1" {
			t.Fatal(msg + " (STREAMER_REQUIRE_ONNX=1 requires it)")
		}
		t.Skip(msg)
	}
	return lib
}

// onnxExpected is what scripts/ml/export_onnx.py wrote: held-out features
// and ONNX Runtime's own (Python) predictions, flattened row-major.
type onnxExpected struct {
	rows        []float32
	n           int
	predictions []float64
	versions    string
}

func readONNXExpected(t testing.TB, name string, outputs int) onnxExpected {
	t.Helper()
	b, err := os.ReadFile("testdata/onnx-" + name + "-expected.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Features    [][]*float64    `json:"features"`
		Predictions json.RawMessage `json:"predictions"`
		ORT         string          `json:"onnxruntime"`
		Tools       string          `json:"onnxmltools"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	e := onnxExpected{n: len(doc.Features), versions: "onnxruntime " + doc.ORT + ", onnxmltools " + doc.Tools}
	e.rows = heldOut(doc.Features)
	e.predictions = flatPredictions(t, doc.Predictions, outputs)
	return e
}

func loadONNX(t testing.TB, name string) *ml.ONNX {
	t.Helper()
	m, err := ml.LoadONNX("testdata/onnx-"+name+".onnx", ml.ONNXOptions{Library: onnxLibrary(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestONNXMatchesONNXRuntime compares streamer's predictions with ONNX
// Runtime's through Python, on the XGBoost models' held-out sets (with
// missing values) converted by onnxmltools, whole and in batches of several
// sizes, so that reused buffers of other sizes cannot leak into results.
func TestONNXMatchesONNXRuntime(t *testing.T) {
	onnxLibrary(t)
	for _, tt := range []struct {
		name     string
		outputs  int
		output   string
		outShape []int64
		outType  string
	}{
		{"binary", 1, "probabilities", []int64{-1, 2}, "float32"},
		{"regression", 1, "variable", []int64{-1, 1}, "float32"},
		{"multiclass", 3, "probabilities", []int64{-1, 3}, "float32"},
		// A hand-built graph: row sums, a 1-D float64 output.
		{"sum", 1, "sum", []int64{-1}, "float64"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m := loadONNX(t, tt.name)
			if m.NumFeatures() != 6 || m.NumOutputs() != tt.outputs {
				t.Fatalf("%d features and %d outputs, want 6 and %d", m.NumFeatures(), m.NumOutputs(), tt.outputs)
			}
			in, out := m.Input(), m.Output()
			if in.Name != "input" || in.Type != "float32" || !slices.Equal(in.Shape, []int64{-1, 6}) {
				t.Errorf("input %v, want input float32[-1 6]", in)
			}
			if out.Name != tt.output || out.Type != tt.outType || !slices.Equal(out.Shape, tt.outShape) {
				t.Errorf("output %v, want %s %s%v", out, tt.output, tt.outType, tt.outShape)
			}
			want := readONNXExpected(t, tt.name, tt.outputs)
			k, f := m.NumOutputs(), m.NumFeatures()
			for _, batch := range []int{want.n, 1, 7, 256} {
				got := make([]float64, len(want.predictions))
				for lo := 0; lo < want.n; lo += batch {
					hi := min(lo+batch, want.n)
					if err := m.Predict(context.Background(), want.rows[lo*f:hi*f], got[lo*k:hi*k]); err != nil {
						t.Fatal(err)
					}
				}
				worst := 0.0
				for i := range got {
					worst = max(worst, math.Abs(got[i]-want.predictions[i]))
				}
				if worst > 1e-5 || math.IsNaN(worst) {
					t.Fatalf("batches of %d: largest difference from ONNX Runtime %g, want within 1e-5", batch, worst)
				}
				if batch == want.n {
					t.Logf("%d rows, %d scores: largest difference from ONNX Runtime (Python; %s) %.2g", want.n, len(got), want.versions, worst)
				}
			}
		})
	}
}

// TestONNXConcurrentPredict scores from several goroutines at once, with
// different batch sizes, against a serial run (go test -race checks the
// rest).
func TestONNXConcurrentPredict(t *testing.T) {
	m := loadONNX(t, "multiclass")
	want := readONNXExpected(t, "multiclass", 3)
	k, f := m.NumOutputs(), m.NumFeatures()
	serial := make([]float64, len(want.predictions))
	if err := m.Predict(context.Background(), want.rows, serial); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			batch := 1 + g*37
			got := make([]float64, len(serial))
			for range 5 {
				for lo := 0; lo < want.n; lo += batch {
					hi := min(lo+batch, want.n)
					if err := m.Predict(context.Background(), want.rows[lo*f:hi*f], got[lo*k:hi*k]); err != nil {
						errs <- err
						return
					}
				}
				if !slices.Equal(got, serial) {
					errs <- fmt.Errorf("goroutine %d (batches of %d) scored differently from the serial run", g, batch)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestONNXMissingLibrary needs no library: it checks the advice given
// without one.
func TestONNXMissingLibrary(t *testing.T) {
	const advice = "set STREAMER_ONNXRUNTIME_LIB to libonnxruntime.so; scripts/ml/onnxruntime.sh fetches it"
	for _, tt := range []struct {
		name, lib, env, want string
	}{
		{"unset", "", "", "no ONNX Runtime library"},
		{"absent file", "testdata/no-such-libonnxruntime.so", "", "no such file"},
		{"absent file from env", "", "testdata/no-such-libonnxruntime.so", "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(ml.LibraryEnv, tt.env)
			_, err := ml.LoadONNX("testdata/onnx-binary.onnx", ml.ONNXOptions{Library: tt.lib})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), advice) {
				t.Fatalf("got %v, want an error saying %q and %q", err, tt.want, advice)
			}
		})
	}
}

// TestONNXRejects checks the models and calls streamer refuses, and that
// each refusal says what to do.
func TestONNXRejects(t *testing.T) {
	lib := onnxLibrary(t)
	for _, tt := range []struct {
		name  string
		model string
		opts  ml.ONNXOptions
		want  string
	}{
		{"zipmap", "zipmap", ml.ONNXOptions{}, "export the classifier without ZipMap"},
		{"zipmap by name", "zipmap", ml.ONNXOptions{Output: "output_probability"}, "without ZipMap"},
		{"declared features differ", "binary", ml.ONNXOptions{Features: 5}, "takes 6 features, but 5 are declared"},
		{"integer output", "binary", ml.ONNXOptions{Output: "label"}, `no float tensor output "label"`},
		{"unknown output", "regression", ml.ONNXOptions{Output: "score"}, `its outputs are "variable" float32[-1 1]`},
		{"no model", "missing", ml.ONNXOptions{}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Library = lib
			m, err := ml.LoadONNX("testdata/onnx-"+tt.model+".onnx", tt.opts)
			if err == nil {
				m.Close()
				t.Fatalf("loaded; want an error saying %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want %q", err, tt.want)
			}
		})
	}

	// Choosing an output by name, and declaring the features it has,
	// are accepted.
	m, err := ml.LoadONNX("testdata/onnx-binary.onnx", ml.ONNXOptions{Library: lib, Output: "probabilities", Features: 6})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Predict(context.Background(), make([]float32, 5), make([]float64, 1)); err == nil || !strings.Contains(err.Error(), "6 features") {
		t.Errorf("Predict with 5 values for one row of 6: %v", err)
	}
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m.Predict(context.Background(), make([]float32, 6), make([]float64, 1)); err == nil || !strings.Contains(err.Error(), "Close") {
		t.Errorf("Predict after Close: %v", err)
	}

	// One process loads one library.
	other := t.TempDir() + "/libonnxruntime.so"
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = ml.LoadONNX("testdata/onnx-binary.onnx", ml.ONNXOptions{Library: other})
	if err == nil || !strings.Contains(err.Error(), "already loaded ONNX Runtime") {
		t.Errorf("a second library: %v", err)
	}
}

// BenchmarkONNX scores the binary model in batches of 256 rows and of one
// row, serially and from all cores at once.
func BenchmarkONNX(b *testing.B) {
	m := loadONNX(b, "binary")
	for _, n := range []int{256, 1} {
		rows := make([]float32, n*m.NumFeatures())
		for i := range rows {
			rows[i] = float32(i%13) / 7
		}
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			out := make([]float64, n)
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Predict(context.Background(), rows, out); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
		b.Run(fmt.Sprintf("batch=%d/parallel", n), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				out := make([]float64, n)
				for pb.Next() {
					if err := m.Predict(context.Background(), rows, out); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
	}
}
