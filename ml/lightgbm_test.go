package ml_test

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/streamerio/streamer/ml"
)

// lgbNames are the models scripts/ml/train.py trains with the real lightgbm
// library, each with held-out rows (missing values, and edge rows: values on
// thresholds, zeros, denormals, odd category codes) and the library's
// predictions for them.
var lgbNames = []string{"binary", "regression", "multiclass", "categorical", "zero", "rf", "poisson"}

func loadLGB(t testing.TB, name string) *ml.LightGBM {
	t.Helper()
	f, err := os.Open("testdata/lgb-" + name + ".txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := ml.LoadLightGBMText(f)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestLightGBMMatchesTheLibrary(t *testing.T) {
	for _, name := range lgbNames {
		t.Run(name, func(t *testing.T) {
			m := loadLGB(t, name)
			var want struct {
				Features    [][]*float64    `json:"features"`
				Predictions json.RawMessage `json:"predictions"`
				Version     string          `json:"lightgbm"`
			}
			b, err := os.ReadFile("testdata/lgb-" + name + "-expected.json")
			if err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal(b, &want); err != nil {
				t.Fatal(err)
			}
			flat := flatPredictions(t, want.Predictions, m.NumOutputs())
			if len(flat) != len(want.Features)*m.NumOutputs() {
				t.Fatalf("%d predictions for %d rows of %d outputs", len(flat), len(want.Features), m.NumOutputs())
			}
			rows := make([]float32, 0, len(want.Features)*m.NumFeatures())
			missing := 0
			for _, r := range want.Features {
				if len(r) != m.NumFeatures() {
					t.Fatalf("a row of %d features, the model has %d", len(r), m.NumFeatures())
				}
				for _, v := range r {
					if v == nil {
						rows = append(rows, float32(math.NaN()))
						missing++
					} else {
						rows = append(rows, float32(*v))
					}
				}
			}
			if missing == 0 {
				t.Fatal("the held-out set has no missing values to test")
			}
			got := make([]float64, len(flat))
			if err := m.Predict(context.Background(), rows, got); err != nil {
				t.Fatal(err)
			}
			worst, at := 0.0, 0
			for i := range got {
				if d := math.Abs(got[i] - flat[i]); d > worst || d != d {
					worst, at = d, i
				}
			}
			if !(worst <= 1e-5) {
				t.Fatalf("score %d: %v, lightgbm %s says %v (largest difference %g, want within 1e-5)", at, got[at], want.Version, flat[at], worst)
			}
			t.Logf("%d rows (%d missing values), %d scores: largest difference from lightgbm %s %.2g", len(want.Features), missing, len(got), want.Version, worst)
		})
	}
}

// TestLightGBMTestdataCoversTheDecisions checks that the models above hold
// what the evaluator must get right, so that matching them means something:
// each missing type with both default directions, categorical splits,
// average_output and the links.
func TestLightGBMTestdataCoversTheDecisions(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range lgbNames {
		b, err := os.ReadFile("testdata/lgb-" + name + ".txt")
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, line := range regexp.MustCompile(`(?m)^decision_type=(.*)$`).FindAllStringSubmatch(text, -1) {
			for _, f := range strings.Fields(line[1]) {
				d, _ := strconv.Atoi(f)
				missing := []string{"None", "Zero", "NaN", "?"}[d>>2&3]
				switch {
				case d&1 != 0:
					seen["categorical"] = true
				case missing == "None":
					seen["missing None"] = true
				default:
					seen["missing "+missing+" default "+map[bool]string{true: "left", false: "right"}[d&2 != 0]] = true
				}
			}
		}
		if strings.Contains(text, "\naverage_output\n") {
			seen["average_output"] = true
		}
		if o := regexp.MustCompile(`(?m)^objective=(\S+)`).FindStringSubmatch(text); o != nil {
			seen["objective "+o[1]] = true
		}
	}
	for _, want := range []string{
		"categorical", "missing None",
		"missing NaN default left", "missing NaN default right",
		"missing Zero default left", "missing Zero default right",
		"average_output",
		"objective binary", "objective regression", "objective multiclass", "objective poisson", "objective huber",
	} {
		if !seen[want] {
			t.Errorf("no test model has %s", want)
		}
	}
}

// lgbStump is a one-split model: feature 0 <= 0.5 goes left (leaf -1),
// otherwise right (leaf 1), with the header lines given. The rejection
// tests mangle it.
func lgbStump(header string) string {
	return "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nlabel_index=0\nmax_feature_idx=1\n" + header +
		"\n\nTree=0\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=-1 1\n" +
		"\n\nend of trees\n"
}

func TestLightGBMRejectsWhatItCannotScore(t *testing.T) {
	linear, err := os.ReadFile("testdata/lgb-linear.txt") // a real linear_tree model
	if err != nil {
		t.Fatal(err)
	}
	binary, err := os.ReadFile("testdata/lgb-binary.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ name, model, want string }{
		{"linear tree", string(linear), "linear_tree"},
		{"xgboost json", `{"learner":{}}`, "no version= line"},
		{"empty", "", "no version= line"},
		{"newer format", strings.Replace(lgbStump("objective=regression"), "version=v4", "version=v5", 1), `version "v5"`},
		{"unknown objective", lgbStump("objective=fancy_loss"), `objective "fancy_loss" is not supported`},
		{"bad sigmoid", lgbStump("objective=binary sigmoid:-1"), "sigmoid must be a positive number"},
		{"multiclass mismatch", lgbStump("objective=multiclass num_class:3"), "does not match the model's num_class=1"},
		{"trees per iteration", strings.Replace(lgbStump(""), "num_tree_per_iteration=1", "num_tree_per_iteration=2", 1), "num_tree_per_iteration=2"},
		{"cut short", string(binary[:len(binary)/2]), ""},
		{"no end of trees", strings.TrimSuffix(lgbStump(""), "end of trees\n"), `no "end of trees"`},
		{"tree_sizes", lgbStump("tree_sizes=10 10"), "tree_sizes lists 2 trees"},
		{"feature out of range", strings.Replace(lgbStump(""), "split_feature=0", "split_feature=2", 1), "split_feature"},
		{"cycle", strings.NewReplacer("num_leaves=2", "num_leaves=3", "split_feature=0", "split_feature=0 0", "threshold=0.5", "threshold=0.5 0.25",
			"decision_type=2", "decision_type=2 2", "left_child=-1", "left_child=1 1", "right_child=-2", "right_child=-2 -3", "leaf_value=-1 1", "leaf_value=-1 1 2",
		).Replace(lgbStump("")), "children must come after their parent"},
		{"child out of range", strings.Replace(lgbStump(""), "right_child=-2", "right_child=-3", 1), "right_child"},
		{"missing type 3", strings.Replace(lgbStump(""), "decision_type=2", "decision_type=12", 1), "unknown missing type"},
		{"unknown decision bits", strings.Replace(lgbStump(""), "decision_type=2", "decision_type=16", 1), "decision_type"},
		{"categorical without sets", strings.Replace(lgbStump(""), "decision_type=2", "decision_type=1", 1), "category sets"},
		{"leaf count", strings.Replace(lgbStump(""), "leaf_value=-1 1", "leaf_value=-1", 1), "leaf_value has 1 values, want 2"},
		{"not a number", strings.Replace(lgbStump(""), "threshold=0.5", "threshold=half", 1), `"half", not a number`},
		{"out of order", strings.Replace(lgbStump(""), "Tree=0", "Tree=1", 1), `"Tree=0"`},
		{"no trees", "version=v4\nnum_class=1\nmax_feature_idx=0\n\nend of trees\n", "no trees"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ml.LoadLightGBMText(strings.NewReader(tt.model))
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "lightgbm model: ") {
				t.Fatalf("got %v, want an error with %q", err, tt.want)
			}
			t.Log(err)
		})
	}
}

