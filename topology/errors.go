package topology

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/streamerio/streamer/internal/spec"
)

// Diagnostic is one problem found in a topology file.
type Diagnostic struct {
	File    string
	Line    int
	Col     int
	Msg     string
	Warning bool
	// cause, when set, is the position of the diagnostic this one is a
	// consequence of: it sorts right after it.
	cause *spec.Pos
}

func (d Diagnostic) String() string {
	sev := ""
	if d.Warning {
		sev = "warning: "
	}
	if d.Line == 0 {
		return fmt.Sprintf("%s: %s%s", d.File, sev, d.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s%s", d.File, d.Line, d.Col, sev, d.Msg)
}

// Error is returned when a topology has errors. It holds all of them, and
// the warnings, sorted by position; its message has one line each.
type Error struct {
	Diagnostics []Diagnostic
}

func (e *Error) Error() string {
	lines := make([]string, len(e.Diagnostics))
	for i, d := range e.Diagnostics {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

type diags struct {
	file string
	list []Diagnostic
}

func (d *diags) add(pos spec.Pos, format string, args ...any) {
	d.list = append(d.list, Diagnostic{File: d.file, Line: pos.Line, Col: pos.Col, Msg: fmt.Sprintf(format, args...)})
}

func (d *diags) warn(pos spec.Pos, format string, args ...any) {
	d.list = append(d.list, Diagnostic{File: d.file, Line: pos.Line, Col: pos.Col, Msg: fmt.Sprintf(format, args...), Warning: true})
}

// consequence adds a diagnostic that follows from the one at cause, so
// that it is listed after it, whatever its own position.
func (d *diags) consequence(cause spec.Pos, warning bool, pos spec.Pos, format string, args ...any) {
	d.list = append(d.list, Diagnostic{File: d.file, Line: pos.Line, Col: pos.Col, Msg: fmt.Sprintf(format, args...), Warning: warning, cause: &cause})
}

func (d *diags) addAll(errs []*spec.Error) {
	for _, e := range errs {
		d.add(e.Pos, "%s", e.Msg)
	}
}

func (d *diags) failed() bool {
	for _, x := range d.list {
		if !x.Warning {
			return true
		}
	}
	return false
}

func (d *diags) sorted() []Diagnostic {
	out := slices.Clone(d.list)
	key := func(d Diagnostic) (int, int, int) {
		if d.cause != nil {
			return d.cause.Line, d.cause.Col, 1
		}
		return d.Line, d.Col, 0
	}
	slices.SortStableFunc(out, func(a, b Diagnostic) int {
		al, ac, ak := key(a)
		bl, bc, bk := key(b)
		return cmp.Or(cmp.Compare(al, bl), cmp.Compare(ac, bc), cmp.Compare(ak, bk))
	})
	return out
}
