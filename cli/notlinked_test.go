package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The cli package does not import pipes/language (cmd/streamer does), so
// this test binary is a custom build without the language pipe: a topology
// that uses it fails to validate at the pipe's type key, with the import
// that adds it, and nothing else about that pipe; `streamer pipes language`
// says the same.
func TestLanguagePipeNotLinked(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.yaml")
	src := "name: t\ndatasets:\n  in: {topic: in}\n  out: {topic: out}\npipes:\n  detect:\n    from: in\n    to: out\n    language: {text: message, output: lang}\n"
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	const why = `the language pipe is not in this build of streamer: a binary has it only if it imports "github.com/streamerio/streamer/pipes/language"`
	var out, errb bytes.Buffer
	if code := run([]string{"validate", file}, &out, &errb); code != ExitInvalid {
		t.Fatalf("exit %d, want %d\n%s%s", code, ExitInvalid, out.String(), errb.String())
	}
	if want := file + `:9:5: pipe "detect": ` + why; !strings.Contains(errb.String(), want) {
		t.Errorf("stderr lacks %q:\n%s", want, errb.String())
	}
	for _, s := range []string{"VERSION-language", "-tags nolanguage"} {
		if !strings.Contains(errb.String(), s) {
			t.Errorf("stderr lacks %q:\n%s", s, errb.String())
		}
	}
	if strings.Contains(errb.String(), "has no type") || strings.Contains(errb.String(), "unknown field or pipe type") {
		t.Errorf("the pipe's root cause is repeated as other errors:\n%s", errb.String())
	}
	out.Reset()
	errb.Reset()
	if code := run([]string{"pipes", "language"}, &out, &errb); code != ExitUsage || !strings.Contains(errb.String(), why) {
		t.Errorf("streamer pipes language: exit %d, want %d and %q\n%s%s", code, ExitUsage, why, out.String(), errb.String())
	}
}

// TestNotLinkedRootCauseFirst: the datasets around a pipe that cannot be
// built (its type is not linked, or misspelled) would otherwise look unread
// or unproduced; validate prints the root cause first and not those
// consequences, which would vanish with it.
func TestNotLinkedRootCauseFirst(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "t.yaml")
	const src = `name: t
datasets:
  in: {topic: in}
  mid: {}
  out: {topic: out}
pipes:
  detect:
    from: in
    to: mid
    language: {text: message, output: lang}
  keep:
    from: mid
    to: out
    filter: {when: "true"}
`
	for _, tt := range []struct{ name, src, first string }{
		{"not linked", src, `:10:5: pipe "detect": the language pipe is not in this build of streamer`},
		{"misspelled", strings.Replace(src, "language:", "languag:", 1), `:7:3: pipe "detect" has no type`},
	} {
		if err := os.WriteFile(file, []byte(tt.src), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errb bytes.Buffer
		if code := run([]string{"validate", file}, &out, &errb); code != ExitInvalid {
			t.Fatalf("%s: exit %d, want %d\n%s%s", tt.name, code, ExitInvalid, out.String(), errb.String())
		}
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		if !strings.HasPrefix(lines[0], file+tt.first) {
			t.Errorf("%s: the first line is not the root cause %q:\n%s", tt.name, tt.first, errb.String())
		}
		for _, c := range []string{`"in" is declared but no pipe reads`, `"mid" is read by pipe "keep" but nothing produces it`} {
			if strings.Contains(errb.String(), c) {
				t.Errorf("%s: validate reports %q, a consequence of the pipe it could not build:\n%s", tt.name, c, errb.String())
			}
		}
	}
	// A dataset the pipe does not touch is still reported.
	spare := strings.Replace(src, "  out: {topic: out}\n", "  out: {topic: out}\n  spare: {}\n", 1)
	if err := os.WriteFile(file, []byte(spare), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	run([]string{"validate", file}, &out, &errb)
	if !strings.Contains(errb.String(), `:6:3: warning: dataset "spare" is declared but no pipe reads or writes it`) {
		t.Errorf("the unrelated unused dataset is no longer reported:\n%s", errb.String())
	}
}
