package pipes

import (
	"errors"
	"fmt"
	"reflect"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/checker"
	"github.com/expr-lang/expr/compiler"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/optimizer"
	"github.com/expr-lang/expr/vm"

	"github.com/streamerio/streamer/internal/spec"
)

// Program is a compiled expression. It is compiled once when the pipe is
// built, and evaluated per record with a reused virtual machine, so that
// evaluation does no per-record setup. A Program is not safe for concurrent
// use; the engine gives every task its own pipes and so its own programs.
type Program struct {
	src  Expr
	prog *vm.Program
	vm   vm.VM
	// Out is the static type of the result, when the checker knows it.
	out reflect.Type
	// fields are the top-level names the expression reads; nil with $env.
	fields []string
	// nullable is whether the result may be null, by the schema.
	nullable bool
	// counted are the names of fields that the expression only passes to
	// len(), for ShallowReader implementations.
	counted []string
}

// Fields returns the top-level record fields the expression reads, and false
// if it may read any (it uses $env).
func (p *Program) Fields() ([]string, bool) {
	return p.fields, p.fields != nil
}

type identVisitor struct {
	names []string
	all   bool
	// uses and inLen count each name's occurrences, and those that are the
	// whole argument of len().
	uses, inLen map[string]int
}

func (v *identVisitor) Visit(n *ast.Node) {
	switch n := (*n).(type) {
	case *ast.IdentifierNode:
		if n.Value == "$env" {
			v.all = true
		}
		v.names = append(v.names, n.Value)
		v.uses[n.Value]++
	case *ast.BuiltinNode:
		if n.Name == "len" && len(n.Arguments) == 1 {
			if id, ok := n.Arguments[0].(*ast.IdentifierNode); ok {
				v.inLen[id.Value]++
			}
		}
	}
}

// identifiers lists the names an expression refers to, and those of them it
// only counts with len(). Names of variables and builtins may be among them;
// that only makes a projection wider.
func identifiers(root ast.Node) (names, counted []string) {
	v := &identVisitor{uses: map[string]int{}, inLen: map[string]int{}}
	ast.Walk(&root, v)
	if v.all {
		return nil, nil
	}
	for name, n := range v.inLen {
		if v.uses[name] == n {
			counted = append(counted, name)
		}
	}
	if v.names == nil {
		return []string{}, counted
	}
	return v.names, counted
}

// ExprOption changes how an expression is compiled.
type ExprOption func(*exprConf)

type exprConf struct{ kind reflect.Kind }

// AsBool requires the expression to produce a boolean.
func AsBool() ExprOption { return func(c *exprConf) { c.kind = reflect.Bool } }

// Compile compiles x against the pipe's input schema. When the schema is
// known, a reference to a field it lacks is an error; when it is not, unknown
// names evaluate to nil. Errors carry x's position in the file.
func (e *Env) Compile(x Expr, opts ...ExprOption) (*Program, error) {
	return CompileExpr(x, e.InputSchema(), opts...)
}

// CompileExpr compiles x against schema s (nil for unknown).
func CompileExpr(x Expr, s *Schema, opts ...ExprOption) (*Program, error) {
	var c exprConf
	for _, o := range opts {
		o(&c)
	}
	if strings.TrimSpace(x.Src) == "" {
		return nil, spec.Errorf(x.Pos, "empty expression")
	}
	eo := []expr.Option{}
	if s != nil {
		eo = append(eo, expr.Env(exprType(s)))
	} else {
		eo = append(eo, expr.Env(map[string]any{}), expr.AllowUndefinedVariables())
	}
	if c.kind == reflect.Bool {
		eo = append(eo, expr.AsBool())
	}
	prog, nullable, err := compile(x.Src, s, eo)
	if err != nil {
		return nil, exprError(x, err, s)
	}
	if nullable && c.kind == reflect.Bool {
		return nil, exprError(x, (&file.Error{Location: prog.Node().Location(), Message: fmt.Sprintf(
			"the condition may be null (a field in it may be null by its schema), and a condition must be true or false; write (%s) ?? false",
			x.Src)}).Bind(file.NewSource(x.Src)), s)
	}
	p := &Program{src: x, prog: prog, nullable: nullable}
	p.fields, p.counted = identifiers(prog.Node())
	if t := prog.Node().Type(); t != nil && t.Kind() != reflect.Interface {
		p.out = t
	}
	return p, nil
}

