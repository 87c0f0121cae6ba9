package ml

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// LightGBM is a LightGBM tree model (gbdt or dart boosting, or rf) read
// from LightGBM's text format, evaluated in pure Go so that a build without
// cgo can score it. It follows the library's own prediction code
// (include/LightGBM/tree.h and c_api.cpp), so its scores equal the
// library's predict() on the same rows:
//
//   - numerical splits go left when x <= threshold, in float64;
//   - missing values follow each node's decision_type: missing type NaN
//     sends NaN the default way; missing type Zero sends zero and NaN the
//     default way; missing type None reads NaN as 0;
//   - values within 1e-35 of zero count as zero, as LightGBM's predict does;
//   - categorical splits read the value as an integer category code (the
//     code LightGBM was trained on, not a string); NaN, negative codes and
//     codes outside the split's bitset go right;
//   - the objective's link gives the outputs: probabilities for binary,
//     cross_entropy, multiclass (softmax) and multiclassova (one sigmoid per
//     class), exp for poisson, gamma and tweedie, the raw score for the
//     regressions (regression, regression_l1, huber, fair, quantile, mape;
//     squared back with the sqrt option), for the ranking objectives, and
//     for models trained with a custom objective (which save none).
//
// Linear trees (linear_tree=true) are refused when loading.
type LightGBM struct {
	features   int
	outputs    int // trees per iteration: 1, or the number of classes
	iterations int
	average    bool // rf: the score is the mean over iterations
	link       lgbLink
	sigmoid    float64
	trees      []lgbTree
}

var _ Model = (*LightGBM)(nil)

// lgbLink is how raw scores become outputs (ObjectiveFunction::ConvertOutput).
type lgbLink uint8

const (
	lgbIdentity lgbLink = iota
	lgbSquare           // regression with the sqrt option: sign(x)*x*x
	lgbExp              // poisson, gamma, tweedie
	lgbSigmoid          // binary, multiclassova, cross_entropy
	lgbSoftmax          // multiclass
	lgbSoftplus         // cross_entropy_lambda: log(1+exp(x))
)

// decision_type bits, as LightGBM packs them.
const (
	lgbCategoricalBit = 1 << 0
	lgbDefaultLeftBit = 1 << 1
	lgbMissingShift   = 2 // two bits: None, Zero, NaN
)

const (
	lgbMissingNone = 0
	lgbMissingZero = 1
	lgbMissingNaN  = 2
)

// lgbZero is LightGBM's kZeroThreshold (1e-35f): predict turns values this
// close to zero into zero before the trees see them.
const lgbZero = float64(float32(1e-35))

// lgbNode is one split. Children are node indices, or ^leaf when negative.
type lgbNode struct {
	threshold   float64 // numerical: go left when x <= threshold
	left, right int32
	feature     int32
	// categorical: the split's bitset is the tree's cats[catStart:catEnd]
	catStart, catEnd uint32
	categorical      bool
	defaultLeft      bool
	missing          uint8
	// plain: a numerical split with missing type NaN whose threshold is
	// not within lgbZero of zero, so rounding x to zero cannot change
	// where it goes: the common node, decided without the general checks.
	plain bool
}

type lgbTree struct {
	nodes  []lgbNode // empty for a single-leaf tree
	leaves []float64
	cats   []uint32
}

// LoadLightGBMText reads a model saved by LightGBM's Booster.save_model
// (the text format, "version=v4" in LightGBM 4.x; v2 and v3 files read too).
func LoadLightGBMText(r io.Reader) (*LightGBM, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("lightgbm model: %w", err)
	}
	m, err := (&lgbParser{data: data}).model()
	if err != nil {
		return nil, fmt.Errorf("lightgbm model: %w", err)
	}
	return m, nil
}

// lgbParser reads the text format line by line.
type lgbParser struct {
	data []byte
	line int // the number of the last line read
}

// next returns the next line without its line ending, and false at the end.
func (p *lgbParser) next() (string, bool) {
	if len(p.data) == 0 {
		return "", false
	}
	line, rest, _ := bytes.Cut(p.data, []byte{'\n'})
	p.data = rest
	p.line++
	return string(bytes.TrimSuffix(line, []byte{'\r'})), true
}

