package houserules

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// file is one parsed Go file of the repository.
type file struct {
	path string // relative to the repository root, slash-separated
	ast  *ast.File
}

func (f file) test() bool { return strings.HasSuffix(f.path, "_test.go") }

// generated reports whether the file says it is generated (the Go
// convention), which exempts it from the rules about how code is written.
func (f file) generated() bool {
	return slices.ContainsFunc(f.ast.Comments, func(g *ast.CommentGroup) bool {
		return generatedRe.MatchString(g.Text())
	})
}

var generatedRe = regexp.MustCompile(`(?m)^Code generated .* DO NOT EDIT\.$`)

// parseRepo parses every Go file below the repository root, skipping
// testdata, bin and hidden directories.
func parseRepo(t *testing.T) (*token.FileSet, []file) {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("repository root not found: %v", err)
	}
	fset := token.NewFileSet()
	var files []file
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (name == "testdata" || name == "bin" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(name, ".go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		files = append(files, file{path: filepath.ToSlash(rel), ast: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 100 {
		t.Fatalf("only %d Go files found below %s", len(files), root)
	}
	return fset, files
}

// TestHouseRules checks the rules listed in the package comment.
func TestHouseRules(t *testing.T) {
	fset, files := parseRepo(t)
	pos := func(n ast.Node) string {
		p := fset.Position(n.Pos())
		return p.String()
	}

	t.Run("package comments", func(t *testing.T) {
		documented := map[string]bool{} // directory -> has a package comment
		for _, f := range files {
			if f.test() {
				continue
			}
			dir := filepath.Dir(f.path)
			if _, seen := documented[dir]; !seen {
				documented[dir] = false
			}
			if doc := f.ast.Doc; doc != nil {
				want := "Package " + f.ast.Name.Name + " "
				if f.ast.Name.Name == "main" {
					want = "Command "
				}
				if strings.HasPrefix(doc.Text(), want) {
					documented[dir] = true
				}
			}
		}
		for dir, ok := range documented {
			if !ok {
				t.Errorf("%s: no package comment (\"Package x ...\", or \"Command x ...\" for a command)", dir)
			}
		}
	})

	t.Run("any, not interface{}", func(t *testing.T) {
		for _, f := range files {
			if f.generated() {
				continue
			}
			ast.Inspect(f.ast, func(n ast.Node) bool {
				if it, ok := n.(*ast.InterfaceType); ok && len(it.Methods.List) == 0 {
					t.Errorf("%s: interface{}: write any", pos(it))
				}
				return true
			})
		}
	})

	t.Run("libraries neither print nor exit", func(t *testing.T) {
		commands := []string{"cmd/", "cli/", "bench/", "examples/"}
		for _, f := range files {
			if f.test() || f.generated() || slices.ContainsFunc(commands, func(p string) bool { return strings.HasPrefix(f.path, p) }) {
				continue
			}
			ast.Inspect(f.ast, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok {
					return true
				}
				if what := printsOrExits(call); what != "" {
					t.Errorf("%s: %s in a library package: return an error or log with log/slog", pos(call), what)
				}
				return true
			})
		}
	})

	t.Run("a pipe is one file and its test", func(t *testing.T) {
		have := map[string]bool{}
		for _, f := range files {
			have[f.path] = true
		}
		n := 0
		for _, f := range files {
			if f.test() || filepath.Dir(f.path) != "internal/builtin" {
				continue
			}
			ast.Inspect(f.ast, func(node ast.Node) bool {
				call, ok := node.(*ast.CallExpr)
				if !ok || !isSel(call.Fun, "", "MustRegister") && !isSel(call.Fun, "", "Register") || len(call.Args) == 0 {
					return true
				}
				lit, ok := call.Args[0].(*ast.BasicLit)
				if !ok || lit.Kind != token.STRING {
					return true
				}
				name, _ := strconv.Unquote(lit.Value)
				n++
				if test := strings.TrimSuffix(f.path, ".go") + "_test.go"; !have[test] {
					t.Errorf("%s: pipe %q has no %s", pos(call), name, test)
				}
				return true
			})
		}
		if n < 10 {
			t.Errorf("found %d pipe registrations in internal/builtin/: the rule no longer sees them", n)
		}
	})

	t.Run("metrics implements every hook", func(t *testing.T) {
		hooks := map[string]string{} // "engine.PipeHook" -> where declared
		checked := map[string]bool{}
		for _, f := range files {
			pkg := filepath.Dir(f.path)
			for _, d := range f.ast.Decls {
				g, ok := d.(*ast.GenDecl)
				if !ok {
					continue
				}
				for _, s := range g.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						_, isIface := s.Type.(*ast.InterfaceType)
						if isIface && !f.test() && (pkg == "engine" || pkg == "ml") && strings.HasSuffix(s.Name.Name, "Hook") && s.Name.IsExported() {
							hooks[pkg+"."+s.Name.Name] = pos(s)
						}
					case *ast.ValueSpec:
						// var _ engine.XHook = (*Metrics)(nil)
						if pkg != "metrics" || f.test() || len(s.Names) != 1 || s.Names[0].Name != "_" {
							continue
						}
						if sel, ok := s.Type.(*ast.SelectorExpr); ok {
							if id, ok := sel.X.(*ast.Ident); ok {
								checked[id.Name+"."+sel.Sel.Name] = true
							}
						}
					}
				}
			}
		}
		if len(hooks) < 5 {
			t.Fatalf("found %d hook interfaces: the rule no longer sees them", len(hooks))
		}
		for h, at := range hooks {
			if !checked[h] {
				t.Errorf("%s: %s has no var _ %s = (*Metrics)(nil) in package metrics", at, h, h)
			}
		}
	})

	t.Run("imports that keep binaries small", func(t *testing.T) {
		const mod = "github.com/streamerio/streamer/"
		seen := 0
		for _, f := range files {
			if f.test() {
				continue
			}
			for _, imp := range f.ast.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				switch {
				case path == mod+"pipes/language":
					seen++
					// A command (package main, such as cmd/streamer or
					// bench/peers, whose W4 runs the pipe) may.
					if f.ast.Name.Name != "main" && !strings.HasPrefix(f.path, "cmd/") && !strings.HasPrefix(f.path, "examples/") {
						t.Errorf("%s: imports pipes/language, which links lingua's models into every binary that imports this package: only commands may", pos(imp))
					}
				case path == mod+"pipes" && filepath.Dir(f.path) == "serde":
					t.Errorf("%s: serde imports pipes: share types through schema or internal/unavailable instead", pos(imp))
				case path == mod+"internal/testfixtures":
					t.Errorf("%s: imports internal/testfixtures, which is for tests: only _test.go files may", pos(imp))
				}
			}
		}
		if seen == 0 {
			t.Error("no command imports pipes/language: the rule no longer sees it (or streamer lost the pipe)")
		}
	})
}

