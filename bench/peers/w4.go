package main

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"

	"github.com/pemistahl/lingua-go"
)

// W4, the seed paper's workload: language detection on text records,
// exactly once (bench/peers/w4.yaml, the language pipe, lingua-go in high
// accuracy over eight languages).
//
// The text is real: the translated fortune cookies of Debian packages
// (fortunes-cs, -de, -es, -it, -pl, -ru, fortunes-br for Portuguese and
// fortunes-min for English; bookworm has no fortunes-fr), downloaded and
// unpacked by scripts/bench/fortunes.sh into a directory that is not
// committed. Each fortune between "%" lines is one text; those with fewer
// than 40 letters or more than 1,000 bytes, with control characters, in
// files that are not UTF-8, or seen before are left out. Record i is a text
// of language i mod 8, taken in a fixed shuffled order of that language's
// texts: {"id": i, "source": "<the package's language>", "text": "…"}.
//
// The oracle runs lingua itself, outside any pipeline: for each text,
// DetectLanguageOf (lingua's own rule for "no reliable answer") gives the
// language and the top of ComputeLanguageConfidenceValues the confidence.
// An output must carry the same text, the same language code (or null) and
// the same confidence (within 1e-9), once per input record.

// w4Languages are the languages of the texts, and those lingua chooses from.
var w4Languages = []lingua.Language{lingua.Czech, lingua.German, lingua.English, lingua.Spanish,
	lingua.Italian, lingua.Polish, lingua.Portuguese, lingua.Russian}

// w4Sources are the fortune files of each language, under
// usr/share/games/fortunes of the unpacked packages: a directory (its
// regular files) or a file.
var w4Sources = []struct {
	lang  string
	paths []string
}{
	{"cs", []string{"cs"}}, {"de", []string{"de"}}, {"en", []string{"fortunes", "literature", "riddles"}},
	{"es", []string{"es"}}, {"it", []string{"it"}}, {"pl", []string{"pl"}}, {"pt", []string{"brasil"}},
	{"ru", []string{"ru"}},
}

// w4Corpus is the texts of each language, in the order records take them.
type w4Corpus struct {
	langs []string
	texts [][]string // by language index, shuffled
	files int
}

// loadW4Corpus reads the fortunes under dir (scripts/bench/fortunes.sh's).
func loadW4Corpus(dir string) (*w4Corpus, error) {
	base := filepath.Join(dir, "usr", "share", "games", "fortunes")
	if _, err := os.Stat(base); err != nil {
		return nil, fmt.Errorf("%w (fetch the Debian fortunes first: scripts/bench/fortunes.sh %s)", err, dir)
	}
	c := &w4Corpus{}
	seen := map[string]bool{}
	for li, src := range w4Sources {
		var files []string
		for _, p := range src.paths {
			found, err := fortuneFiles(filepath.Join(base, p))
			if err != nil {
				return nil, err
			}
			files = append(files, found...)
		}
		var texts []string
		for _, f := range files {
			data, err := os.ReadFile(f)
			if err != nil {
				return nil, err
			}
			if !utf8.Valid(data) {
				continue // a legacy encoding; its .u8 twin, if any, is read too
			}
			c.files++
			for _, t := range splitFortunes(string(data)) {
				if !seen[t] {
					seen[t] = true
					texts = append(texts, t)
				}
			}
		}
		if len(texts) == 0 {
			return nil, fmt.Errorf("no %s texts under %s", src.lang, base)
		}
		r := rand.New(rand.NewPCG(16, uint64(li)))
		r.Shuffle(len(texts), func(a, b int) { texts[a], texts[b] = texts[b], texts[a] })
		c.langs = append(c.langs, src.lang)
		c.texts = append(c.texts, texts)
	}
	return c, nil
}

