package integration

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// TestEveryTestSkipsWithoutBroker runs without a broker: every test of this
// package must begin with requireIntegration(t), or with newEnv(t) which
// calls it, so that `go test ./...` reports it as skipped, never as passed
// when it ran nothing.
func TestEveryTestSkipsWithoutBroker(t *testing.T) {
	files, err := filepath.Glob("*_test.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	n := 0
	for _, name := range files {
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			fn, ok := d.(*ast.FuncDecl)
			if !ok || fn.Recv != nil || !strings.HasPrefix(fn.Name.Name, "Test") || fn.Name.Name == "TestMain" || fn.Name.Name == "TestEveryTestSkipsWithoutBroker" {
				continue
			}
			n++
			if len(fn.Body.List) == 0 || !startsSkippable(fn.Body.List[0]) {
				t.Errorf("%s: %s does not begin with requireIntegration(t) or newEnv(t)", fset.Position(fn.Pos()), fn.Name.Name)
			}
		}
	}
	if n == 0 {
		t.Fatal("found no tests")
	}
}

// startsSkippable reports whether s calls requireIntegration or newEnv,
// as a statement or on the right of an assignment.
func startsSkippable(s ast.Stmt) bool {
	var call ast.Expr
	switch s := s.(type) {
	case *ast.ExprStmt:
		call = s.X
	case *ast.AssignStmt:
		if len(s.Rhs) == 1 {
			call = s.Rhs[0]
		}
	}
	c, ok := call.(*ast.CallExpr)
	if !ok {
		return false
	}
	id, ok := c.Fun.(*ast.Ident)
	return ok && (id.Name == "requireIntegration" || id.Name == "newEnv")
}
