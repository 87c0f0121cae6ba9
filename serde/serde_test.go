package serde_test

import (
	"bytes"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/streamerio/streamer/schema"
	"github.com/streamerio/streamer/serde"
)

func avroCodec(t testing.TB) serde.Codec {
	t.Helper()
	c, err := serde.New("avro", "testdata/order.avsc")
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestAvroRoundTrip checks that plain values (as pipes and expressions see
// them) survive encode and decode, unions included.
func TestAvroRoundTrip(t *testing.T) {
	c := avroCodec(t)
	tests := []map[string]any{
		{
			"order_id": "o-1", "amount": 12.5, "qty": int64(3), "note": "gift", "status": "PAID",
			"address": map[string]any{"city": "Berlin", "zip": int32(10115)},
			"tags":    []any{"a", nil}, "attrs": map[string]any{"n": int64(1), "s": "x"},
		},
		{
			"order_id": "o-2", "amount": 0.0, "qty": int64(0), "note": nil, "status": "NEW",
			"address": nil, "tags": []any{}, "attrs": map[string]any{},
		},
	}
	for _, v := range tests {
		b, err := c.AppendEncode(nil, v)
		if err != nil {
			t.Fatalf("encode %v: %v", v, err)
		}
		got, err := c.Decode(b)
		if err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got, v) {
			t.Errorf("round trip\n got %#v\nwant %#v", got, v)
		}
	}
}

// TestAvroFromJSONNumbers checks that float64 numbers from a JSON source
// encode into long and int fields when whole, and fail clearly when not.
func TestAvroFromJSONNumbers(t *testing.T) {
	c := avroCodec(t)
	v := map[string]any{"order_id": "o", "amount": 1.0, "qty": float64(7), "status": "NEW",
		"address": map[string]any{"city": "x", "zip": float64(5)}, "tags": []any{}, "attrs": map[string]any{"n": float64(2)}}
	b, err := c.AppendEncode(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := c.Decode(b)
	if q := got.(map[string]any)["qty"]; q != int64(7) {
		t.Errorf("qty = %#v", q)
	}
	v["qty"] = 7.5
	if _, err := c.AppendEncode(nil, v); err == nil || !strings.Contains(err.Error(), "lose precision") {
		t.Errorf("fractional long: %v", err)
	}
}

func TestAvroSchema(t *testing.T) {
	s := avroCodec(t).Schema()
	want := map[string]schema.Kind{"order_id": schema.String, "amount": schema.Float64, "qty": schema.Int64,
		"note": schema.String, "status": schema.String, "address": schema.Struct, "tags": schema.Array, "attrs": schema.Map}
	for _, f := range s.Fields {
		if want[f.Name] != f.Kind {
			t.Errorf("field %s kind %v, want %v", f.Name, f.Kind, want[f.Name])
		}
	}
	if f, _ := s.Field("note"); !f.Nullable {
		t.Error("note should be nullable")
	}
	if f, _ := s.Field("address"); f.Fields == nil || f.Fields.Names()[0] != "city" {
		t.Errorf("address fields %v", f.Fields)
	}
}

func TestDecodeErrors(t *testing.T) {
	good, err := avroCodec(t).AppendEncode(nil, map[string]any{"order_id": "o", "amount": 1.0, "qty": int64(1),
		"status": "NEW", "tags": []any{}, "attrs": map[string]any{}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		format, schema string
		in             []byte
		want           string
	}{
		{"json", "", []byte(`{"a":`), "json:"},
		{"json", "", []byte(``), "json:"},
		{"avro", "testdata/order.avsc", good[:len(good)-2], "avro:"},
		{"avro", "testdata/order.avsc", append(append([]byte{}, good...), 0), "trailing bytes"},
	}
	for _, tt := range tests {
		c, err := serde.New(tt.format, tt.schema)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Decode(tt.in); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s decode of %q: %v, want %q", tt.format, tt.in, err, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct{ format, schema, want string }{
		{"avro", "", "needs a schema"},
		{"xml", "", "unknown format"},
	}
	for _, tt := range tests {
		if _, err := serde.NewFromSchema(tt.format, []byte(tt.schema)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v", tt.format, err)
		}
	}
	if _, err := serde.NewFromSchema("avro", []byte(`{"type":"record"}`)); err == nil {
		t.Error("bad avro schema accepted")
	}
	if _, err := serde.NewFromSchema("json", []byte(`[1]`)); err == nil {
		t.Error("bad json schema accepted")
	}
}

func TestJSONSchemaFields(t *testing.T) {
	b, _ := os.ReadFile("../examples/enrichment/schemas/order.json")
	c, err := serde.NewFromSchema("json", b)
	if err != nil {
		t.Fatal(err)
	}
	s := c.Schema()
	if f, ok := s.Field("amount"); !ok || f.Kind != schema.Float64 || f.Nullable {
		t.Errorf("amount: %+v", f)
	}
	if f, ok := s.Field("debug"); !ok || !f.Nullable || f.Kind != schema.String {
		t.Errorf("debug: %+v", f)
	}
}

func TestStringBytes(t *testing.T) {
	for _, f := range []string{"string", "bytes"} {
		c, _ := serde.NewFromSchema(f, nil)
		v, _ := c.Decode([]byte("héllo"))
		b, err := c.AppendEncode([]byte("x"), v)
		if err != nil || !bytes.Equal(b, []byte("xhéllo")) {
			t.Errorf("%s: %q %v", f, b, err)
		}
	}
}

func FuzzAvroDecode(f *testing.F) {
	c := avroCodec(f)
	seed, _ := c.AppendEncode(nil, map[string]any{"order_id": "o", "amount": 1.0, "qty": int64(1),
		"status": "NEW", "tags": []any{"t"}, "attrs": map[string]any{"a": "b"}})
	f.Add(seed)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode, and that encoding must be stable
		// through another decode. (The input's own bytes may differ: a varint
		// may carry redundant continuation bytes, which the encoder does not
		// reproduce. Values are compared as bytes because NaN != NaN.)
		out, err := c.AppendEncode(nil, v)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", v, err)
		}
		v2, err := c.Decode(out)
		if err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", out, err)
		}
		out2, err := c.AppendEncode(nil, v2)
		if err != nil || !bytes.Equal(out, out2) {
			t.Fatalf("round trip is not stable: %x then %x (%v)", out, out2, err)
		}
	})
}