// printsOrExits names the call if it writes to standard output or error
// or ends the process.
func printsOrExits(call *ast.CallExpr) string {
	switch {
	case isSel(call.Fun, "", "print"), isSel(call.Fun, "", "println"):
		return "print"
	case isSel(call.Fun, "os", "Exit"):
		return "os.Exit"
	}
	for _, fn := range []string{"Print", "Printf", "Println"} {
		if isSel(call.Fun, "fmt", fn) {
			return "fmt." + fn
		}
	}
	for _, fn := range []string{"Print", "Printf", "Println", "Fatal", "Fatalf", "Fatalln", "Panic", "Panicf", "Panicln"} {
		if isSel(call.Fun, "log", fn) {
			return "log." + fn
		}
	}
	for _, fn := range []string{"Fprint", "Fprintf", "Fprintln"} {
		if isSel(call.Fun, "fmt", fn) && len(call.Args) > 0 && (isSel(call.Args[0], "os", "Stdout") || isSel(call.Args[0], "os", "Stderr")) {
			return "fmt." + fn + " to os.Stdout or os.Stderr"
		}
	}
	return ""
}

// isSel reports whether e is pkg.name, or the bare identifier name when pkg
// is empty.
func isSel(e ast.Expr, pkg, name string) bool {
	if pkg == "" {
		id, ok := e.(*ast.Ident)
		if ok {
			return id.Name == name
		}
		sel, ok := e.(*ast.SelectorExpr)
		return ok && sel.Sel.Name == name
	}
	sel, ok := e.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != name {
		return false
	}
	id, ok := sel.X.(*ast.Ident)
	return ok && id.Name == pkg
}

// publicAPI are the packages a custom pipe imports: streamer's public API,
// whose dependency closure must stay free of what the built-in pipes and
// the engine link (see docs/your-own-pipes.md).
var publicAPI = []string{"github.com/streamerio/streamer/pipes"}

// heavyDeps are import path prefixes that must not be in publicAPI's
// dependency closure: the ML backends and their gRPC, the state store, the
// Kafka client, the KMS clients and lingua.
var heavyDeps = []string{
	"github.com/streamerio/streamer/ml",
	"github.com/streamerio/streamer/engine",
	"github.com/streamerio/streamer/crypt",
	"github.com/streamerio/streamer/serde",
	"github.com/streamerio/streamer/internal/builtin",
	"google.golang.org/grpc",
	"github.com/yalue/onnxruntime_go",
	"github.com/cockroachdb/pebble",
	"github.com/twmb/franz-go",
	"github.com/tink-crypto/",
	"github.com/pemistahl/lingua-go",
}

// TestPublicAPIDeps lists, with the go command, every package that the
// public API links into a binary, and fails on any of heavyDeps.
func TestPublicAPIDeps(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	// go test puts its own go command first in PATH.
	args := append([]string{"list", "-deps"}, publicAPI...)
	cmd := exec.Command("go", args...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v", strings.Join(args, " "), err)
	}
	deps := strings.Fields(string(out))
	if !slices.Contains(deps, publicAPI[0]) {
		t.Fatalf("go list -deps %s did not list the package itself: %q", publicAPI[0], out)
	}
	for _, h := range heavyDeps {
		var linked []string
		for _, d := range deps {
			if d == strings.TrimSuffix(h, "/") || strings.HasPrefix(d, strings.TrimSuffix(h, "/")+"/") {
				linked = append(linked, d)
			}
		}
		if len(linked) > 0 {
			t.Errorf("the public API (%s) links %s (%d packages: %s, ...): a custom pipe's binary would carry them; move what needs them behind the public API (internal/builtin)",
				strings.Join(publicAPI, ", "), h, len(linked), linked[0])
		}
	}
}
