package builtin_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/pipes"
)

// fakeTable is a table in a map, with a schema and a kind. The values are
// what a codec decodes: maps for JSON objects.
type fakeTable struct {
	rows        map[string]any
	schema      *pipes.Schema
	partitioned bool
	err         error
	closed      int
}

var _ pipes.Table = (*fakeTable)(nil)

func (f *fakeTable) Get(key []byte) (any, bool, error) {
	if f.err != nil {
		return nil, false, f.err
	}
	v, ok := f.rows[string(key)]
	return pipes.CloneValue(v), ok, nil
}
func (f *fakeTable) Schema() *pipes.Schema { return f.schema }
func (f *fakeTable) Partitioned() bool     { return f.partitioned }
func (f *fakeTable) Close() error          { f.closed++; return nil }

var customerSchema = &pipes.Schema{Fields: []pipes.SchemaField{
	{Name: "name", Kind: pipes.String}, {Name: "segment", Kind: pipes.String}, {Name: "credit", Kind: pipes.Float64},
}}

var joinInput = &pipes.Schema{Fields: []pipes.SchemaField{
	{Name: "order_id", Kind: pipes.String}, {Name: "country", Kind: pipes.String}, {Name: "amount", Kind: pipes.Float64},
}}

// buildJoin makes a join pipe over tables by name.
func buildJoin(t *testing.T, conf string, tables map[string]*fakeTable) (pipes.Pipe, error) {
	t.Helper()
	pt, _ := pipes.Lookup("join")
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(conf), &n); err != nil {
		t.Fatal(err)
	}
	cfg, errs := pt.Decode(n.Content[0])
	if len(errs) > 0 {
		return nil, errs[0]
	}
	env := &pipes.Env{Pipe: "j", Inputs: []pipes.Port{{Dataset: "in", Schema: joinInput}}, Outputs: []pipes.Port{{Dataset: "out"}}}
	env.Tables = func(name string) (pipes.Table, error) {
		tb, ok := tables[name]
		if !ok {
			return nil, errors.New("no such table")
		}
		return tb, nil
	}
	return cfg.New(env)
}

// jrec is a stream record: its key (nil: none) and value as JSON.
type jrec struct {
	key   *string
	value string
}

func k(s string) *string { return &s }