// nextNonBlank skips blank lines; it returns "" at the end.
func (p *lgbParser) nextNonBlank() string {
	for {
		line, ok := p.next()
		if !ok || line != "" {
			return line
		}
	}
}

// keyValue splits a "key=value" line. A line with no '=' is a key with an
// empty value, as "average_output" is.
func keyValue(line string) (string, string) {
	k, v, _ := strings.Cut(line, "=")
	return k, v
}

func (p *lgbParser) model() (*LightGBM, error) {
	// The header: key=value lines up to the first tree.
	head := map[string]string{}
	line := p.nextNonBlank()
	for ; line != "" && !strings.HasPrefix(line, "Tree=") && line != "end of trees"; line = p.nextNonBlank() {
		k, v := keyValue(line)
		head[k] = v
	}
	m, err := lgbHeader(head)
	if err != nil {
		return nil, err
	}
	// The trees: "Tree=<i>", then key=value lines up to a blank line.
	for line != "end of trees" {
		if line == "" {
			return nil, fmt.Errorf(`no "end of trees" line: is the file cut short?`)
		}
		want := fmt.Sprintf("Tree=%d", len(m.trees))
		if line != want {
			return nil, fmt.Errorf("line %d: found %q where %q or \"end of trees\" should be", p.line, truncate(line), want)
		}
		start := p.line
		kv := map[string]string{}
		for l, ok := p.next(); ok && l != ""; l, ok = p.next() {
			k, v := keyValue(l)
			kv[k] = v
		}
		t, err := lgbTreeFrom(kv, m.features)
		if err != nil {
			return nil, fmt.Errorf("%s (line %d): %w", want, start, err)
		}
		m.trees = append(m.trees, t)
		line = p.nextNonBlank()
	}
	if len(m.trees) == 0 {
		return nil, fmt.Errorf("the model has no trees")
	}
	if sizes, ok := head["tree_sizes"]; ok && len(strings.Fields(sizes)) != len(m.trees) {
		return nil, fmt.Errorf("tree_sizes lists %d trees but the file holds %d: is it cut short or edited?", len(strings.Fields(sizes)), len(m.trees))
	}
	if len(m.trees)%m.outputs != 0 {
		return nil, fmt.Errorf("%d trees is not a whole number of iterations of %d trees", len(m.trees), m.outputs)
	}
	m.iterations = len(m.trees) / m.outputs
	return m, nil
}

// lgbHeader reads the model-wide keys.
func lgbHeader(head map[string]string) (*LightGBM, error) {
	v, ok := head["version"]
	if !ok {
		return nil, fmt.Errorf("no version= line: is this a model saved by LightGBM's save_model in the text format?")
	}
	switch v {
	case "v2", "v3", "v4":
	default:
		return nil, fmt.Errorf("version %q is not supported (v2 to v4 are: LightGBM up to 4.x)", v)
	}
	m := &LightGBM{}
	classes, err := lgbInt(head, "num_class", 1, math.MaxInt32)
	if err != nil {
		return nil, err
	}
	m.outputs = classes
	if _, ok := head["num_tree_per_iteration"]; ok {
		if m.outputs, err = lgbInt(head, "num_tree_per_iteration", 1, math.MaxInt32); err != nil {
			return nil, err
		}
	}
	if m.outputs != classes {
		return nil, fmt.Errorf("num_class=%d with num_tree_per_iteration=%d is not supported", classes, m.outputs)
	}
	maxFeature, err := lgbInt(head, "max_feature_idx", 0, math.MaxInt32-1)
	if err != nil {
		return nil, err
	}
	m.features = maxFeature + 1
	_, m.average = head["average_output"]
	if err := m.objective(head["objective"]); err != nil {
		return nil, err
	}
	return m, nil
}

