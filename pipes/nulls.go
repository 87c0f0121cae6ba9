package pipes

import (
	"fmt"
	"reflect"
	"slices"
	"strings"

	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
)

// The null rule of expressions (README "Nulls in expressions"):
//
//   - == and != treat null as a value: null == "x" is false, null != "x" is
//     true, null == null is true. An absent field reads as null.
//   - Every other operation on a value that may be null (ordering, arithmetic,
//     string operators, in, contains, member access, most builtins, the
//     condition of ?:, and/or/not) is a compile error when the schema says
//     the operand may be null, with the fix in the message. `x ?? d` is
//     never null when d is not; `x != nil && ...`, `x == nil || ...` and
//     `x != nil ? ... : ...` narrow x to non-null in the guarded part.
//   - When such an operation meets a null that the schema did not foresee,
//     the run-time error names the operand that was null.

// nilSafeBuiltins are the builtins that take null arguments without error.
var nilSafeBuiltins = map[string]bool{
	"string": true, "toJSON": true, "type": true, "get": true, "first": true, "last": true,
}

// nullChecker walks a type-checked expression tree and reports the first
// operation on an operand that the schema says may be null. It also works
// out whether the expression's result may be null.
type nullChecker struct {
	schema *Schema
	src    file.Source
	err    *file.Error
	// vars are the let-variables in scope, and whether each may be null.
	vars []nullVar
	// nonNull are the field paths a guard has shown not to be null.
	nonNull map[string]int
}

type nullVar struct {
	name     string
	nullable bool
}

// checkNulls returns the first null-rule violation in root and whether the
// result of root may be null.
func checkNulls(root ast.Node, s *Schema, src file.Source) (nullable bool, err *file.Error) {
	c := &nullChecker{schema: s, src: src, nonNull: map[string]int{}}
	nullable = c.walk(root)
	return nullable, c.err
}

// nodePath returns the field path a node reads ("a", "a.b") when it is a
// plain identifier or a chain of named members; ok is false otherwise.
func nodePath(n ast.Node) (string, bool) {
	switch n := n.(type) {
	case *ast.ChainNode:
		return nodePath(n.Node)
	case *ast.IdentifierNode:
		if n.Value == "$env" {
			return "", false
		}
		return n.Value, true
	case *ast.MemberNode:
		prop, ok := n.Property.(*ast.StringNode)
		if !ok || n.Method {
			return "", false
		}
		base, ok := nodePath(n.Node)
		if !ok {
			return "", false
		}
		return base + "." + prop.Value, true
	}
	return "", false
}

func (c *nullChecker) isVar(name string) (nullVar, bool) {
	for i := len(c.vars) - 1; i >= 0; i-- {
		if c.vars[i].name == name {
			return c.vars[i], true
		}
	}
	return nullVar{}, false
}

// fieldNullable reports whether the schema lets the field at path be null
// or absent, and no guard has ruled that out.
func (c *nullChecker) fieldNullable(path string) bool {
	if c.nonNull[path] > 0 {
		return false
	}
	s := c.schema
	parts := strings.Split(path, ".")
	if v, ok := c.isVar(parts[0]); ok {
		return len(parts) == 1 && v.nullable
	}
	for i, p := range parts {
		f, ok := s.Field(p)
		if !ok {
			return false
		}
		if i == len(parts)-1 {
			return f.Nullable
		}
		if f.Kind != Struct || f.Fields == nil {
			return false
		}
		s = f.Fields
	}
	return false
}

// fail records a violation at operand n, with a fix: parent rewritten with
// the operand given a default.
func (c *nullChecker) fail(n ast.Node, parent ast.Node, set func(ast.Node)) {
	if c.err != nil {
		return
	}
	name := n.String()
	fix := fmt.Sprintf("test %s != nil first", name)
	if d, ok := defaultFor(n.Type()); ok && parent != nil && set != nil {
		var def ast.Node = &ast.BinaryNode{Operator: "??", Left: n, Right: d}
		switch parent.(type) {
		case *ast.BuiltinNode, *ast.CallNode:
		default:
			def = &parenNode{def.(*ast.BinaryNode)}
		}
		set(def)
		fix = fmt.Sprintf("write %s, or %s", parent.String(), fix)
		set(n)
	}
	c.err = &file.Error{Location: n.Location(), Message: fmt.Sprintf(
		"%s may be null (its schema allows null or does not require it), and %s does not take null; %s", name, opName(parent), fix)}
	c.err = c.err.Bind(c.src)
}