// TestLightGBMStumps scores one-split models written by hand in
// scripts/ml/train.py, one per decision rule (each missing type and
// default direction, thresholds at and near zero, category codes that are
// fractional, negative, huge or NaN, the links), against the predictions
// the lightgbm library made for them.
func TestLightGBMStumps(t *testing.T) {
	var stumps struct {
		Cases []struct {
			Name        string    `json:"name"`
			Model       string    `json:"model"`
			X           []string  `json:"x"`
			Predictions []float64 `json:"predictions"`
		} `json:"cases"`
		Version string `json:"lightgbm"`
	}
	b, err := os.ReadFile("testdata/lgb-stumps.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &stumps); err != nil {
		t.Fatal(err)
	}
	for _, c := range stumps.Cases {
		t.Run(c.Name, func(t *testing.T) {
			m, err := ml.LoadLightGBMText(strings.NewReader(c.Model))
			if err != nil {
				t.Fatal(err)
			}
			rows := make([]float32, 0, 2*len(c.X))
			for _, x := range c.X {
				v, err := strconv.ParseFloat(x, 64)
				if err != nil {
					t.Fatal(err)
				}
				rows = append(rows, float32(v), 0)
			}
			got := make([]float64, len(c.X))
			if err := m.Predict(context.Background(), rows, got); err != nil {
				t.Fatal(err)
			}
			for i := range got {
				if !(math.Abs(got[i]-c.Predictions[i]) <= 1e-12) {
					t.Errorf("x=%s: %v, lightgbm %s says %v", c.X[i], got[i], stumps.Version, c.Predictions[i])
				}
			}
		})
	}
}

