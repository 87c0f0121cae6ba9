// Package testfixtures holds the fixtures that the tests of several
// packages share, so that each exists once. Only _test.go files import it
// (internal/houserules checks), so it is in no binary and adds nothing to
// the public API (package pipes) or its dependencies.
package testfixtures

import "github.com/streamerio/streamer/pipes"

// NullSchema returns a new schema of fields that may be null, for the
// tests of the null rule of expressions (docs/nulls.md): a
// nullable string (ua), a nullable number (n), a required number (ts), a
// nullable bool (ok) and a nullable record (geo, whose country is
// required and whose city is nullable).
func NullSchema() *pipes.Schema {
	return &pipes.Schema{Fields: []pipes.SchemaField{
		{Name: "ua", Kind: pipes.String, Nullable: true},
		{Name: "n", Kind: pipes.Float64, Nullable: true},
		{Name: "ts", Kind: pipes.Int64},
		{Name: "ok", Kind: pipes.Bool, Nullable: true},
		{Name: "geo", Kind: pipes.Struct, Nullable: true, Fields: &pipes.Schema{Fields: []pipes.SchemaField{
			{Name: "country", Kind: pipes.String},
			{Name: "city", Kind: pipes.String, Nullable: true},
		}}},
	}}
}

// CompileExpr compiles src as an expression over s.
func CompileExpr(src string, s *pipes.Schema, opts ...pipes.ExprOption) (*pipes.Program, error) {
	return pipes.CompileExpr(pipes.Expr{Src: src}, s, opts...)
}