// parenNode prints a ?? default in parentheses, which the printer leaves out
// on the right of an operator and under a unary one.
type parenNode struct{ *ast.BinaryNode }

func (p *parenNode) String() string { return "(" + p.BinaryNode.String() + ")" }

func opName(parent ast.Node) string {
	switch p := parent.(type) {
	case *ast.BinaryNode:
		return fmt.Sprintf("%q", p.Operator)
	case *ast.UnaryNode:
		return fmt.Sprintf("%q", p.Operator)
	case *ast.BuiltinNode:
		return p.Name + "()"
	case *ast.CallNode:
		return p.Callee.String() + "()"
	case *ast.ConditionalNode:
		return "the condition of ?:"
	case *ast.MemberNode:
		return "member access"
	case *ast.SliceNode:
		return "slicing"
	}
	return "this operation"
}

// defaultFor is a neutral default for a value of type t, for the fix in a
// message.
func defaultFor(t reflect.Type) (ast.Node, bool) {
	if t == nil {
		return nil, false
	}
	switch t.Kind() {
	case reflect.String:
		return &ast.StringNode{Value: ""}, true
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return &ast.IntegerNode{Value: 0}, true
	case reflect.Bool:
		return &ast.BoolNode{Value: false}, true
	case reflect.Slice, reflect.Array:
		return &ast.ArrayNode{}, true
	}
	return nil, false
}

// operand walks child n of parent and fails when it may be null; set
// replaces the child in parent (for the fix in the message).
func (c *nullChecker) operand(n, parent ast.Node, set func(ast.Node)) {
	if c.walk(n) {
		c.fail(n, parent, set)
	}
}

// walk returns whether n may be null.
func (c *nullChecker) walk(n ast.Node) bool {
	switch n := n.(type) {
	case nil:
		return false
	case *ast.NilNode:
		return true
	case *ast.IdentifierNode:
		if v, ok := c.isVar(n.Value); ok {
			return v.nullable && c.nonNull[n.Value] == 0
		}
		return n.Value != "$env" && c.fieldNullable(n.Value)
	case *ast.ChainNode:
		return c.walk(n.Node)
	case *ast.MemberNode:
		return c.member(n)
	case *ast.UnaryNode:
		c.operand(n.Node, n, func(x ast.Node) { n.Node = x })
		return false
	case *ast.BinaryNode:
		return c.binary(n)
	case *ast.SliceNode:
		c.operand(n.Node, n, func(x ast.Node) { n.Node = x })
		c.operand(n.From, n, func(x ast.Node) { n.From = x })
		c.operand(n.To, n, func(x ast.Node) { n.To = x })
		return false
	case *ast.CallNode:
		c.walk(n.Callee)
		for i := range n.Arguments {
			c.operand(n.Arguments[i], n, func(x ast.Node) { n.Arguments[i] = x })
		}
		return false
	case *ast.BuiltinNode:
		for i := range n.Arguments {
			if nilSafeBuiltins[n.Name] {
				c.walk(n.Arguments[i])
				continue
			}
			c.operand(n.Arguments[i], n, func(x ast.Node) { n.Arguments[i] = x })
		}
		return false
	case *ast.PredicateNode:
		c.walk(n.Node)
		return false
	case *ast.ConditionalNode:
		c.operand(n.Cond, n, nil)
		t := c.guarded(n.Cond, true, func() bool { return c.walk(n.Exp1) })
		f := c.guarded(n.Cond, false, func() bool { return c.walk(n.Exp2) })
		return t || f
	case *ast.VariableDeclaratorNode:
		v := c.walk(n.Value)
		c.vars = append(c.vars, nullVar{n.Name, v})
		r := c.walk(n.Expr)
		c.vars = c.vars[:len(c.vars)-1]
		return r
	case *ast.SequenceNode:
		r := false
		for _, x := range n.Nodes {
			r = c.walk(x)
		}
		return r
	case *ast.ArrayNode:
		for _, x := range n.Nodes {
			c.walk(x)
		}
		return false
	case *ast.MapNode:
		for _, x := range n.Pairs {
			c.walk(x)
		}
		return false
	case *ast.PairNode:
		c.walk(n.Key)
		c.walk(n.Value)
		return false
	}
	return false
}