func TestLightGBMPredictChecksShapes(t *testing.T) {
	m := loadLGB(t, "multiclass")
	for _, tt := range []struct{ rows, out int }{
		{m.NumFeatures(), 1}, {m.NumFeatures() - 1, m.NumOutputs()}, {2 * m.NumFeatures(), m.NumOutputs()},
	} {
		if err := m.Predict(context.Background(), make([]float32, tt.rows), make([]float64, tt.out)); err == nil {
			t.Errorf("%d values for %d outputs: no error", tt.rows, tt.out)
		}
	}
}

func TestLightGBMPredictAllocatesNothing(t *testing.T) {
	m := loadLGB(t, "multiclass")
	rows := make([]float32, 64*m.NumFeatures())
	out := make([]float64, 64*m.NumOutputs())
	if n := testing.AllocsPerRun(20, func() { _ = m.Predict(context.Background(), rows, out) }); n != 0 {
		t.Fatalf("%v allocations per Predict, want 0", n)
	}
}

// FuzzLoadLightGBMText feeds the parser mangled models. It must return a
// model or an error, never panic, and a model it returns must score rows
// of any values without panicking or looping.
func FuzzLoadLightGBMText(f *testing.F) {
	// Seeds from the real models, cut to one iteration: the fuzzer
	// minimizes every new input, which takes minutes on a 50 KB one.
	for _, name := range []string{"categorical", "linear", "rf", "multiclass"} {
		b, err := os.ReadFile("testdata/lgb-" + name + ".txt")
		if err != nil {
			f.Fatal(err)
		}
		n := 1
		if name == "multiclass" {
			n = 3 // one tree per class
		}
		seed := lgbFirstTrees(string(b), n)
		if _, err := ml.LoadLightGBMText(strings.NewReader(seed)); (err == nil) == (name == "linear") {
			f.Fatalf("the seed cut from %s: %v", name, err)
		}
		f.Add(seed)
	}
	f.Add(lgbStump("objective=binary sigmoid:1"))
	f.Add(lgbStump("objective=multiclass num_class:1\naverage_output"))
	f.Add(strings.NewReplacer(
		"num_cat=0", "num_cat=1\ncat_boundaries=0 2\ncat_threshold=8 2",
		"decision_type=2\n", "decision_type=9\n",
		"threshold=0.5", "threshold=0",
	).Replace(lgbStump("")))
	values := []float32{0, float32(math.Copysign(0, -1)), 1e-40, 0.5, -1, 3, 33, 1e10, float32(math.NaN()), float32(math.Inf(-1))}
	f.Fuzz(func(t *testing.T, model string) {
		m, err := ml.LoadLightGBMText(strings.NewReader(model))
		if err != nil {
			if m != nil {
				t.Fatal("a model and an error")
			}
			return
		}
		if m.NumFeatures() < 1 || m.NumOutputs() < 1 {
			t.Fatalf("%d features, %d outputs", m.NumFeatures(), m.NumOutputs())
		}
		if m.NumFeatures()*len(values) > 1<<16 {
			return // too wide to score here
		}
		rows := make([]float32, len(values)*m.NumFeatures())
		for i := range rows {
			rows[i] = values[(i+i/len(values))%len(values)]
		}
		if err := m.Predict(context.Background(), rows, make([]float64, len(values)*m.NumOutputs())); err != nil {
			t.Fatal(err)
		}
	})
}