func FuzzJSONDecode(f *testing.F) {
	c, _ := serde.NewFromSchema("json", nil)
	f.Add([]byte(`{"a":1,"b":[true,null,"x"],"c":{"d":1.5}}`))
	f.Add([]byte(`"s"`))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := c.Decode(b)
		if err != nil {
			return
		}
		out, err := c.AppendEncode(nil, v)
		if err != nil {
			t.Fatalf("decoded %#v but cannot encode it: %v", v, err)
		}
		v2, err := c.Decode(out)
		if err != nil || !reflect.DeepEqual(v, v2) {
			t.Fatalf("round trip changed %#v to %#v (%v)", v, v2, err)
		}
	})
}

// projectRoundTrip decodes b keeping only fields, re-encodes with the unread
// members, and returns the full decoding of the result.
func projectRoundTrip(t testing.TB, b []byte, fields map[string]serde.Use) (any, error) {
	c, _ := serde.NewFromSchema("json", nil)
	p := c.(serde.Projecting)
	v, unread, err := p.DecodeProjected(b, serde.NewFields(fields))
	if err != nil {
		return nil, err
	}
	out, err := p.AppendEncodeWith(nil, v, unread)
	if err != nil {
		t.Fatalf("re-encoding %q: %v", b, err)
	}
	full, err := c.Decode(out)
	if err != nil {
		t.Fatalf("re-encoded %q is not JSON (%s): %v", b, out, err)
	}
	return full, nil
}