// fortuneFiles lists the fortune files at path: the file and its .u8
// (UTF-8) twin if any, or the regular files of a directory, sorted, less
// the index files (.dat). Symbolic links (often a .u8 name for a UTF-8 file)
// are skipped; files in a legacy encoding are skipped by the caller, and
// texts read twice are kept once.
func fortuneFiles(path string) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	if !fi.IsDir() {
		out := []string{path}
		if _, err := os.Stat(path + ".u8"); err == nil {
			out = append(out, path+".u8")
		}
		return out, nil
	}
	ents, err := os.ReadDir(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if e.Type().IsRegular() && !strings.HasSuffix(e.Name(), ".dat") {
			out = append(out, filepath.Join(path, e.Name()))
		}
	}
	slices.Sort(out)
	return out, nil
}

// splitFortunes returns the texts of a fortune file (separated by lines
// holding "%"), trimmed, that W4 keeps.
func splitFortunes(data string) []string {
	var out []string
	for _, t := range strings.Split(strings.ReplaceAll(data, "\r\n", "\n"), "\n%\n") {
		t = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(t, "%\n"), "\n%"))
		if keepFortune(t) {
			out = append(out, t)
		}
	}
	return out
}

func keepFortune(t string) bool {
	if len(t) > 1000 {
		return false
	}
	letters := 0
	for _, r := range t {
		if r < 0x20 && r != '\n' && r != '\t' || r == 0x7f {
			return false
		}
		if unicode.IsLetter(r) {
			letters++
		}
	}
	return letters >= 40
}

// record is input record i.
func (c *w4Corpus) record(i int) ([]byte, []byte) {
	v, _ := json.Marshal(w4Text{ID: i, Source: c.source(i), Text: c.text(i)})
	return []byte(strconv.Itoa(i)), v
}

func (c *w4Corpus) source(i int) string { return c.langs[i%len(c.langs)] }

func (c *w4Corpus) text(i int) string {
	ts := c.texts[i%len(c.langs)]
	return ts[(i/len(c.langs))%len(ts)]
}

type w4Text struct {
	ID     int    `json:"id"`
	Source string `json:"source"`
	Text   string `json:"text"`
}

// w4Answer is a detection: the language code (nil: no reliable answer)
// and the top confidence.
type w4Answer struct {
	code *string
	conf float64
}

// w4Oracle is the answer for every text of the first n records.
type w4Oracle struct {
	corpus  *w4Corpus
	answers map[string]w4Answer
	agree   float64             // share of the distinct texts detected as their package's language
	py      map[string]w4Answer // lingua-py's answers (w4py.go); nil unless a Python system runs
}

// newW4Oracle runs lingua on each distinct text of the first n records, on
// every core.
func newW4Oracle(c *w4Corpus, n int, det lingua.LanguageDetector) *w4Oracle {
	source := map[string]string{}
	for i := 0; i < n; i++ {
		source[c.text(i)] = c.source(i)
	}
	texts := make([]string, 0, len(source))
	for t := range source {
		texts = append(texts, t)
	}
	answers := make([]w4Answer, len(texts))
	var wg sync.WaitGroup
	w := runtime.GOMAXPROCS(0)
	for k := range w {
		wg.Go(func() {
			for i := k; i < len(texts); i += w {
				a := w4Answer{conf: det.ComputeLanguageConfidenceValues(texts[i])[0].Value()}
				if l, ok := det.DetectLanguageOf(texts[i]); ok {
					code := strings.ToLower(l.IsoCode639_1().String())
					a.code = &code
				}
				answers[i] = a
			}
		})
	}
	wg.Wait()
	o := &w4Oracle{corpus: c, answers: make(map[string]w4Answer, len(texts))}
	agree := 0
	for i, t := range texts {
		o.answers[t] = answers[i]
		if answers[i].code != nil && *answers[i].code == source[t] {
			agree++
		}
	}
	o.agree = float64(agree) / float64(len(texts))
	return o
}

// check is W4's oracle for one output record.
func (o *w4Oracle) check(key, value []byte) (int, error) {
	return o.checkWith(o.answers, "lingua", key, value)
}

