package topology

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/streamerio/streamer/internal/spec"
)

// unknownRef is a reference to an undeclared dataset.
type unknownRef struct {
	name string
	pos  spec.Pos
}

// unbuiltUse is how pipes that could not be built use a dataset.
type unbuiltUse struct{ reads, writes bool }

// unbuiltPipe notes the datasets of a pipe that has no pipe type the
// compiler can build (none, a misspelled one, or one not linked), which
// its error at the pipe's block reports. Without it, a dataset it would
// read or write looks unused or unproduced; those diagnostics would only
// follow from the pipe's, and vanish with its fix, so edges leaves them
// out and the root cause stands alone.
func (c *compiler) unbuiltPipe(from, to []spec.Field) {
	if c.unbuilt == nil {
		c.unbuilt = map[string]unbuiltUse{}
	}
	for _, f := range from {
		u := c.unbuilt[f.Name]
		u.reads = true
		c.unbuilt[f.Name] = u
	}
	for _, f := range to {
		u := c.unbuilt[f.Name]
		u.writes = true
		c.unbuilt[f.Name] = u
	}
}

// datasetDiag reports a problem of dataset d; when d is the likely meaning
// of a misspelled reference, it is reported as a consequence of that.
func (c *compiler) datasetDiag(d *Dataset, warning bool, format string, args ...any) {
	ref, ok := c.misspelled[d.Name]
	if !ok {
		if warning {
			c.d.warn(d.Pos, format, args...)
		} else {
			c.d.add(d.Pos, format, args...)
		}
		return
	}
	msg := fmt.Sprintf(format, args...) + fmt.Sprintf(", perhaps because %q at line %d means it", ref.name, ref.pos.Line)
	c.d.consequence(ref.pos, warning, d.Pos, "%s", msg)
}

// lostSchema warns that pipe p, whose input schema is known, says nothing
// of the schema of output o, which has none declared: the expressions of
// the pipes reading o are not type-checked, so a misspelled field there
// validates and reads as null.
func (c *compiler) lostSchema(p *Pipe, deriver bool, o *Dataset) {
	if len(o.Readers) == 0 {
		return
	}
	names := make([]string, len(o.Readers))
	for i, r := range o.Readers {
		names[i] = strconv.Quote(r.Name)
	}
	how := "implement pipes.SchemaDeriver (OutputSchema(port int) *pipes.Schema) in the pipe type"
	if deriver {
		how = "make the pipe type's OutputSchema return the schema when its input schema is known"
	}
	c.d.warn(p.Pos, "pipe %q (%s) declares no schema for dataset %q, so type-checking stops there: the expressions of pipe %s, which read it, are not checked, and a misspelled field in them validates and reads as null. To check them, %s, or declare schema: on dataset %q",
		p.Name, p.Type, o.Name, strings.Join(names, ", "), how, o.Name)
}
