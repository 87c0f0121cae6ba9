package ml

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// Ensemble is an XGBoost gradient-boosted tree model (the gbtree booster),
// evaluated in pure Go, so that a build without cgo can still score.
// It supports the objectives binary:logistic, reg:logistic,
// reg:squarederror (and other identity-link regressions) and
// multi:softprob / multi:softmax (scores are class probabilities).
type Ensemble struct {
	features  int
	classes   int // 1 for binary and regression
	objective string
	base      []float64 // base margin per class
	trees     []tree
	class     []int // the class each tree adds to
}

var _ Model = (*Ensemble)(nil)

// tree is one regression tree in flat arrays, as XGBoost stores it.
type tree struct {
	left, right []int32
	feature     []int32
	threshold   []float32 // the split value; the leaf value at leaves
	defaultLeft []bool
}

// xgbModel is the part of XGBoost's JSON model format the evaluator reads.
type xgbModel struct {
	Learner struct {
		Param struct {
			BaseScore  string `json:"base_score"`
			NumClass   string `json:"num_class"`
			NumFeature string `json:"num_feature"`
		} `json:"learner_model_param"`
		Objective struct {
			Name string `json:"name"`
		} `json:"objective"`
		Booster struct {
			Name  string `json:"name"`
			Model struct {
				Trees []struct {
					Left        []int32   `json:"left_children"`
					Right       []int32   `json:"right_children"`
					Index       []int32   `json:"split_indices"`
					Conditions  []float32 `json:"split_conditions"`
					DefaultLeft []int     `json:"default_left"`
					SplitType   []int     `json:"split_type"`
				} `json:"trees"`
				TreeInfo []int `json:"tree_info"`
			} `json:"model"`
		} `json:"gradient_booster"`
	} `json:"learner"`
}

// LoadXGBoostJSON reads a model saved by XGBoost's save_model("*.json").
func LoadXGBoostJSON(r io.Reader) (*Ensemble, error) {
	var m xgbModel
	if err := json.NewDecoder(r).Decode(&m); err != nil {
		return nil, fmt.Errorf("xgboost model: %w", err)
	}
	l := m.Learner
	if l.Booster.Name != "gbtree" {
		return nil, fmt.Errorf("xgboost model: booster %q is not supported (only gbtree)", l.Booster.Name)
	}
	e := &Ensemble{objective: l.Objective.Name}
	var err error
	if e.features, err = strconv.Atoi(l.Param.NumFeature); err != nil {
		return nil, fmt.Errorf("xgboost model: num_feature %q", l.Param.NumFeature)
	}
	if e.classes, err = strconv.Atoi(l.Param.NumClass); err != nil {
		return nil, fmt.Errorf("xgboost model: num_class %q", l.Param.NumClass)
	}
	e.classes = max(1, e.classes)
	switch e.objective {
	case "binary:logistic", "reg:logistic", "reg:squarederror", "reg:linear", "reg:absoluteerror", "reg:pseudohubererror":
		if e.classes != 1 {
			return nil, fmt.Errorf("xgboost model: %s with %d classes", e.objective, e.classes)
		}
	case "multi:softprob", "multi:softmax":
	default:
		return nil, fmt.Errorf("xgboost model: objective %q is not supported", e.objective)
	}
	// base_score is "0.5" in older models and "[0.5]" or "[a,b,c]" (one per
	// class) in newer ones.
	for _, s := range strings.Split(strings.Trim(l.Param.BaseScore, "[]"), ",") {
		v, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return nil, fmt.Errorf("xgboost model: base_score %q", l.Param.BaseScore)
		}
		if e.objective == "binary:logistic" || e.objective == "reg:logistic" {
			v = math.Log(v / (1 - v)) // a probability: its margin
		}
		e.base = append(e.base, v)
	}
	if len(e.base) == 1 && e.classes > 1 {
		for len(e.base) < e.classes {
			e.base = append(e.base, e.base[0])
		}
	}
	if len(e.base) != e.classes {
		return nil, fmt.Errorf("xgboost model: %d base scores for %d classes", len(e.base), e.classes)
	}
	trees := l.Booster.Model.Trees
	if len(l.Booster.Model.TreeInfo) != len(trees) {
		return nil, fmt.Errorf("xgboost model: tree_info has %d entries for %d trees", len(l.Booster.Model.TreeInfo), len(trees))
	}
	for i, t := range trees {
		n := len(t.Left)
		if len(t.Right) != n || len(t.Index) != n || len(t.Conditions) != n || len(t.DefaultLeft) != n {
			return nil, fmt.Errorf("xgboost model: tree %d has arrays of different lengths", i)
		}
		for _, st := range t.SplitType {
			if st != 0 {
				return nil, fmt.Errorf("xgboost model: tree %d has categorical splits, which are not supported", i)
			}
		}
		tr := tree{left: t.Left, right: t.Right, feature: t.Index, threshold: t.Conditions, defaultLeft: make([]bool, n)}
		for j, d := range t.DefaultLeft {
			tr.defaultLeft[j] = d != 0
			if t.Left[j] >= 0 && (int(t.Left[j]) >= n || int(t.Right[j]) >= n || int(t.Index[j]) >= e.features) {
				return nil, fmt.Errorf("xgboost model: tree %d node %d points outside the tree or the features", i, j)
			}
		}
		e.trees = append(e.trees, tr)
		c := l.Booster.Model.TreeInfo[i]
		if c < 0 || c >= e.classes {
			return nil, fmt.Errorf("xgboost model: tree %d is for class %d of %d", i, c, e.classes)
		}
		e.class = append(e.class, c)
	}
	return e, nil
}

