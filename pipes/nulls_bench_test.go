package pipes

import (
	"testing"

	"github.com/expr-lang/expr"
)

// BenchmarkNullSafeEquality compares string equality as streamer compiles
// it (the generic comparison, which takes null) with expr's own fast path
// (which panics on null), on the same record.
func BenchmarkNullSafeEquality(b *testing.B) {
	s := &Schema{Fields: []SchemaField{{Name: "country", Kind: String, Nullable: true}}}
	const src = `country != "FR" && country != "US" && country == "DE"`
	env := map[string]any{"country": "DE"}
	b.Run("expr-fast-path", func(b *testing.B) {
		prog, err := expr.Compile(src, expr.Env(exprType(s)), expr.AsBool())
		if err != nil {
			b.Fatal(err)
		}
		p := &Program{prog: prog}
		for b.Loop() {
			if _, err := p.vm.Run(p.prog, env); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("null-safe", func(b *testing.B) {
		p, err := CompileExpr(Expr{Src: src}, s, AsBool())
		if err != nil {
			b.Fatal(err)
		}
		for b.Loop() {
			if _, err := p.vm.Run(p.prog, env); err != nil {
				b.Fatal(err)
			}
		}
	})
}
