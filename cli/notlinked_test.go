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