func (c *nullChecker) binary(n *ast.BinaryNode) bool {
	switch n.Operator {
	case "??":
		c.walk(n.Left)
		return c.walk(n.Right)
	case "==", "!=":
		c.walk(n.Left)
		c.walk(n.Right)
		return false
	case "&&", "and", "||", "or":
		c.operand(n.Left, n, func(x ast.Node) { n.Left = x })
		whenTrue := n.Operator == "&&" || n.Operator == "and"
		if c.guarded(n.Left, whenTrue, func() bool { return c.walk(n.Right) }) {
			c.fail(n.Right, n, func(x ast.Node) { n.Right = x })
		}
		return false
	}
	c.operand(n.Left, n, func(x ast.Node) { n.Left = x })
	c.operand(n.Right, n, func(x ast.Node) { n.Right = x })
	return false
}

// member checks a.b and a?.b: a may be null only with ?., and the result may
// be null when the field may be, or when a ?. earlier in the chain may cut
// it short.
func (c *nullChecker) member(n *ast.MemberNode) bool {
	base := c.walkIntrinsic(n.Node)
	if base && !n.Optional {
		if c.err == nil {
			name := n.Node.String()
			c.err = (&file.Error{Location: n.Node.Location(), Message: fmt.Sprintf(
				"%s may be null (its schema allows null or does not require it), and member access does not take null; write %s?.%s, or test %s != nil first",
				name, name, strings.TrimPrefix(n.Property.String(), "\""), name)}).Bind(c.src)
		}
	}
	if _, ok := n.Property.(*ast.StringNode); !ok {
		c.operand(n.Property, n, func(x ast.Node) { n.Property = x })
	}
	short := n.Optional && base || shortCircuits(c, n.Node)
	if p, ok := nodePath(n); ok {
		return c.fieldNullable(p) || short
	}
	return short
}

// walkIntrinsic returns whether n may be null other than through a ?. that
// cuts a chain short (which skips the rest of the chain).
func (c *nullChecker) walkIntrinsic(n ast.Node) bool {
	m, ok := n.(*ast.MemberNode)
	if !ok {
		return c.walk(n)
	}
	c.member(m)
	if p, ok := nodePath(m); ok {
		return c.fieldNullable(p)
	}
	return false
}

func shortCircuits(c *nullChecker, n ast.Node) bool {
	m, ok := n.(*ast.MemberNode)
	if !ok {
		return false
	}
	if m.Optional {
		if p, ok := nodePath(m.Node); ok && c.fieldNullable(p) {
			return true
		}
	}
	return shortCircuits(c, m.Node)
}

// guarded runs fn with the paths that cond being want proves not null.
func (c *nullChecker) guarded(cond ast.Node, want bool, fn func() bool) bool {
	var paths []string
	facts(cond, want, &paths)
	for _, p := range paths {
		c.nonNull[p]++
	}
	r := fn()
	for _, p := range paths {
		c.nonNull[p]--
	}
	return r
}

// facts lists the paths that are not null when cond evaluates to want.
func facts(cond ast.Node, want bool, out *[]string) {
	switch n := cond.(type) {
	case *ast.UnaryNode:
		if n.Operator == "!" || n.Operator == "not" {
			facts(n.Node, !want, out)
		}
	case *ast.BinaryNode:
		switch n.Operator {
		case "&&", "and":
			if want {
				facts(n.Left, true, out)
				facts(n.Right, true, out)
			}
		case "||", "or":
			if !want {
				facts(n.Left, false, out)
				facts(n.Right, false, out)
			}
		case "==", "!=":
			if (n.Operator == "!=") != want {
				return // x == nil is true, or x != nil is false: x is null
			}
			_, ln := n.Left.(*ast.NilNode)
			_, rn := n.Right.(*ast.NilNode)
			switch {
			case rn && !ln:
				if p, ok := nodePath(n.Left); ok {
					*out = append(*out, p)
				}
			case ln && !rn:
				if p, ok := nodePath(n.Right); ok {
					*out = append(*out, p)
				}
			}
		}
	}
}

// nullSafeEquality makes == and != compare null as a value: the compiler's
// fast paths for two strings or two ints assert the operand types and panic
// on a null. An operand that is not a literal is re-typed as a named string
// or int type, which the compiler does not take for its fast paths, and so
// compiles to the generic comparison (runtime.Equal), which takes null. A
// named type of the same kind, unlike any, needs no dereference at run time.
func nullSafeEquality(root *ast.Node) {
	ast.Walk(root, equalityVisitor{})
}

type (
	nullSafeString string
	nullSafeInt    int
)

var (
	nullSafeStringType = reflect.TypeOf(nullSafeString(""))
	nullSafeIntType    = reflect.TypeOf(nullSafeInt(0))
)

type equalityVisitor struct{}

