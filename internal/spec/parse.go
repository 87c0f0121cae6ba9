package spec

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	goccy "github.com/goccy/go-yaml"
	goccyparser "github.com/goccy/go-yaml/parser"
	"go.yaml.in/yaml/v3"
)

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// Parse parses a YAML document into a node tree, or returns its syntax
// error with a line and column. An empty document is an error too.
func Parse(src []byte) (*yaml.Node, []*Error) {
	// go-yaml (goccy) reports syntax errors with line and column; yaml.v3,
	// which builds the node tree the decoder walks, gives only a line, often
	// the wrong one.
	if _, err := goccyparser.ParseBytes(src, 0); err != nil {
		var se *goccy.SyntaxError
		if errors.As(err, &se) && se.Token != nil {
			return nil, []*Error{Errorf(Pos{Line: se.Token.Position.Line, Col: se.Token.Position.Column}, "YAML syntax: %s", se.Message)}
		}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(src, &doc); err != nil {
		line := 1
		if m := yamlLine.FindStringSubmatch(err.Error()); m != nil {
			line, _ = strconv.Atoi(m[1])
		}
		return nil, []*Error{Errorf(Pos{Line: line, Col: 1}, "YAML syntax: %s", strings.TrimPrefix(err.Error(), "yaml: "))}
	}
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return nil, []*Error{Errorf(Pos{Line: 1, Col: 1}, "the file is empty")}
	}
	return &doc, nil
}
