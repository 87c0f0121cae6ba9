package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
)

// W4's Python peers, Quix Streams (bench/peers/quix/detect.py) and Ray
// Data (bench/peers/ray/detect.py), detect with lingua-py (PyPI
// lingua-language-detector), the Rust-backed port of lingua-go by the same
// author, which does not always give lingua-go's answers. So they are
// checked against lingua-py itself, run outside any pipeline
// (bench/peers/quix/linguaref.py on the same distinct texts): every record
// once, with its text, and lingua-py's own language and confidence. How
// far lingua-py's answers are from lingua-go's is reported beside, over
// the distinct texts (pyAgreement) and over each system's records.

// addLinguaPy runs linguaref.py with python on the oracle's texts and keeps
// its answers.
func (o *w4Oracle) addLinguaPy(ctx context.Context, python string) error {
	texts := make([]string, 0, len(o.answers))
	for t := range o.answers {
		texts = append(texts, t)
	}
	slices.Sort(texts)
	var in bytes.Buffer
	enc := json.NewEncoder(&in)
	for _, t := range texts {
		if err := enc.Encode(t); err != nil {
			return err
		}
	}
	ref := filepath.Join("bench", "peers", "quix", "linguaref.py")
	cmd := exec.CommandContext(ctx, python, ref)
	cmd.Stdin, cmd.Stderr = &in, os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("%s %s: %w", python, ref, err)
	}
	answers, err := parseLinguaRef(out, texts)
	if err != nil {
		return fmt.Errorf("%s: %w", ref, err)
	}
	o.py = answers
	return nil
}

// parseLinguaRef reads linguaref.py's output: a line [lang, confidence]
// for each text, in order.
func parseLinguaRef(out []byte, texts []string) (map[string]w4Answer, error) {
	lines := bytes.Split(bytes.TrimSuffix(out, []byte("\n")), []byte("\n"))
	if len(out) == 0 || len(lines) != len(texts) {
		return nil, fmt.Errorf("%d answers for %d texts", len(lines), len(texts))
	}
	answers := make(map[string]w4Answer, len(texts))
	for i, l := range lines {
		var v struct {
			code *string
			conf float64
		}
		if err := json.Unmarshal(l, &[]any{&v.code, &v.conf}); err != nil {
			return nil, fmt.Errorf("answer %d: %q: %w", i+1, l, err)
		}
		answers[texts[i]] = w4Answer{code: v.code, conf: v.conf}
	}
	return answers, nil
}

// pyAgreement says how often lingua-py's answers are lingua-go's, over the
// distinct texts.
func (o *w4Oracle) pyAgreement() string {
	lang, conf, maxDiff := 0, 0, 0.0
	for t, g := range o.answers {
		p := o.py[t]
		lang += b2i(sameLang(p.code, g.code))
		conf += b2i(sameConf(p.conf, g.conf))
		maxDiff = math.Max(maxDiff, math.Abs(p.conf-g.conf))
	}
	n := float64(len(o.answers))
	return fmt.Sprintf("lingua-py gives lingua-go's language to %.2f%% of them and its confidence (within 1e-9) to %.2f%% (largest difference %.3g)",
		100*float64(lang)/n, 100*float64(conf)/n, maxDiff)
}

// pyOracle is the oracle of the Python systems.
func (o *w4Oracle) pyOracle() *pyOracle {
	return &pyOracle{
		check: func(key, value []byte) (int, error) { return o.checkWith(o.py, "lingua-py", key, value) },
		vsGo: func(key, value []byte) (bool, bool) {
			var v struct {
				ID   int     `json:"id"`
				Lang *string `json:"lang"`
				Conf float64 `json:"lang_confidence"`
			}
			if json.Unmarshal(value, &v) != nil || string(key) != strconv.Itoa(v.ID) {
				return false, false
			}
			g := o.answers[o.corpus.text(v.ID)]
			return sameLang(v.Lang, g.code), sameConf(v.Conf, g.conf)
		},
	}
}
