package spec_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/streamerio/streamer/internal/spec"
)

type inner struct {
	Name string `yaml:"name" required:"true"`
}

type conf struct {
	S     string                `yaml:"s" default:"dflt" enum:"dflt,other"`
	B     bool                  `yaml:"b"`
	I     int                   `yaml:"i" default:"3"`
	F     float64               `yaml:"f"`
	D     time.Duration         `yaml:"d" default:"100ms"`
	E     spec.Expr             `yaml:"e"`
	Fs    []spec.Field          `yaml:"fs"`
	M     map[string]int        `yaml:"m"`
	In    *inner                `yaml:"in"`
	Ins   []inner               `yaml:"ins"`
	A     any                   `yaml:"a"`
	Exprs map[string]spec.Expr  `yaml:"exprs"`
	Out   map[string]spec.Field `yaml:"out" doc:"Output fields: output field: input field."`
	Aggs  map[string]inner      `yaml:"aggs"`
}

func decode(t *testing.T, src string) (conf, []*spec.Error) {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(src), &n); err != nil {
		t.Fatal(err)
	}
	var c conf
	errs := spec.Decode(n.Content[0], &c)
	return c, errs
}

func TestDecode(t *testing.T) {
	c, errs := decode(t, "b: true\nf: 1.5\ne: 'a > 1'\nfs: x\nm: {a: 1}\nin: {name: n}\nins: [{name: a}, {name: b}]\na: [1, two]\n")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	want := conf{
		S: "dflt", B: true, I: 3, F: 1.5, D: 100 * time.Millisecond,
		E:  spec.Expr{Src: "a > 1", Pos: spec.Pos{Line: 3, Col: 4}, Offset: 1},
		Fs: []spec.Field{{Name: "x", Pos: spec.Pos{Line: 4, Col: 5}}},
		M:  map[string]int{"a": 1}, In: &inner{Name: "n"}, Ins: []inner{{"a"}, {"b"}}, A: []any{1, "two"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got  %+v\nwant %+v", c, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	_, errs := decode(t, "s: nope\nb: maybe\ni: 1.5\nd: soon\nin: {}\nins: [{nam: x}]\nm: {a: x}\nzzz: 1\nexprs: {a: [1]}\n")
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	want := []string{
		`1:4: "nope" is not one of dflt, other`,
		`2:4: want true or false, got "maybe"`,
		`3:4: want a whole number, got "1.5"`,
		`4:4: d: "soon" is not a duration: write a number and a unit, with no space, such as 100ms, 5s, 1m or 1h`,
		`5:5: missing required field "name"`,
		`6:8: unknown field "nam" (did you mean "name"?)`,
		`6:7: missing required field "name"`,
		`7:8: want a whole number, got "x"`,
		`8:1: unknown field "zzz"`,
		`9:12: want an expression (a string), got a list`,
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDidYouMean(t *testing.T) {
	tests := []struct{ s, want string }{
		{"fitler", ` (did you mean "filter"?)`},
		{"xyz", ""},
		{"mpa", ` (did you mean "map"?)`},
	}
	for _, tt := range tests {
		if got := spec.DidYouMean(tt.s, []string{"filter", "map", "route", "explode"}); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.s, got, tt.want)
		}
	}
}

func TestJSONSchema(t *testing.T) {
	s := spec.JSONSchema(reflect.TypeOf(conf{}))
	props := s["properties"].(spec.Schema)
	if props["s"].(spec.Schema)["default"] != "dflt" || props["i"].(spec.Schema)["type"] != "integer" {
		t.Errorf("%v", props)
	}
	in := props["in"].(spec.Schema)
	if in["required"].([]string)[0] != "name" || in["additionalProperties"] != false {
		t.Errorf("nested: %v", in)
	}
}

// TestDecodeSaysWhatIsWrong: a message names the key, says what is wrong
// with the value (not only that it is wrong), and shows the shape wanted.
func TestDecodeSaysWhatIsWrong(t *testing.T) {
	for _, tt := range []struct{ src, want string }{
		{"d: -5s", `1:4: d: a duration cannot be negative, got -5s`},
		{"d: 1 minute", `1:4: d: "1 minute" is not a duration: write a number and a unit, with no space, such as 100ms, 5s, 1m or 1h`},
		{"d: [1s]", `1:4: d: want a duration such as 100ms, 5s or 1m, got a list`},
		{"out: [name, city]", `1:6: out: want a mapping, got a list; write it as {name: name, city: city} (Output fields: output field: input field)`},
		{"out: name", `1:6: out: want a mapping, got "name"; write it as {name: field} (Output fields: output field: input field)`},
		{"exprs: [a]", `1:8: exprs: want a mapping, got a list; write it as {name: expression}`},
		{"aggs: [x]", `1:7: aggs: want a mapping, got a list; write it as {name: {name: text}}`},
		{"in: [x]", `1:5: in: want a mapping, got a list; write it as {name: text}`},
		{"ins: {name: a}", `1:6: ins: want a list, got a mapping; write it as [{name: text}, ...]`},
	} {
		_, errs := decode(t, tt.src)
		if len(errs) != 1 || errs[0].Error() != tt.want {
			t.Errorf("%s:\n got %v\nwant %s", tt.src, errs, tt.want)
		}
	}
}
