package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/pemistahl/lingua-go"
)

// The Python systems' oracle is lingua-py's answers (linguaref.py's output,
// here written by hand to differ from lingua-go on one text): an output
// with lingua-py's answer passes even where lingua-go's differs, one with
// lingua-go's answer there does not, and the tally says on how many
// records the Python system agreed with lingua-go.
func TestW4PythonOracle(t *testing.T) {
	c := w4TestCorpus(t)
	det := lingua.NewLanguageDetectorBuilder().FromLanguages(w4Languages...).WithLowAccuracyMode().Build()
	n := 3 * 16
	o := newW4Oracle(c, n, det)
	texts := make([]string, 0, len(o.answers))
	for t := range o.answers {
		texts = append(texts, t)
	}
	slices.Sort(texts)
	// lingua-py's answers: lingua-go's, but for record 1's text another
	// language and for record 2's a confidence 1e-6 off.
	t1, t2 := c.text(1), c.text(2)
	var ref strings.Builder
	for _, text := range texts {
		a := o.answers[text]
		code := any(nil)
		if a.code != nil {
			code = *a.code
		}
		switch text {
		case t1:
			code = "pl"
			if a.code != nil && *a.code == "pl" {
				code = "cs"
			}
		case t2:
			a.conf -= 1e-6
		}
		b, _ := json.Marshal([]any{code, a.conf})
		fmt.Fprintf(&ref, "%s\n", b)
	}
	if _, err := parseLinguaRef([]byte(ref.String()), texts[1:]); err == nil {
		t.Fatal("parseLinguaRef took one answer too many")
	}
	py, err := parseLinguaRef([]byte(ref.String()), texts)
	if err != nil {
		t.Fatal(err)
	}
	o.py = py
	if got := o.pyAgreement(); !strings.Contains(got, "language to 93.75%") || !strings.Contains(got, "(within 1e-9) to 93.75%") {
		t.Errorf("pyAgreement: %s (want 15 of 16 texts each)", got)
	}
	w := o.workload("test")
	w.python = o.pyOracle()
	pyDetect := func(i int) []byte { // what a Python system with lingua-py's answers writes
		_, v := w.record(i)
		var rec map[string]any
		if err := json.Unmarshal(v, &rec); err != nil {
			t.Fatal(err)
		}
		a := py[c.text(i)]
		rec["lang"], rec["lang_confidence"] = a.code, a.conf
		b, _ := json.Marshal(rec)
		return b
	}
	p := newPerRecord(n)
	p.vsGo = w.python.vsGo
	for i := range n {
		k, _ := w.record(i)
		p.addWith(w.python.check, k, pyDetect(i))
	}
	if !p.ok() {
		t.Fatalf("lingua-py's own answers: %v", p)
	}
	// Records 1, 17, 33 have text 1; 2, 18, 34 text 2.
	if p.goLang != n-3 || p.goConf != n-3 {
		t.Errorf("agreement with lingua-go: %d languages, %d confidences of %d, want %d each", p.goLang, p.goConf, n, n-3)
	}
	if s := p.String(); !strings.Contains(s, "match lingua-py's own answers; lingua-go's language on 93.75%") {
		t.Errorf("note: %s", s)
	}
	// lingua-go's answer where lingua-py's differs is wrong for a Python system.
	k1, v1 := w.record(1)
	goOut, _, err := w4Naive(det)(v1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.python.check(k1, goOut); err == nil {
		t.Errorf("the Python oracle accepted lingua-go's answer %s", goOut)
	}
	if _, err := w.check(k1, goOut); err != nil {
		t.Errorf("the Go oracle rejected lingua-go's answer: %v", err)
	}
}