// objective sets the link from the objective line, e.g. "binary sigmoid:1"
// or "multiclass num_class:3" (ObjectiveFunction::ToString).
func (m *LightGBM) objective(line string) error {
	fields := strings.Fields(line)
	if len(fields) == 0 {
		// No objective: trained with a custom one. LightGBM predicts raw
		// scores then, and so does this.
		return nil
	}
	name := fields[0]
	params := map[string]string{}
	sqrt := false
	for _, f := range fields[1:] {
		if k, v, ok := strings.Cut(f, ":"); ok {
			params[k] = v
		} else if f == "sqrt" {
			sqrt = true
		}
	}
	sigmoid := func() error {
		m.sigmoid = 1
		if s, ok := params["sigmoid"]; ok {
			v, err := strconv.ParseFloat(s, 64)
			if err != nil || !(v > 0) || math.IsInf(v, 0) {
				return fmt.Errorf("objective %q: sigmoid must be a positive number", line)
			}
			m.sigmoid = v
		}
		return nil
	}
	classes := func(want int) error {
		if n, err := strconv.Atoi(params["num_class"]); err != nil || n != want {
			return fmt.Errorf("objective %q does not match the model's num_class=%d", line, want)
		}
		return nil
	}
	single := func() error {
		if m.outputs != 1 {
			return fmt.Errorf("objective %q scores one output, but the model has %d trees per iteration", line, m.outputs)
		}
		return nil
	}
	switch name {
	case "regression", "regression_l1", "quantile", "fair", "mape":
		if sqrt {
			m.link = lgbSquare
		}
		return single()
	case "huber": // LightGBM turns sqrt off for huber
		return single()
	case "lambdarank", "rank_xendcg", "custom":
		return single()
	case "poisson", "gamma", "tweedie":
		m.link = lgbExp
		return single()
	case "binary":
		m.link = lgbSigmoid
		if err := sigmoid(); err != nil {
			return err
		}
		return single()
	case "cross_entropy":
		m.link, m.sigmoid = lgbSigmoid, 1
		return single()
	case "cross_entropy_lambda":
		m.link = lgbSoftplus
		return single()
	case "multiclass":
		m.link = lgbSoftmax
		return classes(m.outputs)
	case "multiclassova":
		m.link = lgbSigmoid
		if err := sigmoid(); err != nil {
			return err
		}
		return classes(m.outputs)
	}
	return fmt.Errorf("objective %q is not supported; retrain with a built-in objective or score the model with the lightgbm library", truncate(name))
}