func TestJoin(t *testing.T) {
	customers := func() *fakeTable {
		return &fakeTable{schema: customerSchema, partitioned: true, rows: map[string]any{
			"c1": map[string]any{"name": "Ada", "segment": "gold", "credit": 10.0},
			"c2": map[string]any{"name": "Bob", "segment": "basic"}, // no credit field
		}}
	}
	countries := func() *fakeTable {
		return &fakeTable{rows: map[string]any{
			"DE": map[string]any{"name": "Germany", "eu": true},
			"7":  map[string]any{"name": "numeric key"},
			"x":  "not an object",
		}}
	}
	tests := []struct {
		name, conf string
		in         []jrec
		// want is the JSON of each emitted value, then "fail: ..." for each
		// failed record.
		want []string
	}{
		{"inner fields: matches only",
			"table: customers\nfields: {customer: name, tier: segment}",
			[]jrec{{k("c1"), `{"order_id":"o1"}`}, {k("zz"), `{"order_id":"o2"}`}, {k("c2"), `{"order_id":"o3"}`}},
			[]string{`{"customer":"Ada","order_id":"o1","tier":"gold"}`, `{"customer":"Bob","order_id":"o3","tier":"basic"}`}},
		{"left fields: null without a match, and for a field the value lacks",
			"table: customers\ntype: left\nfields: {customer: name, credit: credit}",
			[]jrec{{k("zz"), `{"order_id":"o1"}`}, {k("c2"), `{"order_id":"o2"}`}, {nil, `{"order_id":"o3"}`}},
			[]string{`{"credit":null,"customer":null,"order_id":"o1"}`, `{"credit":null,"customer":"Bob","order_id":"o2"}`, `{"credit":null,"customer":null,"order_id":"o3"}`}},
		{"inner into: the whole value",
			"table: customers\ninto: customer",
			[]jrec{{k("c1"), `{"order_id":"o1"}`}, {k("nope"), `{"order_id":"o2"}`}},
			[]string{`{"customer":{"credit":10,"name":"Ada","segment":"gold"},"order_id":"o1"}`}},
		{"left into: null without a match",
			"table: customers\ntype: left\ninto: customer",
			[]jrec{{k("nope"), `{"order_id":"o2"}`}},
			[]string{`{"customer":null,"order_id":"o2"}`}},
		{"global on: any key expression",
			"table: countries\non: country\nfields: {country_name: name}",
			[]jrec{{k("c1"), `{"country":"DE"}`}, {k("c1"), `{"country":"FR"}`}, {k("c2"), `{"country":null}`}},
			[]string{`{"country":"DE","country_name":"Germany"}`}},
		{"global on: a number becomes its decimal text",
			"table: countries\non: amount\nfields: {n: name}",
			[]jrec{{nil, `{"amount":7}`}},
			[]string{`{"amount":7,"n":"numeric key"}`}},
		{"global without on: the record key",
			"table: countries\ntype: left\ninto: c",
			[]jrec{{k("DE"), `{}`}, {k("ZZ"), `{}`}},
			[]string{`{"c":{"eu":true,"name":"Germany"}}`, `{"c":null}`}},
		{"fields: of a value that is not an object fails the record",
			"table: countries\non: country\nfields: {n: name}",
			[]jrec{{nil, `{"country":"x"}`}},
			[]string{`fail: join: the value of key "x" in table "countries" is string, not an object: use into: to take it whole`}},
		{"a key expression of the wrong type fails the record",
			"table: countries\non: country == 'DE'\ninto: c",
			[]jrec{{nil, `{"country":"DE"}`}},
			[]string{`fail: join: on: "country == 'DE'" gave bool, want a string, bytes or a number`}},
		{"a value that is not an object fails the record",
			"table: customers\ninto: c",
			[]jrec{{k("c1"), `"just text"`}},
			[]string{`fail: join needs records whose values are objects, got string`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := buildJoin(t, tt.conf, map[string]*fakeTable{"customers": customers(), "countries": countries()})
			if err != nil {
				t.Fatal(err)
			}
			b := &pipes.Batch{}
			for _, r := range tt.in {
				var v any
				if err := json.Unmarshal([]byte(r.value), &v); err != nil {
					t.Fatal(err)
				}
				rec := &pipes.Record{Value: v}
				if r.key != nil {
					rec.Key = []byte(*r.key)
				}
				b.Records = append(b.Records, rec)
			}
			out := pipes.NewOutput(1)
			if err := p.Process(context.Background(), b, out); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range out.Records(0) {
				js, _ := json.Marshal(r.Value)
				got = append(got, string(js))
			}
			for _, f := range out.Failures() {
				got = append(got, "fail: "+f.Err.Error())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

// TestJoinTombstone: a key deleted from the table (a tombstone) stops
// matching at once: inner drops the record, left nulls its fields.
func TestJoinTombstone(t *testing.T) {
	tb := &fakeTable{partitioned: true, rows: map[string]any{"c1": map[string]any{"name": "Ada"}}}
	tables := map[string]*fakeTable{"customers": tb}
	inner, err := buildJoin(t, "table: customers\nfields: {n: name}", tables)
	if err != nil {
		t.Fatal(err)
	}
	left, err := buildJoin(t, "table: customers\ntype: left\nfields: {n: name}", tables)
	if err != nil {
		t.Fatal(err)
	}
	process := func(p pipes.Pipe) []string {
		out := pipes.NewOutput(1)
		b := &pipes.Batch{Records: []*pipes.Record{{Key: []byte("c1"), Value: map[string]any{}}}}
		if err := p.Process(context.Background(), b, out); err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range out.Records(0) {
			js, _ := json.Marshal(r.Value)
			got = append(got, string(js))
		}
		return got
	}
	if got := process(inner); strings.Join(got, ",") != `{"n":"Ada"}` {
		t.Errorf("before the tombstone, inner gave %v", got)
	}
	delete(tb.rows, "c1")
	if got := process(inner); len(got) != 0 {
		t.Errorf("after the tombstone, inner gave %v, want nothing", got)
	}
	if got := process(left); strings.Join(got, ",") != `{"n":null}` {
		t.Errorf("after the tombstone, left gave %v", got)
	}
}

// TestJoinTableError: a table that cannot be read fails the batch (the
// transaction aborts), not the record.
func TestJoinTableError(t *testing.T) {
	tb := &fakeTable{err: errors.New("disk gone")}
	p, err := buildJoin(t, "table: customers\ninto: c", map[string]*fakeTable{"customers": tb})
	if err != nil {
		t.Fatal(err)
	}
	err = p.Process(context.Background(), &pipes.Batch{Records: []*pipes.Record{{Key: []byte("c1"), Value: map[string]any{}}}}, pipes.NewOutput(1))
	if err == nil || !strings.Contains(err.Error(), "disk gone") {
		t.Fatalf("Process = %v, want the table's error", err)
	}
}

func TestJoinConfigErrors(t *testing.T) {
	tests := []struct{ name, conf, want string }{
		{"partitioned with on", "table: customers\non: country\ninto: c", `2:5: on: table "customers" is partitioned, so it is looked up by the record key`},
		{"unknown table field", "table: customers\nfields: {n: nmae}", `2:13: table "customers" has no field "nmae" (did you mean "name"?)`},
		{"both fields and into", "table: customers\ninto: c\nfields: {n: name}", "give fields: or into:, not both"},
		{"neither fields nor into", "table: customers", "say what the join adds"},
		{"not a table", "table: nope\ninto: c", "1:8: table: no such table"},
		{"on does not compile", "table: countries\non: cuntry\ninto: c", "unknown name cuntry"},
		{"bad type", "table: customers\ntype: outer\ninto: c", `"outer" is not one of inner, left`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tables := map[string]*fakeTable{
				"customers": {schema: customerSchema, partitioned: true},
				"countries": {},
			}
			_, err := buildJoin(t, tt.conf, tables)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

// TestJoinSchema: the output schema is the input's plus the joined fields,
// nullable, typed from the table's schema; used fields name them and the
// key expression's fields.
func TestJoinSchema(t *testing.T) {
	tables := map[string]*fakeTable{"customers": {schema: customerSchema, partitioned: true}, "countries": {}}
	p, err := buildJoin(t, "table: customers\ntype: left\nfields: {customer: name, credit: credit}", tables)
	if err != nil {
		t.Fatal(err)
	}
	s := p.(pipes.SchemaDeriver).OutputSchema(0)
	for _, want := range []pipes.SchemaField{
		{Name: "order_id", Kind: pipes.String},
		{Name: "customer", Kind: pipes.String, Nullable: true},
		{Name: "credit", Kind: pipes.Float64, Nullable: true},
	} {
		if f, ok := s.Field(want.Name); !ok || f.Kind != want.Kind || f.Nullable != want.Nullable {
			t.Errorf("field %s: got %+v (%v), want %+v", want.Name, f, ok, want)
		}
	}
	used, ok := p.(pipes.FieldUser).UsedFields()
	if !ok || strings.Join(used, ",") != "credit,customer" {
		t.Errorf("used fields %v %v", used, ok)
	}

	p, err = buildJoin(t, "table: customers\ninto: c", tables)
	if err != nil {
		t.Fatal(err)
	}
	f, _ := p.(pipes.SchemaDeriver).OutputSchema(0).Field("c")
	if f.Kind != pipes.Struct || f.Fields == nil || len(f.Fields.Fields) != 3 {
		t.Errorf("into field %+v, want a struct of the table's 3 fields", f)
	}

	p, err = buildJoin(t, "table: countries\non: country\ninto: c", tables)
	if err != nil {
		t.Fatal(err)
	}
	used, ok = p.(pipes.FieldUser).UsedFields()
	if !ok || strings.Join(used, ",") != "country,c" {
		t.Errorf("used fields %v %v", used, ok)
	}
	if err := p.(pipes.Closer).Close(); err != nil || tables["countries"].closed != 1 {
		t.Errorf("Close: %v, table closed %d times", err, tables["countries"].closed)
	}
}