func (e *Ensemble) NumFeatures() int { return e.features }
func (e *Ensemble) NumOutputs() int  { return e.classes }

// leaf walks one tree for one row, the way XGBoost does: float32
// comparisons, x < threshold goes left, a missing value takes the default.
func (t *tree) leaf(row []float32) float32 {
	n := int32(0)
	for t.left[n] >= 0 {
		x := row[t.feature[n]]
		switch {
		case x != x: // NaN: missing
			if t.defaultLeft[n] {
				n = t.left[n]
			} else {
				n = t.right[n]
			}
		case x < t.threshold[n]:
			n = t.left[n]
		default:
			n = t.right[n]
		}
	}
	return t.threshold[n]
}

// Predict scores each row: the sum of its leaves per class plus the base
// margin, through the objective's link.
func (e *Ensemble) Predict(_ context.Context, rows []float32, out []float64) error {
	k := e.classes
	if len(out)%k != 0 || len(rows) != len(out)/k*e.features {
		return fmt.Errorf("xgboost: %d values for %d scores of %d classes and %d features", len(rows), len(out), k, e.features)
	}
	margins := make([]float32, k)
	for r := 0; r < len(out)/k; r++ {
		row := rows[r*e.features : (r+1)*e.features]
		for c := range margins {
			margins[c] = 0
		}
		// XGBoost sums leaf values in float32; doing the same keeps the
		// last digits equal.
		for i := range e.trees {
			margins[e.class[i]] += e.trees[i].leaf(row)
		}
		o := out[r*k : (r+1)*k]
		for c := range o {
			o[c] = float64(margins[c]) + e.base[c]
		}
		e.link(o)
	}
	return nil
}

func (e *Ensemble) link(o []float64) {
	switch e.objective {
	case "binary:logistic", "reg:logistic":
		o[0] = 1 / (1 + math.Exp(-o[0]))
	case "multi:softprob", "multi:softmax":
		m := math.Inf(-1)
		for _, v := range o {
			m = max(m, v)
		}
		sum := 0.0
		for i, v := range o {
			o[i] = math.Exp(v - m)
			sum += o[i]
		}
		for i := range o {
			o[i] /= sum
		}
	}
}