func (equalityVisitor) Visit(n *ast.Node) {
	b, ok := (*n).(*ast.BinaryNode)
	if !ok || (b.Operator != "==" && b.Operator != "!=") {
		return
	}
	for _, side := range []ast.Node{b.Left, b.Right} {
		t := side.Type()
		if t == nil || literal(side) || t.PkgPath() != "" {
			continue
		}
		switch t.Kind() {
		case reflect.String:
			side.SetType(nullSafeStringType)
		case reflect.Int:
			side.SetType(nullSafeIntType)
		}
	}
}

func literal(n ast.Node) bool {
	switch n.(type) {
	case *ast.StringNode, *ast.IntegerNode, *ast.ConstantNode, *ast.NilNode:
		return true
	}
	return false
}

// nullOperand names the operand that was null when an evaluation failed at
// loc: a field that the failing operation reads directly, or else the first
// field of the expression that is null in env and read by an operation that
// does not take null.
func nullOperand(root ast.Node, loc file.Location, env map[string]any) string {
	var direct, first string
	var visit func(n ast.Node)
	visit = func(n ast.Node) {
		if n == nil {
			return
		}
		if !takesNull(n) {
			ops := children(n)
			if c, ok := n.(*ast.ConditionalNode); ok {
				ops = []ast.Node{c.Cond}
			}
			for _, ch := range ops {
				p, ok := nodePath(ch)
				if !ok {
					continue
				}
				if v, _ := lookupPath(env, p); v != nil {
					continue
				}
				if direct == "" && n.Location() == loc {
					direct = p
				}
				if first == "" {
					first = p
				}
			}
		}
		for _, ch := range children(n) {
			visit(ch)
		}
	}
	visit(root)
	if direct != "" {
		return direct
	}
	return first
}

// takesNull reports whether an operation accepts null operands.
func takesNull(n ast.Node) bool {
	switch n := n.(type) {
	case *ast.BinaryNode:
		return n.Operator == "??" || n.Operator == "==" || n.Operator == "!="
	case *ast.MemberNode:
		return n.Optional
	case *ast.BuiltinNode:
		return nilSafeBuiltins[n.Name]
	case *ast.ChainNode, *ast.ArrayNode, *ast.MapNode, *ast.PairNode, *ast.SequenceNode, *ast.VariableDeclaratorNode:
		return true
	}
	return false
}

func lookupPath(env map[string]any, path string) (any, bool) {
	var cur any = env
	for _, p := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[p]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// children returns a node's operands.
func children(n ast.Node) []ast.Node {
	switch n := n.(type) {
	case *ast.ChainNode:
		return []ast.Node{n.Node}
	case *ast.UnaryNode:
		return []ast.Node{n.Node}
	case *ast.BinaryNode:
		return []ast.Node{n.Left, n.Right}
	case *ast.MemberNode:
		return []ast.Node{n.Node, n.Property}
	case *ast.SliceNode:
		return []ast.Node{n.Node, n.From, n.To}
	case *ast.CallNode:
		return n.Arguments
	case *ast.BuiltinNode:
		return n.Arguments
	case *ast.PredicateNode:
		return []ast.Node{n.Node}
	case *ast.ConditionalNode:
		return []ast.Node{n.Cond, n.Exp1, n.Exp2}
	case *ast.VariableDeclaratorNode:
		return []ast.Node{n.Value, n.Expr}
	case *ast.SequenceNode:
		return n.Nodes
	case *ast.ArrayNode:
		return n.Nodes
	case *ast.MapNode:
		return n.Pairs
	case *ast.PairNode:
		return []ast.Node{n.Key, n.Value}
	}
	return nil
}

// Narrow returns s with the fields that p being true proves not null (such
// as x in x != nil) marked non-null: the output schema of a filter on p. It
// returns s itself when p proves nothing.
func (p *Program) Narrow(s *Schema) *Schema {
	if s == nil {
		return nil
	}
	var paths []string
	facts(p.prog.Node(), true, &paths)
	if len(paths) == 0 {
		return s
	}
	s = s.Clone()
	for _, path := range paths {
		cur := s
		parts := strings.Split(path, ".")
		for i, name := range parts {
			j := slices.IndexFunc(cur.Fields, func(f SchemaField) bool { return f.Name == name })
			if j < 0 {
				break
			}
			f := &cur.Fields[j]
			if i == len(parts)-1 {
				f.Nullable = false
				break
			}
			if f.Kind != Struct || f.Fields == nil {
				break
			}
			cur = f.Fields
		}
	}
	return s
}
