package pipes_test

import (
	"strings"
	"testing"

	"github.com/streamerio/streamer/internal/testfixtures"
	"github.com/streamerio/streamer/pipes"
)

// The fixtures these tests share with internal/builtin's.
var (
	nullSchema  = testfixtures.NullSchema()
	compileNull = testfixtures.CompileExpr
)

// TestNullRuleCompile: what validate accepts and rejects on fields the
// schema lets be null, and whether the result may be null.
func TestNullRuleCompile(t *testing.T) {
	for _, tt := range []struct {
		src      string
		bool     bool
		err      string // "" if it compiles
		nullable bool
	}{
		{src: `ua == "curl"`},
		{src: `ua != nil && ua > "a"`},
		{src: `ua == nil || ua > "a"`},
		{src: `ua != nil ? ua + "!" : "none"`},
		{src: `!(ua == nil) && len(ua) > 2`},
		{src: `(n ?? 0) > 5`},
		{src: `ua ?? "unknown"`},
		{src: `ua`, nullable: true},
		{src: `ts > 0 ? ua : "x"`, nullable: true},
		{src: `geo?.country`, nullable: true},
		{src: `geo != nil ? geo.country : ""`},
		{src: `geo != nil && geo.city != nil && geo.city > "m"`},
		{src: `let u = ua ?? ""; u + "!"`},
		{src: `string(ua) + toJSON(n)`},
		{src: `[ua, n]`},
		{src: `{"a": ua}`},
		{src: `ts > 5`},
		{src: `n > 5`, err: `n may be null (its schema allows null or does not require it), and ">" does not take null; write (n ?? 0) > 5, or test n != nil first`},
		{src: `5 < n`, err: `write 5 < (n ?? 0)`},
		{src: `ua + "x"`, err: `write (ua ?? "") + "x"`},
		{src: `ua in ["a", "b"]`, err: `write (ua ?? "") in ["a", "b"]`},
		{src: `ua startsWith "a"`, err: `"startsWith" does not take null`},
		{src: `ua matches "^a"`, err: `"matches" does not take null`},
		{src: `len(ua)`, err: `write len(ua ?? "")`},
		{src: `geo.country`, err: `geo may be null (its schema allows null or does not require it), and member access does not take null; write geo?.country`},
		{src: `geo != nil && geo.city > "m"`, err: `geo.city may be null`},
		{src: `let u = ua; u + "!"`, err: `u may be null`},
		{src: `ua == nil && ua > "a"`, err: `ua may be null`},
		{src: `ua != nil || ua > "a"`, err: `ua may be null`},
		{src: `ua == "x"`, bool: true},
		{src: `ua != nil`, bool: true},
		{src: `geo?.country == "DE"`, bool: true},
		{src: `ok`, bool: true, err: `the condition may be null (a field in it may be null by its schema), and a condition must be true or false; write (ok) ?? false`},
		{src: `ok ?? false`, bool: true},
		{src: `!ok`, bool: true, err: `"!" does not take null; write !(ok ?? false)`},
		{src: `ok && ts > 0`, bool: true, err: `"&&" does not take null`},
	} {
		var opts []pipes.ExprOption
		if tt.bool {
			opts = append(opts, pipes.AsBool())
		}
		p, err := compileNull(tt.src, nullSchema, opts...)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("%s: %v", tt.src, err)
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("%s: got %v, want an error with %q", tt.src, err, tt.err)
		case err == nil && p.Nullable() != tt.nullable:
			t.Errorf("%s: Nullable() = %v, want %v", tt.src, p.Nullable(), tt.nullable)
		}
	}
}

// TestNullRuleEval: == and != take null and absent as a value, ?. and ??
// give a default; an operation on a null that the schema did not foresee
// fails with an error naming the operand that was null.
func TestNullRuleEval(t *testing.T) {
	for _, tt := range []struct {
		src    string
		schema *pipes.Schema
		value  map[string]any
		want   any
		err    string
	}{
		{src: `ua == "curl"`, schema: nullSchema, value: map[string]any{"ua": nil}, want: false},
		{src: `ua == "curl"`, schema: nullSchema, value: map[string]any{}, want: false},
		{src: `ua == "curl"`, schema: nullSchema, value: map[string]any{"ua": "curl"}, want: true},
		{src: `ua != "curl"`, schema: nullSchema, value: map[string]any{}, want: true},
		{src: `ua == nil`, schema: nullSchema, value: map[string]any{}, want: true},
		{src: `ua == geo?.city`, schema: nullSchema, value: map[string]any{}, want: true},
		{src: `geo?.city == "Paris"`, schema: nullSchema, value: map[string]any{"geo": map[string]any{"country": "FR"}}, want: false},
		{src: `(n ?? 1) * 2`, schema: nullSchema, value: map[string]any{"n": nil}, want: 2},
		{src: `ts == 3`, schema: nullSchema, value: map[string]any{}, want: false},
		// A required field that is missing all the same, and an unknown schema.
		{src: `ts > 3`, schema: nullSchema, value: map[string]any{}, err: `ts is null`},
		{src: `x > 3`, value: map[string]any{"x": nil}, err: `expression "x > 3": x is null (invalid operation: <nil> > int)`},
		{src: `y == 1 && lower(x) == "a"`, value: map[string]any{"y": 1}, err: `x is null`},
		{src: `a.b + 1`, value: map[string]any{"a": map[string]any{}}, err: `a.b is null`},
		{src: `x ?? (y + 1)`, value: map[string]any{"x": nil, "y": nil}, err: `y is null`},
	} {
		p, err := compileNull(tt.src, tt.schema)
		if err != nil {
			t.Errorf("%s: %v", tt.src, err)
			continue
		}
		got, err := p.Eval(&pipes.Record{Value: tt.value})
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s over %v: got %v, %v; want an error with %q", tt.src, tt.value, got, err, tt.err)
			}
		case err != nil:
			t.Errorf("%s over %v: %v", tt.src, tt.value, err)
		case got != tt.want:
			t.Errorf("%s over %v: got %v, want %v", tt.src, tt.value, got, tt.want)
		}
	}
}
