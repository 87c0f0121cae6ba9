package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pemistahl/lingua-go"
)

// corrupt decodes an output value, changes one field and encodes it again.
func corrupt(t *testing.T, value []byte, field string, v any) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(value, &m); err != nil {
		t.Fatal(err)
	}
	m[field] = v
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The W3 oracle accepts what the Go evaluator makes of every event (the
// library's predictions agree with it), and rejects a score off by more
// than the tolerance, another row's score, a missing score, a wrong key;
// the per-record tally counts a duplicate and a missing record.
func TestW3Oracle(t *testing.T) {
	t.Chdir(filepath.Join("..", "..")) // the paths of loadW3Model are from the module root
	m, err := loadW3Model("small", "")
	if err != nil {
		t.Fatal(err)
	}
	model, err := loadModelFile(m.path)
	if err != nil {
		t.Fatal(err)
	}
	w := m.workload()
	score := w3Naive(model)
	n := 2 * len(m.rows) // every row, twice
	p := newPerRecord(n)
	outs := make([][]byte, n)
	keys := make([][]byte, n)
	for i := range n {
		k, v := w.record(i)
		out, _, err := score(v)
		if err != nil {
			t.Fatal(err)
		}
		keys[i], outs[i] = k, out
		p.add(w, k, out)
	}
	if !p.ok() {
		t.Fatalf("the evaluator's scores: %v", p)
	}
	for name, bad := range map[string]struct {
		key, value []byte
	}{
		"score off by 1e-4": {keys[3], corrupt(t, outs[3], "score", m.want[3]+1e-4)},
		"another row's":     {keys[3], corrupt(t, outs[3], "score", m.want[4])},
		"no score":          {keys[3], corrupt(t, outs[3], "score", nil)},
		"wrong key":         {keys[4], outs[3]},
	} {
		if m.want[3] == m.want[4] && name == "another row's" {
			t.Fatal("rows 3 and 4 score the same: pick others")
		}
		if _, err := w.check(bad.key, bad.value); err == nil {
			t.Errorf("%s: accepted %s", name, bad.value)
		}
	}
	// Record 5 twice and record 6 never: a mismatch.
	p = newPerRecord(n)
	for i := range n {
		j := i
		if i == 6 {
			j = 5
		}
		p.add(w, keys[j], outs[j])
	}
	if p.ok() || p.dup != 1 || p.missing() != 1 {
		t.Fatalf("a duplicate and a missing record: %v", p)
	}
	if !strings.HasPrefix(p.String(), "MISMATCH") {
		t.Fatalf("report %q", p)
	}
}

// splitFortunes keeps the texts between "%" lines with at least 40 letters
// and no control characters.
func TestSplitFortunes(t *testing.T) {
	long := "Wer anderen eine Grube gräbt, fällt selbst hinein, sagt man."
	data := "short one\n%\n" + long + "\n\t-- Sprichwort\n%\nbell \a" + long + "\n%\n" + long + " Zwei\n"
	got := splitFortunes(data)
	want := []string{long + "\n\t-- Sprichwort", long + " Zwei"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// w4TestCorpus writes a fortune directory of a few texts per language in
// the packages' layout and loads it.
func w4TestCorpus(t *testing.T) *w4Corpus {
	t.Helper()
	texts := map[string][]string{
		"cs": {"Dospělí si nehrají s hračkami z jediného důvodu; a je to dobrý důvod.", "Kdo jinému jámu kopá, sám do ní padá, a to se stává velmi často."},
		"de": {"Wer anderen eine Grube gräbt, fällt selbst hinein, sagt man bei uns.", "Morgenstund hat Gold im Mund, aber wer schläft, der sündigt nicht."},
		"en": {"The early bird gets the worm, but the second mouse gets the cheese.", "A journey of a thousand miles begins with a single step forward."},
		"es": {"No por mucho madrugar amanece más temprano, decía mi abuela siempre.", "Más vale pájaro en mano que ciento volando sobre nuestras cabezas."},
		"it": {"Chi va piano va sano e va lontano, diceva sempre il mio vecchio nonno.", "Non tutte le ciambelle riescono col buco, ma quasi tutte si mangiano."},
		"pl": {"Nie chwal dnia przed zachodem słońca, bo nigdy nie wiadomo co będzie.", "Gdzie kucharek sześć, tam nie ma co jeść, jak mówi stare przysłowie."},
		"pt": {"Quem não tem cão caça com gato, e o gato também sabe caçar muito bem.", "Água mole em pedra dura tanto bate até que fura, diz o velho ditado."},
		"ru": {"Тише едешь — дальше будешь, как говорила моя бабушка каждое утро.", "Не имей сто рублей, а имей сто друзей, и тогда всё будет хорошо."},
	}
	dir := t.TempDir()
	base := filepath.Join(dir, "usr", "share", "games", "fortunes")
	for _, src := range w4Sources {
		path := filepath.Join(base, src.paths[0])
		if !strings.Contains(src.paths[0], "fortunes") && src.paths[0] != "brasil" {
			path = filepath.Join(path, "sprueche")
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(strings.Join(texts[src.lang], "\n%\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"literature", "riddles"} {
		if err := os.WriteFile(filepath.Join(base, name), []byte("%\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c, err := loadW4Corpus(dir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The W4 oracle accepts what the hand-written detection makes of every
// record (one lingua pass with DetectLanguageOf's rule agrees with
// DetectLanguageOf), and rejects another language, a null language, a
// confidence off by 1e-6, a changed text and a wrong key. Lingua runs in
// low accuracy here, to load less; the oracle's logic is the same.
func TestW4Oracle(t *testing.T) {
	c := w4TestCorpus(t)
	for li, ts := range c.texts {
		if len(ts) != 2 {
			t.Fatalf("%s: %d texts, want 2", c.langs[li], len(ts))
		}
	}
	det := lingua.NewLanguageDetectorBuilder().FromLanguages(w4Languages...).WithLowAccuracyMode().Build()
	n := 3 * 16
	o := newW4Oracle(c, n, det)
	if len(o.answers) != 16 || o.agree < 0.9 {
		t.Fatalf("%d distinct texts, %.2f detected as their language", len(o.answers), o.agree)
	}
	w := o.workload("test")
	detect := w4Naive(det)
	p := newPerRecord(n)
	outs := make([][]byte, n)
	keys := make([][]byte, n)
	for i := range n {
		k, v := w.record(i)
		out, _, err := detect(v)
		if err != nil {
			t.Fatal(err)
		}
		keys[i], outs[i] = k, out
		p.add(w, k, out)
	}
	if !p.ok() {
		t.Fatalf("the hand-written detection: %v", p)
	}
	var rec struct {
		Lang string  `json:"lang"`
		Conf float64 `json:"lang_confidence"`
	}
	if err := json.Unmarshal(outs[1], &rec); err != nil || rec.Lang == "" {
		t.Fatalf("record 1: %s (%v)", outs[1], err)
	}
	other := "en"
	if rec.Lang == "en" {
		other = "de"
	}
	for name, bad := range map[string]struct {
		key, value []byte
	}{
		"another language":   {keys[1], corrupt(t, outs[1], "lang", other)},
		"null language":      {keys[1], corrupt(t, outs[1], "lang", nil)},
		"confidence off":     {keys[1], corrupt(t, outs[1], "lang_confidence", rec.Conf-1e-6)},
		"no confidence":      {keys[1], corrupt(t, outs[1], "lang_confidence", nil)},
		"another text":       {keys[1], corrupt(t, outs[1], "text", c.text(2))},
		"another record key": {keys[2], outs[1]},
	} {
		if _, err := w.check(bad.key, bad.value); err == nil {
			t.Errorf("%s: accepted %s", name, bad.value)
		}
	}
}