// lgbTreeFrom builds one tree from its key=value lines (Tree::Tree(const
// char*)), checking every index so that Predict cannot go out of bounds or
// loop.
func lgbTreeFrom(kv map[string]string, features int) (lgbTree, error) {
	var t lgbTree
	if v, ok := kv["is_linear"]; ok && v != "0" {
		return t, fmt.Errorf("a linear tree (trained with linear_tree=true), which is not supported; retrain without linear_tree or score the model with the lightgbm library")
	}
	leaves, err := lgbInt(kv, "num_leaves", 1, math.MaxInt32)
	if err != nil {
		return t, err
	}
	numCat, err := lgbInt(kv, "num_cat", 0, math.MaxInt32-1)
	if err != nil {
		return t, err
	}
	if t.leaves, err = lgbFloats(kv, "leaf_value", leaves); err != nil {
		return t, err
	}
	if leaves == 1 {
		return t, nil
	}
	n := leaves - 1
	left, err := lgbInts(kv, "left_child", n, -leaves, n-1)
	if err != nil {
		return t, err
	}
	right, err := lgbInts(kv, "right_child", n, -leaves, n-1)
	if err != nil {
		return t, err
	}
	feature, err := lgbInts(kv, "split_feature", n, 0, features-1)
	if err != nil {
		return t, fmt.Errorf("%w (the model has %d features)", err, features)
	}
	threshold, err := lgbFloats(kv, "threshold", n)
	if err != nil {
		return t, err
	}
	decision := make([]int, n)
	if _, ok := kv["decision_type"]; ok {
		// Bits above the four known ones would mean a format this
		// evaluator does not know.
		if decision, err = lgbInts(kv, "decision_type", n, 0, 15); err != nil {
			return t, err
		}
	}
	var bounds []int
	if numCat > 0 {
		if bounds, err = lgbInts(kv, "cat_boundaries", numCat+1, 0, math.MaxInt32); err != nil {
			return t, err
		}
		words := strings.Fields(kv["cat_threshold"])
		if bounds[0] != 0 || bounds[numCat] != len(words) {
			return t, fmt.Errorf("cat_boundaries run from %d to %d, but cat_threshold has %d words", bounds[0], bounds[numCat], len(words))
		}
		for j := 1; j <= numCat; j++ {
			if bounds[j] < bounds[j-1] {
				return t, fmt.Errorf("cat_boundaries are not in order")
			}
		}
		t.cats = make([]uint32, len(words))
		for j, w := range words {
			v, err := strconv.ParseUint(w, 10, 32)
			if err != nil {
				return t, fmt.Errorf("cat_threshold: %q is not a 32-bit word", truncate(w))
			}
			t.cats[j] = uint32(v)
		}
	}
	t.nodes = make([]lgbNode, n)
	for i := range t.nodes {
		// LightGBM numbers a split after its parent, so children with
		// larger indices also rule out cycles.
		for _, c := range []int{left[i], right[i]} {
			if c >= 0 && c <= i {
				return t, fmt.Errorf("node %d has child node %d: children must come after their parent", i, c)
			}
		}
		d := decision[i]
		nd := lgbNode{
			threshold:   threshold[i],
			left:        int32(left[i]),
			right:       int32(right[i]),
			feature:     int32(feature[i]),
			categorical: d&lgbCategoricalBit != 0,
			defaultLeft: d&lgbDefaultLeftBit != 0,
			missing:     uint8(d>>lgbMissingShift) & 3,
		}
		if nd.missing > lgbMissingNaN {
			return t, fmt.Errorf("node %d has decision_type %d: unknown missing type %d", i, d, nd.missing)
		}
		if nd.categorical {
			c := nd.threshold
			if c != math.Trunc(c) || c < 0 || c >= float64(numCat) {
				return t, fmt.Errorf("categorical node %d has threshold %v, not one of the tree's %d category sets", i, c, numCat)
			}
			nd.catStart, nd.catEnd = uint32(bounds[int(c)]), uint32(bounds[int(c)+1])
		}
		nd.plain = !nd.categorical && nd.missing == lgbMissingNaN && !(nd.threshold >= -lgbZero && nd.threshold < lgbZero)
		t.nodes[i] = nd
	}
	return t, nil
}

func (m *LightGBM) NumFeatures() int { return m.features }
func (m *LightGBM) NumOutputs() int  { return m.outputs }

// Predict scores each row: per output, the sum of its trees' leaves in
// iteration order (as LightGBM adds them), averaged for rf, through the
// objective's link. It allocates nothing.
func (m *LightGBM) Predict(_ context.Context, rows []float32, out []float64) error {
	k := m.outputs
	if len(out)%k != 0 || len(rows) != len(out)/k*m.features {
		return fmt.Errorf("lightgbm: %d values for %d scores of %d outputs and %d features", len(rows), len(out), k, m.features)
	}
	// Rows go through the trees a block at a time, tree by tree, so that a
	// tree stays in cache for the whole block; each score still adds its
	// trees in iteration order, as LightGBM does.
	n, f := len(out)/k, m.features
	for r0 := 0; r0 < n; r0 += lgbBlock {
		r1 := min(r0+lgbBlock, n)
		o := out[r0*k : r1*k]
		clear(o)
		for i := range m.trees {
			t, c := &m.trees[i], i%k
			for r := r0; r < r1; r++ {
				o[(r-r0)*k+c] += t.value(rows[r*f : (r+1)*f])
			}
		}
		for r := 0; r < r1-r0; r++ {
			or := o[r*k : (r+1)*k]
			if m.average {
				for c := range or {
					or[c] /= float64(m.iterations)
				}
			}
			m.convert(or)
		}
	}
	return nil
}

// lgbBlock is how many rows Predict takes through each tree at once.
const lgbBlock = 32

// convert applies the link, as the objective's ConvertOutput does.
func (m *LightGBM) convert(o []float64) {
	switch m.link {
	case lgbSquare:
		for i, v := range o {
			o[i] = math.Copysign(v*v, v)
		}
	case lgbExp:
		for i, v := range o {
			o[i] = math.Exp(v)
		}
	case lgbSigmoid:
		for i, v := range o {
			o[i] = 1 / (1 + math.Exp(-m.sigmoid*v))
		}
	case lgbSoftplus:
		for i, v := range o {
			o[i] = math.Log1p(math.Exp(v))
		}
	case lgbSoftmax:
		top := o[0]
		for _, v := range o[1:] {
			top = max(top, v)
		}
		sum := 0.0
		for i, v := range o {
			o[i] = math.Exp(v - top)
			sum += o[i]
		}
		for i := range o {
			o[i] /= sum
		}
	}
}

