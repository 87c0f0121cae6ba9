package streamertest

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/topology"
)

// Suffix names test files: `streamer test DIR` runs every *.test.yaml below
// DIR.
const Suffix = ".test.yaml"

// Options control a test run.
type Options struct {
	// Update rewrites each case's expectations with what the topology
	// produced (golden mode), for review in version control.
	Update bool
	// Run, when set, runs only the cases whose name matches.
	Run *regexp.Regexp
	// Pipes are the pipe types the topologies may use, and that requires:
	// is checked against. The default, nil, is pipes.DefaultEnvironment().
	Pipes *pipes.Environment
}

// FileResult is the outcome of one test file.
type FileResult struct {
	File  string
	Cases []CaseResult
	// Err is set when the file or its topology is invalid; then no case
	// ran. A *topology.Error or *FileError lists positioned problems.
	Err error
	// Updated reports that --update rewrote the file, and Rewrote says
	// what it rewrote, one line each.
	Updated bool
	Rewrote []string
	// Skipped, when set, says why no case ran though the file is valid:
	// its topology needs pipe types (requires:) this binary lacks. Cases
	// then lists the cases that were skipped.
	Skipped string
}

// CaseResult is the outcome of one case.
type CaseResult struct {
	Name     string
	Line     int
	Col      int
	Failures []string
	Duration time.Duration
}

// Passed reports whether the case met its expectations.
func (c CaseResult) Passed() bool { return len(c.Failures) == 0 }

// FileError lists the problems of a malformed test file, as file:line:col.
type FileError struct {
	File string
	Errs []*spec.Error
}

func (e *FileError) Error() string {
	lines := make([]string, len(e.Errs))
	for i, x := range e.Errs {
		lines[i] = fmt.Sprintf("%s:%s", e.File, x.Error())
	}
	return strings.Join(lines, "\n")
}

// Find expands files and directories into the test files to run, sorted.
func Find(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, Suffix) {
				out = append(out, p)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	sort.Strings(out)
	return out, nil
}

// RunFile runs the cases of one test file.
func RunFile(file string, o Options) FileResult {
	res := FileResult{File: file}
	src, err := os.ReadFile(file)
	if err != nil {
		res.Err = err
		return res
	}
	doc, errs := spec.Parse(src)
	if len(errs) > 0 {
		res.Err = &FileError{File: file, Errs: errs}
		return res
	}
	var f fileSpec
	errs = spec.Decode(doc.Content[0], &f)
	if f.Topology == "" {
		res.Err = &FileError{File: file, Errs: errs}
		return res
	}
	if missing := lacking(o.Pipes, f.Requires); len(missing) > 0 {
		res.Skipped = fmt.Sprintf("needs pipe type%s %s, which this binary lacks: run it with a binary that registers %s",
			plural(len(missing)), strings.Join(missing, ", "), map[bool]string{true: "it", false: "them"}[len(missing) == 1])
		for _, c := range f.Cases {
			if o.Run == nil || o.Run.MatchString(c.Name) {
				res.Cases = append(res.Cases, CaseResult{Name: c.Name, Line: c.Pos.Line, Col: c.Pos.Col})
			}
		}
		return res
	}
	topFile := f.Topology
	if !filepath.IsAbs(topFile) {
		topFile = filepath.Join(filepath.Dir(file), topFile)
	}
	top, stop, err := compile(topFile, topology.WithPipes(o.Pipes))
	if err != nil {
		res.Err = err
		return res
	}
	defer stop()
	// Problems the format alone cannot see, reported with the others.
	if errs = append(errs, checkFile(top, &f)...); len(errs) > 0 {
		spec.SortErrors(errs)
		res.Err = &FileError{File: file, Errs: errs}
		return res
	}
	var actual []outcome
	for i := range f.Cases {
		c := &f.Cases[i]
		if o.Run != nil && !o.Run.MatchString(c.Name) {
			continue
		}
		start := time.Now()
		got, failures := runCase(top, c)
		res.Cases = append(res.Cases, CaseResult{Name: c.Name, Line: c.Pos.Line, Col: c.Pos.Col, Failures: failures, Duration: time.Since(start)})
		actual = append(actual, got)
	}
	if o.Update {
		rewrote, err := update(file, src, doc, &f, o.Run, actual)
		if err != nil {
			res.Err = err
			return res
		}
		res.Rewrote = rewrote
		res.Updated = len(rewrote) > 0
	}
	return res
}