func TestProjectedDecode(t *testing.T) {
	c, _ := serde.NewFromSchema("json", nil)
	p := c.(serde.Projecting)
	v, unread, err := p.DecodeProjected([]byte(` {"a": 1, "b": {"x": [1, "}\""]}, "c\"q": "s", "d": null, "e\u0041": 2.5} `), serde.NewFields(map[string]serde.Use{"a": serde.Whole, "d": serde.Whole, "eA": serde.Whole, "z": serde.Whole}))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, map[string]any{"a": int64(1), "d": nil, "eA": 2.5}) {
		t.Errorf("decoded %#v", v)
	}
	if string(unread) != `"b": {"x": [1, "}\""]},"c\"q": "s"` {
		t.Errorf("unread %q", unread)
	}
	for _, doc := range []string{`{"a":1,"b":2}`, `{}`, `[1,2]`, `"s"`, `{"a":{"a":1}}`, `{"b":[]}`} {
		full, _ := c.Decode([]byte(doc))
		got, err := projectRoundTrip(t, []byte(doc), map[string]serde.Use{"a": serde.Whole})
		if err != nil || !reflect.DeepEqual(got, full) {
			t.Errorf("%s: round trip gave %#v, %v", doc, got, err)
		}
	}
	for _, bad := range []string{`{"a":1,`, `{"a":1,"b":[}`, ``, `{"a":01}`, `{"b":tru}`} {
		if _, _, err := p.DecodeProjected([]byte(bad), serde.NewFields(map[string]serde.Use{"a": serde.Shallow})); err == nil {
			t.Errorf("%q decoded", bad)
		}
	}
}

// TestProjectedShallow: a shallow array keeps its elements as raw text, so
// it counts right and encodes back as it was; other shallow values decode
// whole.
func TestProjectedShallow(t *testing.T) {
	c, _ := serde.NewFromSchema("json", nil)
	p := c.(serde.Projecting)
	doc := `{"items": [ {"sku":"a","n":[1,2]} , "s\"]" ,3, [] ,null], "e":[], "o":{"x":[1]}, "s":"str", "n": 2}`
	fields := map[string]serde.Use{"items": serde.Shallow, "e": serde.Shallow, "o": serde.Shallow, "s": serde.Shallow, "n": serde.Whole}
	v, unread, err := p.DecodeProjected([]byte(doc), serde.NewFields(fields))
	if err != nil {
		t.Fatal(err)
	}
	if len(unread) != 0 {
		t.Errorf("unread %q", unread)
	}
	want := map[string]any{
		"items": serde.RawArray{json.RawMessage(`{"sku":"a","n":[1,2]}`), json.RawMessage(`"s\"]"`), json.RawMessage(`3`), json.RawMessage(`[]`), json.RawMessage(`null`)},
		"e":     serde.RawArray{},
		"o":     map[string]any{"x": []any{int64(1)}},
		"s":     "str",
		"n":     int64(2),
	}
	if !reflect.DeepEqual(v, want) {
		t.Errorf("decoded %#v,\nwant %#v", v, want)
	}
	full, _ := c.Decode([]byte(doc))
	got, err := projectRoundTrip(t, []byte(doc), fields)
	if err != nil || !reflect.DeepEqual(got, full) {
		t.Errorf("round trip gave %#v, %v", got, err)
	}
}

// FuzzProjected checks that a projected decode and re-encode keeps the
// document's meaning, decodes used fields as Decode does, and rejects
// exactly what Decode rejects.
func FuzzProjected(f *testing.F) {
	f.Add([]byte(`{"a":1,"b":"x","c":[1,{"d":2}]}`))
	f.Add([]byte(`{"a":"\u00e9\"","b":null, "c" : -0.5e3 }`))
	c, _ := serde.NewFromSchema("json", nil)
	p := c.(serde.Projecting)
	fields := map[string]serde.Use{"a": serde.Whole, "c": serde.Shallow}
	f.Fuzz(func(t *testing.T, b []byte) {
		full, ferr := c.Decode(b)
		got, perr := projectRoundTrip(t, b, fields)
		if (ferr == nil) != (perr == nil) {
			t.Fatalf("full decode error %v, projected %v", ferr, perr)
		}
		if ferr != nil {
			return
		}
		if !reflect.DeepEqual(full, got) {
			t.Fatalf("projected round trip changed %#v to %#v", full, got)
		}
		if m, ok := full.(map[string]any); ok {
			v, _, _ := p.DecodeProjected(b, serde.NewFields(fields))
			for k := range fields {
				x, ok := m[k]
				if !ok {
					continue
				}
				pv := v.(map[string]any)[k]
				if raws, ok := pv.(serde.RawArray); ok {
					// Elements stay raw: each must decode to the full one.
					elems := make([]any, len(raws))
					for i, e := range raws {
						var err error
						if elems[i], err = c.Decode(e); err != nil {
							t.Fatalf("field %s[%d]: raw %q: %v", k, i, e, err)
						}
					}
					pv = elems
				}
				if !reflect.DeepEqual(x, pv) {
					t.Fatalf("field %s: projected %#v, full %#v", k, pv, x)
				}
			}
		}
	})
}