// checkWith checks one output record against answers, lib's.
func (o *w4Oracle) checkWith(answers map[string]w4Answer, lib string, key, value []byte) (int, error) {
	var v struct {
		ID   *int     `json:"id"`
		Text string   `json:"text"`
		Lang *string  `json:"lang"`
		Conf *float64 `json:"lang_confidence"`
	}
	if err := json.Unmarshal(value, &v); err != nil || v.ID == nil {
		return -1, fmt.Errorf("not a text record: %.80s", value)
	}
	id := *v.ID
	text := o.corpus.text(id)
	want := answers[text]
	switch {
	case v.Text != text || string(key) != strconv.Itoa(id):
		return id, fmt.Errorf("key %q or text %.40q is not the input's", key, v.Text)
	case !sameLang(v.Lang, want.code):
		return id, fmt.Errorf("language %s, %s's %s", strOrNull(v.Lang), lib, strOrNull(want.code))
	case v.Conf == nil || !sameConf(*v.Conf, want.conf):
		return id, fmt.Errorf("confidence %v, %s's %v", ptrOrNull(v.Conf), lib, want.conf)
	}
	return id, nil
}

func sameLang(a, b *string) bool { return (a == nil) == (b == nil) && (a == nil || *a == *b) }

func sameConf(a, b float64) bool { return math.Abs(a-b) <= 1e-9 }

func strOrNull(s *string) string {
	if s == nil {
		return "null"
	}
	return strconv.Quote(*s)
}

func ptrOrNull(f *float64) any {
	if f == nil {
		return "null"
	}
	return *f
}

func (o *w4Oracle) workload(dir string) recordWorkload {
	texts := 0
	for _, ts := range o.corpus.texts {
		texts += len(ts)
	}
	return recordWorkload{
		record: o.corpus.record,
		check:  o.check,
		quix:   []string{filepath.Join("bench", "peers", "quix", "detect.py")},
		ray:    []string{filepath.Join("bench", "peers", "ray", "detect.py")},
		describe: fmt.Sprintf("%d Debian fortunes in %s from %d files of %s (%d distinct texts in the input); oracle: lingua run directly, which gives %.1f%% of them their package's language",
			texts, strings.Join(o.corpus.langs, ","), o.corpus.files, dir, len(o.answers), 100*o.agree),
	}
}

// w4Detector is lingua as the hand-written systems and the oracle use it:
// the same languages and accuracy as w4.yaml, models loaded up front.
func w4Detector() lingua.LanguageDetector {
	return lingua.NewLanguageDetectorBuilder().FromLanguages(w4Languages...).WithPreloadedLanguageModels().Build()
}

// w4Naive detects one record's language: decode, one lingua pass (the
// confidence values, with DetectLanguageOf's rule for the answer), encode.
// It is safe for concurrent use.
func w4Naive(det lingua.LanguageDetector) recordFn {
	return func(value []byte) ([]byte, bool, error) {
		var rec map[string]any
		if err := json.Unmarshal(value, &rec); err != nil {
			return nil, false, err
		}
		text, ok := rec["text"].(string)
		if !ok {
			return nil, false, fmt.Errorf("text is %T, not a string", rec["text"])
		}
		vals := det.ComputeLanguageConfidenceValues(text)
		top, second := vals[0].Value(), vals[1].Value()
		rec["lang"], rec["lang_confidence"] = nil, top
		if top != second {
			rec["lang"] = strings.ToLower(vals[0].Language().IsoCode639_1().String())
		}
		b, err := json.Marshal(rec)
		return b, true, err
	}
}

// w4Careful detects a poll's languages on every core.
func w4Careful(det lingua.LanguageDetector) batchFn {
	one := w4Naive(det)
	return func(values [][]byte) ([][]byte, error) {
		return parallelChunks(values, func(vals, outs [][]byte) error {
			for i, v := range vals {
				b, _, err := one(v)
				if err != nil {
					return err
				}
				outs[i] = b
			}
			return nil
		})
	}
}