// lacking returns the pipe types of requires that env (nil: the default)
// lacks.
func lacking(env *pipes.Environment, requires []string) []string {
	if env == nil {
		env = pipes.DefaultEnvironment()
	}
	var out []string
	for _, name := range requires {
		if _, ok := env.Lookup(name); !ok {
			out = append(out, name)
		}
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// checkFile reports dataset names that the topology lacks, at their position.
func checkFile(top *topology.Topology, f *fileSpec) []*spec.Error {
	var errs []*spec.Error
	names := func(keep func(*topology.Dataset) bool) []string {
		var out []string
		for n, d := range top.Datasets {
			if keep(d) {
				out = append(out, n)
			}
		}
		sort.Strings(out)
		return out
	}
	sources := names(func(d *topology.Dataset) bool { return d.IsSource() && !d.IsInternal() })
	sinks := names((*topology.Dataset).IsSink)
	tables := names(func(d *topology.Dataset) bool { return d.Table != "" })
	for _, c := range f.Cases {
		if c.Time != "" {
			if _, err := time.Parse(time.RFC3339, c.Time); err != nil {
				errs = append(errs, spec.Errorf(c.Pos, "case %q: time %q is not RFC 3339", c.Name, c.Time))
			}
		}
		for _, tb := range c.Tables {
			if !slices.Contains(tables, tb.Key) {
				errs = append(errs, spec.Errorf(tb.KeyPos, "tables: %q is not a table dataset of the topology (tables: %s)%s", tb.Key, strings.Join(tables, ", "), spec.DidYouMean(tb.Key, tables)))
			}
			for _, r := range tb.Value {
				if r.Key == nil {
					errs = append(errs, spec.Errorf(r.Pos, "a table row needs a key"))
				}
				if r.Raw != nil || r.Timestamp != "" || r.At != "" || r.Partition != nil || len(r.Headers) > 0 {
					errs = append(errs, spec.Errorf(r.Pos, "a table row takes key and value only"))
				}
			}
		}
		for _, in := range c.Input {
			if !slices.Contains(sources, in.Key) {
				errs = append(errs, spec.Errorf(in.KeyPos, "input: %q is not a source dataset of the topology (sources: %s)%s", in.Key, strings.Join(sources, ", "), spec.DidYouMean(in.Key, sources)))
			}
			for _, r := range in.Value {
				if r.Value != nil && r.Raw != nil {
					errs = append(errs, spec.Errorf(r.Pos, "give value or raw, not both"))
				}
				for _, ts := range []string{r.Timestamp, r.At} {
					if _, err := timestamp(ts, time.Time{}); err != nil {
						errs = append(errs, spec.Errorf(r.Pos, "%v", err))
					}
				}
			}
		}
		for _, ex := range c.Expect {
			if !slices.Contains(sinks, ex.Key) {
				errs = append(errs, spec.Errorf(ex.KeyPos, "expect: %q is not a dataset that pipes write to a topic (sinks: %s)%s", ex.Key, strings.Join(sinks, ", "), spec.DidYouMean(ex.Key, sinks)))
			}
		}
	}
	return errs
}

// timestamp parses an RFC 3339 time or an offset like +5s from base.
func timestamp(s string, base time.Time) (time.Time, error) {
	if s == "" {
		return base, nil
	}
	if strings.HasPrefix(s, "+") || strings.HasPrefix(s, "-") {
		d, err := time.ParseDuration(s)
		if err != nil {
			return time.Time{}, fmt.Errorf("timestamp %q: want RFC 3339 or an offset such as +5s", s)
		}
		return base.Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("timestamp %q: want RFC 3339 or an offset such as +5s", s)
	}
	return t, nil
}

// outcome is what a case produced, for --update.
type outcome struct {
	outputs map[string][]Record
	dead    []DeadLetter
}

func runCase(top *topology.Topology, c *caseSpec) (outcome, []string) {
	d := New(top)
	defer d.Close()
	if c.Time != "" {
		t, _ := time.Parse(time.RFC3339, c.Time)
		d.SetTime(t)
	}
	start := d.Now()
	var fails []string
	for _, tb := range c.Tables {
		for _, r := range tb.Value {
			if err := d.Table(tb.Key, *r.Key, r.Value); err != nil {
				fails = append(fails, fmt.Sprintf("tables %s (line %d): %v", tb.Key, r.Pos.Line, err))
			}
		}
	}
	for _, in := range c.Input {
		for _, r := range in.Value {
			rec := Record{Key: r.Key, Value: r.Value, Headers: r.Headers}
			if r.Raw != nil {
				rec.Raw = []byte(*r.Raw)
			}
			if r.At != "" {
				at, _ := timestamp(r.At, start)
				d.SetTime(at)
			}
			rec.Timestamp = d.Now()
			if r.Timestamp != "" {
				rec.Timestamp, _ = timestamp(r.Timestamp, start)
			}
			var err error
			if r.Partition != nil {
				err = d.InputPartition(in.Key, int32(*r.Partition), rec)
			} else {
				err = d.Input(in.Key, rec)
			}
			if err != nil {
				fails = append(fails, fmt.Sprintf("input %s (line %d): %v", in.Key, r.Pos.Line, err))
			}
		}
	}
	got := outcome{outputs: map[string][]Record{}, dead: d.DeadLetters()}
	for _, s := range top.Sinks() {
		recs, err := d.Output(s.Name)
		if err != nil {
			fails = append(fails, err.Error())
		}
		got.outputs[s.Name] = recs
	}
	for _, ex := range c.Expect {
		fails = append(fails, compareRecords(ex.Key, ex.Value, got.outputs[ex.Key], c.Match == "partial", c.Order)...)
	}
	fails = append(fails, compareDeadLetters(c.DeadLetters, got.dead)...)
	return got, fails
}

// compareRecords matches expected against got under an order mode and
// describes every difference.
func compareRecords(dataset string, want []recordSpec, got []Record, partial bool, order string) []string {
	var fails []string
	matches := func(w recordSpec, g Record) bool {
		return keyString(w.Key) == keyString(g.Key) && valueMatches(w.Value, g.Value, partial) && headersMatch(w.Headers, g.Headers)
	}
	describe := func(w recordSpec, g Record) string {
		var diffs []string
		if keyString(w.Key) != keyString(g.Key) {
			diffs = append(diffs, fmt.Sprintf("key: expected %s, got %s", keyString(w.Key), keyString(g.Key)))
		}
		diffs = append(diffs, valueDiff("value", w.Value, g.Value, partial)...)
		if !headersMatch(w.Headers, g.Headers) {
			diffs = append(diffs, fmt.Sprintf("headers: expected %v to be among %v", w.Headers, g.Headers))
		}
		return strings.Join(diffs, "; ")
	}
	switch order {
	case "none":
		used := make([]bool, len(got))
	next:
		for _, w := range want {
			for j, g := range got {
				if !used[j] && matches(w, g) {
					used[j] = true
					continue next
				}
			}
			fails = append(fails, fmt.Sprintf("%s: missing (line %d): key %s value %s", dataset, w.Pos.Line, keyString(w.Key), show(w.Value)))
		}
		for j, g := range got {
			if !used[j] {
				fails = append(fails, fmt.Sprintf("%s: unexpected: key %s value %s", dataset, keyString(g.Key), show(g.Value)))
			}
		}
		return fails
	}
	// total and key orders compare sequences: the whole output, or each
	// key's records.
	group := func(k *string) string {
		if order == "total" {
			return ""
		}
		return keyString(k)
	}
	var groups []string
	wantBy, gotBy := map[string][]recordSpec{}, map[string][]Record{}
	for _, w := range want {
		g := group(w.Key)
		if _, ok := wantBy[g]; !ok {
			groups = append(groups, g)
		}
		wantBy[g] = append(wantBy[g], w)
	}
	for _, r := range got {
		g := group(r.Key)
		if _, ok := wantBy[g]; !ok {
			if _, seen := gotBy[g]; !seen {
				groups = append(groups, g)
			}
		}
		gotBy[g] = append(gotBy[g], r)
	}
	for _, g := range groups {
		ws, gs := wantBy[g], gotBy[g]
		for i := 0; i < max(len(ws), len(gs)); i++ {
			switch {
			case i >= len(gs):
				fails = append(fails, fmt.Sprintf("%s: missing (line %d): key %s value %s", dataset, ws[i].Pos.Line, keyString(ws[i].Key), show(ws[i].Value)))
			case i >= len(ws):
				fails = append(fails, fmt.Sprintf("%s: unexpected: key %s value %s", dataset, keyString(gs[i].Key), show(gs[i].Value)))
			case !matches(ws[i], gs[i]):
				fails = append(fails, fmt.Sprintf("%s: record at line %d differs: %s", dataset, ws[i].Pos.Line, describe(ws[i], gs[i])))
			}
		}
	}
	return fails
}

func compareDeadLetters(want *[]deadLetterSpec, got []DeadLetter) []string {
	var ws []deadLetterSpec
	if want != nil {
		ws = *want
	}
	var fails []string
	for i := 0; i < max(len(ws), len(got)); i++ {
		switch {
		case i >= len(got):
			fails = append(fails, fmt.Sprintf("dead letters: missing: pipe %q, stage %q, error containing %q", ws[i].Pipe, ws[i].Stage, ws[i].Error))
		case i >= len(ws):
			g := got[i]
			fails = append(fails, fmt.Sprintf("dead letters: unexpected: pipe %q, stage %s, error %q, value %q", g.Pipe, g.Stage, g.Error, g.Raw))
		default:
			w, g := ws[i], got[i]
			var diffs []string
			if w.Pipe != "" && w.Pipe != g.Pipe {
				diffs = append(diffs, fmt.Sprintf("pipe: expected %q, got %q", w.Pipe, g.Pipe))
			}
			if w.Stage != "" && w.Stage != g.Stage {
				diffs = append(diffs, fmt.Sprintf("stage: expected %q, got %q", w.Stage, g.Stage))
			}
			if !strings.Contains(g.Error, w.Error) {
				diffs = append(diffs, fmt.Sprintf("error: expected it to contain %q, got %q", w.Error, g.Error))
			}
			if w.Key != nil && keyString(w.Key) != keyString(g.Key) {
				diffs = append(diffs, fmt.Sprintf("key: expected %s, got %s", keyString(w.Key), keyString(g.Key)))
			}
			if w.Raw != nil && *w.Raw != string(g.Raw) {
				diffs = append(diffs, fmt.Sprintf("raw: expected %q, got %q", *w.Raw, g.Raw))
			}
			if len(diffs) > 0 {
				fails = append(fails, fmt.Sprintf("dead letter %d differs: %s", i, strings.Join(diffs, "; ")))
			}
		}
	}
	return fails
}

func keyString(k *string) string {
	if k == nil {
		return "(none)"
	}
	return fmt.Sprintf("%q", *k)
}

func headersMatch(want, got map[string]string) bool {
	for k, v := range want {
		if got[k] != v {
			return false
		}
	}
	return true
}

// valueMatches compares an expected value (from YAML) with a decoded one.
// Numbers compare by value whatever their Go type. Partial matching checks
// only the fields the expectation gives, at every depth.
func valueMatches(want, got any, partial bool) bool {
	return len(valueDiff("", want, got, partial)) == 0
}

func valueDiff(path string, want, got any, partial bool) []string {
	if wn, ok := pipes.Float(want); ok {
		if gn, ok := pipes.Float(got); ok && wn == gn {
			return nil
		}
		return []string{fmt.Sprintf("%s: expected %s, got %s", path, show(want), show(got))}
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: expected an object, got %s", path, show(got))}
		}
		var out []string
		for _, k := range slices.Sorted(maps.Keys(w)) {
			gv, ok := g[k]
			if !ok {
				out = append(out, fmt.Sprintf("%s.%s: missing, expected %s", path, k, show(w[k])))
				continue
			}
			out = append(out, valueDiff(path+"."+k, w[k], gv, partial)...)
		}
		if !partial {
			for _, k := range slices.Sorted(maps.Keys(g)) {
				if _, ok := w[k]; !ok {
					out = append(out, fmt.Sprintf("%s.%s: unexpected, got %s", path, k, show(g[k])))
				}
			}
		}
		return out
	case []any:
		g, ok := got.([]any)
		if !ok || len(g) != len(w) {
			return []string{fmt.Sprintf("%s: expected %s, got %s", path, show(want), show(got))}
		}
		var out []string
		for i := range w {
			out = append(out, valueDiff(fmt.Sprintf("%s[%d]", path, i), w[i], g[i], partial)...)
		}
		return out
	}
	if fmt.Sprint(want) != fmt.Sprint(got) || (want == nil) != (got == nil) {
		return []string{fmt.Sprintf("%s: expected %s, got %s", path, show(want), show(got))}
	}
	return nil
}

func show(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}
