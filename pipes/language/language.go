// Package language is the language pipe: it detects the natural language of
// a text with lingua-go. Lingua embeds its models, about 125 MB of a binary,
// so the pipe is not in package pipes: a binary has it only if it imports
// this package, which registers the "language" type into
// pipes.DefaultEnvironment when it is initialised, as a database/sql driver
// registers itself:
//
//	import _ "github.com/streamerio/streamer/pipes/language"
//
// The streamer command imports it unless built with -tags nolanguage (the
// default container image). A topology that uses the pipe in a binary
// without it gets an error naming this import (pipes.NotLinked).
package language

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/pemistahl/lingua-go"

	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/pipes"
)

// Type is the language pipe type. Importing the package registers it into
// pipes.DefaultEnvironment; register it into another Environment for an
// isolated one.
var Type = pipes.MustNewType("language", languageSpec, newLanguage)

func init() { pipes.DefaultEnvironment().MustRegister(Type) }

// sharedDetector is one lingua detector per process for a set of languages
// and an accuracy. Lingua detectors are safe for concurrent use: their
// methods have value receivers, and the models live in sync.Maps whose maps
// are filled before they are stored and only read afterwards. So every
// partition task uses the same detector.
type sharedDetector struct {
	languages []lingua.Language
	low       bool
	once      sync.Once
	det       lingua.LanguageDetector
}

// get builds the detector on first use, loading every model it can need.
// Without preloading, lingua would load models during the first batches,
// inside their transactions, and could load one model twice when two tasks
// need it at once (it checks its cache and stores without a lock).
func (s *sharedDetector) get() lingua.LanguageDetector {
	s.once.Do(func() {
		b := lingua.NewLanguageDetectorBuilder().FromLanguages(s.languages...).WithPreloadedLanguageModels()
		if s.low {
			b = b.WithLowAccuracyMode()
		}
		s.det = b.Build()
	})
	return s.det
}

// detectors holds the shared detectors by languages and accuracy.
var detectors sync.Map // string -> *sharedDetector

func detectorFor(languages []lingua.Language, low bool) *sharedDetector {
	codes := make([]string, len(languages))
	for i, l := range languages {
		codes[i] = isoCode(l)
	}
	slices.Sort(codes)
	key := fmt.Sprintf("%t:%s", low, strings.Join(codes, ","))
	d, _ := detectors.LoadOrStore(key, &sharedDetector{languages: languages, low: low})
	return d.(*sharedDetector)
}

type languagePipe struct {
	text          *pipes.Program
	output        string
	confidence    string
	minDistance   float64
	minConfidence float64
	shared        *sharedDetector
	codes         map[lingua.Language]string
	schema        *pipes.Schema
	results       []detection // per batch: records with a string or null text
	jobs          []int       // indexes of results whose text is a string
}

func newLanguage(c Config, env *pipes.Env) (pipes.Pipe, error) {
	p := &languagePipe{output: c.Output.Name, confidence: c.Confidence.Name, minDistance: c.MinDistance, minConfidence: c.MinConfidence}
	var errs []error
	prog, err := env.Compile(c.Text)
	if err != nil {
		errs = append(errs, err)
	} else if k := prog.Kind(); k != pipes.Any && k != pipes.String {
		errs = append(errs, pipes.Errorf(c.Text.Pos, "text %q is %s; want a string", c.Text.Src, k))
	}
	p.text = prog
	if p.confidence == p.output {
		errs = append(errs, pipes.Errorf(c.Confidence.Pos, "confidence and output are both %q", p.output))
	}
	if c.MinDistance < 0 || c.MinDistance > 0.99 {
		errs = append(errs, pipes.Errorf(c.Pos, "min_distance is %v; want 0 to 0.99", c.MinDistance))
	}
	if c.MinConfidence < 0 || c.MinConfidence > 1 {
		errs = append(errs, pipes.Errorf(c.Pos, "min_confidence is %v; want 0 to 1", c.MinConfidence))
	}
	langs, err := parseLanguages(c.Languages, c.Pos)
	if err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	p.codes = make(map[lingua.Language]string, len(langs))
	for _, l := range langs {
		p.codes[l] = isoCode(l)
	}
	p.shared = detectorFor(langs, c.Accuracy == "low")
	if env.Partition < 0 {
		// Validation, which also precedes every run: start loading the
		// models now, so that they are ready (or nearly) when the engine
		// builds its first task inside a transaction. A process that only
		// validates exits without waiting for it.
		go p.shared.get()
	} else {
		p.shared.get()
	}
	if in := env.InputSchema(); in != nil {
		p.schema = in.Clone()
		p.setSchema(p.output, pipes.SchemaField{Kind: pipes.String, Nullable: true})
		if p.confidence != "" {
			p.setSchema(p.confidence, pipes.SchemaField{Kind: pipes.Float64, Nullable: true})
		}
	}
	return p, nil
}