// compile is expr.Compile with two steps of the null rule between checking
// and code generation: the null check against the schema, and null-safe
// equality. It returns whether the result may be null.
func compile(src string, s *Schema, opts []expr.Option) (*vm.Program, bool, error) {
	config := conf.CreateNew()
	for _, o := range opts {
		o(config)
	}
	for name := range config.Disabled {
		delete(config.Builtins, name)
	}
	config.Check()
	tree, err := checker.ParseCheck(src, config)
	if err != nil {
		return nil, false, err
	}
	nullable := false
	if s != nil {
		var ferr *file.Error
		if nullable, ferr = checkNulls(tree.Node, s, tree.Source); ferr != nil {
			return nil, false, ferr
		}
	}
	if config.Optimize {
		if err := optimizer.Optimize(&tree.Node, config); err != nil {
			var fe *file.Error
			if errors.As(err, &fe) {
				return nil, false, fe.Bind(tree.Source)
			}
			return nil, false, err
		}
	}
	nullSafeEquality(&tree.Node)
	prog, err := compiler.Compile(tree, config)
	return prog, nullable, err
}

// exprError maps an error inside an expression to its position in the file.
func exprError(x Expr, err error, s *Schema) error {
	var fe *file.Error
	if !errors.As(err, &fe) {
		return spec.Errorf(x.Pos, "expression %q: %v", x.Src, err)
	}
	pos := x.Pos
	if fe.Line <= 1 {
		pos.Col += x.Offset + fe.Column
	} else {
		pos.Line += fe.Line - 1
		pos.Col = fe.Column + 1
	}
	msg := fe.Message
	if name, ok := strings.CutPrefix(msg, "unknown name "); ok {
		msg += spec.DidYouMean(name, s.Names())
	}
	return spec.Errorf(pos, "in expression %q: %s", x.Src, msg)
}

// Source returns the expression as written.
func (p *Program) Source() string { return p.src.Src }

// Kind returns the static kind of the result, or Any when it is not known.
func (p *Program) Kind() Kind {
	if p.out == nil {
		return Any
	}
	return KindOf(reflect.Zero(p.out).Interface())
}

// Nullable reports whether the result may be null, as far as the input
// schema tells: a field the schema lets be null, read without ?? and a
// default, makes it so.
func (p *Program) Nullable() bool { return p.nullable }

// Eval evaluates the program over a record's value.
func (p *Program) Eval(r *Record) (any, error) {
	env := envOf(r.Value)
	out, err := p.vm.Run(p.prog, env)
	if err != nil {
		return nil, p.runtimeError(err, env)
	}
	return out, nil
}

// Bool evaluates a program compiled with AsBool.
func (p *Program) Bool(r *Record) (bool, error) {
	out, err := p.Eval(r)
	if err != nil {
		return false, err
	}
	b, ok := out.(bool)
	if !ok {
		return false, fmt.Errorf("expression %q gave %T, want bool", p.src.Src, out)
	}
	return b, nil
}

// runtimeError names the operand that was null, when one was.
func (p *Program) runtimeError(err error, env map[string]any) error {
	var fe *file.Error
	if errors.As(err, &fe) {
		if name := nullOperand(p.prog.Node(), fe.Location, env); name != "" {
			return fmt.Errorf("expression %q: %s is null (%s); give it a default with %s ?? ..., or test %s != nil first", p.src.Src, name, fe.Message, name, name)
		}
		return fmt.Errorf("expression %q: %s", p.src.Src, fe.Message)
	}
	return fmt.Errorf("expression %q: %w", p.src.Src, err)
}

// envOf returns the expression environment of a value: its fields when it is
// a map, otherwise a map with the single name "value".
func envOf(v any) map[string]any {
	if m, ok := v.(map[string]any); ok {
		return m
	}
	return map[string]any{"value": v}
}