// TestAvroExtraFieldsIgnored: fields the schema lacks are not written,
// whether or not the record type holds unions.
func TestAvroExtraFieldsIgnored(t *testing.T) {
	for _, schema := range []string{
		`{"type":"record","name":"A","fields":[{"name":"n","type":"long"}]}`,
		`{"type":"record","name":"B","fields":[{"name":"n","type":"long"},{"name":"u","type":["null","string"],"default":null}]}`,
	} {
		c, err := serde.NewFromSchema("avro", []byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		b, err := c.AppendEncode(nil, map[string]any{"n": int64(3), "u": nil, "extra": "dropped"})
		if err != nil {
			t.Fatalf("%s: %v", schema, err)
		}
		v, err := c.Decode(b)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := v.(map[string]any)["extra"]; ok || v.(map[string]any)["n"] != int64(3) {
			t.Errorf("%s: decoded %v", schema, v)
		}
	}
}

// TestProjectedRejectsAsDecode: the projected decode's own scanner accepts
// and rejects what Decode does, at each of JSON's edges, in a used field
// and in an unread one.
func TestProjectedRejectsAsDecode(t *testing.T) {
	c, _ := serde.NewFromSchema("json", nil)
	p := c.(serde.Projecting)
	fields := serde.NewFields(map[string]serde.Use{"a": serde.Whole, "s": serde.Shallow})
	values := []string{
		`"\u00e9\/\b\f\n\r\t\"\\"`, "\"\xff\xfe\"", "\"\x7f\"", "\"a\x01\"", "\"\x1f\"", `"\u12G4"`, `"\u12"`, `"\x"`, `"abc`, `"\`,
		`0`, `-0`, `-0.5e-3`, `1E+5`, `12345678901234567890`, `1.`, `-`, `01`, `1e`, `1e+`, `.5`, `+1`, `0x1`, `1.5.5`, `NaN`, `Infinity`,
		`true`, `false`, `null`, `tru`, `nul`, `fals`, `True`, `nulll`,
		`[]`, `[ 1 , [2] ]`, `[1,]`, `[,1]`, `[1 2]`, `[`, `{}`, `{"k":1}`, `{"k":1,}`, `{"k" 1}`, `{k:1}`, `{"k":}`, `{"k":1 "l":2}`, `{"\xff":1}`,
		"\"x\x00\"", "1\x00",
		strings.Repeat("[", 9999) + strings.Repeat("]", 9999),
		strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
		strings.Repeat(`{"a":`, 9999) + "1" + strings.Repeat("}", 9999),
		strings.Repeat(`{"a":`, 10000) + "1" + strings.Repeat("}", 10000),
	}
	var docs []string
	for _, v := range values {
		docs = append(docs, `{"a":`+v+`}`, `{"x": `+v+` , "a":1}`, `{"s":[`+v+`]}`, ` `+v+` `)
	}
	docs = append(docs, ``, ` `, `{`, `{"a":1}x`, `{"a":1} `, "{\"a\":1}\x00", `{"a":1}{}`, `{ }`, "\t{\n\"a\"\r:1 }\n", `{"a":1,"a":2}`, `{"a\u0041":1}`, `{"a\u12":1}`)
	for _, doc := range docs {
		_, ferr := c.Decode([]byte(doc))
		_, _, perr := p.DecodeProjected([]byte(doc), fields)
		if (ferr == nil) != (perr == nil) {
			t.Errorf("%.80q: Decode error %v, projected %v", doc, ferr, perr)
		}
	}
}