// value is the leaf value one row reaches.
func (t *lgbTree) value(row []float32) float64 {
	if len(t.nodes) == 0 {
		return t.leaves[0]
	}
	n := int32(0)
	for {
		nd := &t.nodes[n]
		x := float64(row[nd.feature])
		var left bool
		switch {
		case nd.plain:
			if x != x {
				left = nd.defaultLeft
			} else {
				left = x <= nd.threshold
			}
		case nd.categorical:
			left = t.inCategories(nd, x)
		default:
			if x >= -lgbZero && x <= lgbZero {
				x = 0
			}
			left = nd.goesLeft(x)
		}
		if left {
			n = nd.left
		} else {
			n = nd.right
		}
		if n < 0 {
			return t.leaves[^n]
		}
	}
}

// goesLeft is Tree::NumericalDecision; x is already rounded to zero when
// within lgbZero of it.
func (nd *lgbNode) goesLeft(x float64) bool {
	switch nd.missing {
	case lgbMissingNaN:
		if x != x {
			return nd.defaultLeft
		}
	case lgbMissingZero:
		if x != x || x == 0 {
			return nd.defaultLeft
		}
	default: // lgbMissingNone
		if x != x {
			x = 0
		}
	}
	return x <= nd.threshold
}

// inCategories is Tree::CategoricalDecision: the category is x truncated to
// an int; NaN and negative categories go right. (LightGBM's C++ cast of a
// value beyond int32 gives a negative int on x86 and one past any bitset on
// arm64: right either way, as here.)
func (t *lgbTree) inCategories(nd *lgbNode, x float64) bool {
	if x != x || x <= -1 || x >= 1<<31 {
		return false
	}
	c := uint32(int32(x))
	bits := t.cats[nd.catStart:nd.catEnd]
	w := c / 32
	if w >= uint32(len(bits)) {
		return false
	}
	return bits[w]>>(c%32)&1 != 0
}

// lgbInt reads an integer key in [lo, hi].
func lgbInt(kv map[string]string, key string, lo, hi int) (int, error) {
	s, ok := kv[key]
	if !ok {
		return 0, fmt.Errorf("no %s= line", key)
	}
	v, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil || v < lo || v > hi {
		return 0, fmt.Errorf("%s=%s: want an integer from %d to %d", key, truncate(s), lo, hi)
	}
	return v, nil
}

// lgbInts reads n space-separated integers in [lo, hi].
func lgbInts(kv map[string]string, key string, n, lo, hi int) ([]int, error) {
	s, ok := kv[key]
	if !ok {
		return nil, fmt.Errorf("no %s= line", key)
	}
	fields := strings.Fields(s)
	if len(fields) != n {
		return nil, fmt.Errorf("%s has %d values, want %d", key, len(fields), n)
	}
	out := make([]int, n)
	for i, f := range fields {
		v, err := strconv.Atoi(f)
		if err != nil || v < lo || v > hi {
			return nil, fmt.Errorf("%s: value %d is %q, want an integer from %d to %d", key, i, truncate(f), lo, hi)
		}
		out[i] = v
	}
	return out, nil
}

// lgbFloats reads n space-separated numbers.
func lgbFloats(kv map[string]string, key string, n int) ([]float64, error) {
	s, ok := kv[key]
	if !ok {
		return nil, fmt.Errorf("no %s= line", key)
	}
	fields := strings.Fields(s)
	if len(fields) != n {
		return nil, fmt.Errorf("%s has %d values, want %d", key, len(fields), n)
	}
	out := make([]float64, n)
	for i, f := range fields {
		v, err := strconv.ParseFloat(f, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: value %d is %q, not a number", key, i, truncate(f))
		}
		out[i] = v
	}
	return out, nil
}

// truncate keeps error messages short when a file holds something huge.
func truncate(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