// lgbFirstTrees cuts a saved model down to its first n trees.
func lgbFirstTrees(text string, n int) string {
	head, _, _ := strings.Cut(text, "\nTree=0\n")
	var keep []string
	for _, l := range strings.Split(head, "\n") {
		if !strings.HasPrefix(l, "tree_sizes=") {
			keep = append(keep, l)
		}
	}
	end := strings.Index(text, "\nTree="+strconv.Itoa(n)+"\n")
	if end < 0 {
		end = strings.Index(text, "\nend of trees")
	}
	return strings.Join(keep, "\n") + text[len(head):end] + "\n\nend of trees\n"
}

// BenchmarkLightGBM scores batches of 256 rows with three of the trained
// models (30 trees of 15 leaves per output).
func BenchmarkLightGBM(b *testing.B) {
	for _, name := range []string{"binary", "multiclass", "categorical"} {
		b.Run(name, func(b *testing.B) {
			m := loadLGB(b, name)
			const n = 256
			rows := make([]float32, n*m.NumFeatures())
			for i := range rows {
				rows[i] = float32(i%13)/7 - 0.9
			}
			out := make([]float64, n*m.NumOutputs())
			b.ReportAllocs()
			for b.Loop() {
				_ = m.Predict(context.Background(), rows, out)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
		})
	}
}

// BenchmarkLightGBMProd scores the held-out rows of W3's production-sized
// model (400 trees of up to 63 leaves; make bench-peers-w3-model writes it to
// bin/peers-w3), whose splits a branch predictor cannot learn, unlike the
// patterned rows above. It is skipped without the model.
func BenchmarkLightGBMProd(b *testing.B) {
	dir := filepath.Join("..", "bin", "peers-w3")
	f, err := os.Open(filepath.Join(dir, "lgb-prod.txt"))
	if err != nil {
		b.Skip("no production model (make bench-peers-w3-model):", err)
	}
	defer f.Close()
	m, err := ml.LoadLightGBMText(f)
	if err != nil {
		b.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, "lgb-prod-expected.json"))
	if err != nil {
		b.Fatal(err)
	}
	var want struct {
		Features [][]float32 `json:"features"`
	}
	if err := json.Unmarshal(raw, &want); err != nil {
		b.Fatal(err)
	}
	var rows []float32
	for _, r := range want.Features {
		rows = append(rows, r...)
	}
	n := len(want.Features)
	out := make([]float64, n*m.NumOutputs())
	b.ReportAllocs()
	for b.Loop() {
		_ = m.Predict(context.Background(), rows, out)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/row")
}