// setSchema adds an output field; a dotted path makes its top field an
// untyped record, as in map.
func (p *languagePipe) setSchema(path string, f pipes.SchemaField) {
	top, _, nested := strings.Cut(path, ".")
	if nested {
		f = pipes.SchemaField{Kind: pipes.Struct}
	}
	f.Name = top
	p.schema.Set(f)
}

// parseLanguages turns ISO 639-1 codes into lingua languages, reporting
// every unknown or repeated code at its position.
func parseLanguages(fields []pipes.Field, pos pipes.Pos) ([]lingua.Language, error) {
	var errs []error
	var out []lingua.Language
	for _, f := range fields {
		iso := lingua.GetIsoCode639_1FromValue(f.Name)
		l := lingua.GetLanguageFromIsoCode639_1(iso)
		switch {
		case iso == lingua.UnknownIsoCode639_1 || l == lingua.Unknown:
			errs = append(errs, pipes.Errorf(f.Pos, "unknown language %q: want an ISO 639-1 code that lingua supports%s", f.Name, suggestLanguage(f.Name)))
		case slices.Contains(out, l):
			errs = append(errs, pipes.Errorf(f.Pos, "language %q is listed twice", f.Name))
		default:
			out = append(out, l)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if len(out) < 2 {
		// Lingua's builder panics below two; with one there is nothing to
		// choose between.
		return nil, pipes.Errorf(pos, "languages lists %d language(s); want at least 2 to choose from", len(out))
	}
	return out, nil
}

// countryCodes are country codes often written for a language's code.
var countryCodes = map[string]string{
	"cn": "zh", "cz": "cs", "dk": "da", "gr": "el", "jp": "ja",
	"kr": "ko", "ua": "uk", "no": "nb", "br": "pt", "il": "he",
}

// suggestLanguage returns a did-you-mean hint for an unknown language code.
// Besides near-misses of a code, it recognises what people write instead:
// a language's English name, its ISO 639-3 code, or a country code.
func suggestLanguage(s string) string {
	low := strings.ToLower(strings.TrimSpace(s))
	if c, ok := countryCodes[low]; ok {
		return fmt.Sprintf(" (did you mean %q?)", c)
	}
	var codes, names []string
	byName := map[string]string{}
	for _, l := range lingua.AllLanguages() {
		code, name := isoCode(l), strings.ToLower(l.String())
		if low == name || low == strings.ToLower(l.IsoCode639_3().String()) {
			return fmt.Sprintf(" (did you mean %q, %s?)", code, l)
		}
		codes = append(codes, code)
		names = append(names, name)
		byName[name] = code
	}
	if len(low) > 3 {
		// A misspelt name: suggest the code of the name it is close to.
		if hint := spec.DidYouMean(low, names); hint != "" {
			name := strings.TrimSuffix(strings.TrimPrefix(hint, ` (did you mean "`), `"?)`)
			return fmt.Sprintf(" (did you mean %q, %s?)", byName[name], name)
		}
		return ""
	}
	return spec.DidYouMean(low, codes)
}

func isoCode(l lingua.Language) string { return strings.ToLower(l.IsoCode639_1().String()) }

// Process evaluates the texts in order, detects their languages in
// parallel, then writes the fields and emits in order. Detection is
// CPU-bound and costs 0.06 to 0.5 ms a record, so GOMAXPROCS workers make
// a lone partition 1.7 to 2 times faster on 2 cores (BenchmarkLanguage with
// -cpu 1,2); when the engine already runs a partition per core, they add
// no CPU time per record.
func (p *languagePipe) Process(_ context.Context, b *pipes.Batch, out *pipes.Output) error {
	det := p.shared.get()
	p.jobs = p.jobs[:0]
	p.results = p.results[:0]
	for _, r := range b.Records {
		if _, ok := r.Value.(map[string]any); !ok {
			out.Fail(r, fmt.Errorf("language needs a record with fields, got %T", r.Value))
			continue
		}
		v, err := p.text.Eval(r)
		if err != nil {
			out.Fail(r, err)
			continue
		}
		switch s := v.(type) {
		case nil:
			p.results = append(p.results, detection{r: r}) // null outputs
		case string:
			p.jobs = append(p.jobs, len(p.results))
			p.results = append(p.results, detection{r: r, text: s})
		default:
			out.Fail(r, fmt.Errorf("text %q gave %T; want a string", p.text.Source(), v))
		}
	}
	p.detectAll(det)
	for i := range p.results {
		d := &p.results[i]
		if !pipes.SetPath(d.r.Value, p.output, d.code) {
			out.Fail(d.r, fmt.Errorf("cannot set %q: a non-record value is in the way", p.output))
		} else if p.confidence != "" && !pipes.SetPath(d.r.Value, p.confidence, d.conf) {
			out.Fail(d.r, fmt.Errorf("cannot set %q: a non-record value is in the way", p.confidence))
		} else {
			out.Emit(0, d.r)
		}
	}
	clear(p.results) // drop the records and texts until the next batch
	return nil
}

// detection is one record's text and result.
type detection struct {
	r          *pipes.Record
	text       string
	code, conf any
}

// detectAll fills in the results of the jobs, with up to GOMAXPROCS
// goroutines each taking every w-th job.
func (p *languagePipe) detectAll(det lingua.LanguageDetector) {
	w := min(runtime.GOMAXPROCS(0), len(p.jobs))
	if w <= 1 {
		for _, j := range p.jobs {
			d := &p.results[j]
			d.code, d.conf = p.detect(det, d.text)
		}
		return
	}
	var wg sync.WaitGroup
	for k := range w {
		wg.Go(func() {
			for i := k; i < len(p.jobs); i += w {
				d := &p.results[p.jobs[i]]
				d.code, d.conf = p.detect(det, d.text)
			}
		})
	}
	wg.Wait()
}

// detect returns the language code, or nil when detection is unreliable,
// and the top confidence. It applies lingua's own rule of DetectLanguageOf
// (a tie, or a lead under the minimum relative distance, is no answer) to
// the confidence values, so that one pass over the text gives both.
func (p *languagePipe) detect(det lingua.LanguageDetector, text string) (any, any) {
	vals := det.ComputeLanguageConfidenceValues(text)
	if len(vals) < 2 {
		return nil, 0.0
	}
	top, second := vals[0].Value(), vals[1].Value()
	if top == second || top-second < p.minDistance || top < p.minConfidence {
		return nil, top
	}
	return p.codes[vals[0].Language()], top
}

func (p *languagePipe) OutputSchema(int) *pipes.Schema { return p.schema }

func (p *languagePipe) UsedFields() ([]string, bool) {
	paths := []string{p.output}
	if p.confidence != "" {
		paths = append(paths, p.confidence)
	}
	fields, ok := p.text.Fields()
	if !ok {
		return nil, false
	}
	for _, path := range paths {
		top, _, _ := strings.Cut(path, ".")
		fields = append(fields, top)
	}
	return fields, true
}

var (
	_ pipes.SchemaDeriver = (*languagePipe)(nil)
	_ pipes.FieldUser     = (*languagePipe)(nil)
)
