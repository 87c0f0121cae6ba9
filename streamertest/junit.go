package streamertest

import (
	"encoding/xml"
	"fmt"
	"io"
	"strings"
)

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Failures int          `xml:"failures,attr"`
	Errors   int          `xml:"errors,attr"`
	Skipped  int          `xml:"skipped,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Errors   int         `xml:"errors,attr"`
	Skipped  int         `xml:"skipped,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	File      string        `xml:"file,attr"`
	Line      int           `xml:"line,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitMessage `xml:"failure,omitempty"`
	Error     *junitMessage `xml:"error,omitempty"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
	Body    string `xml:",chardata"`
}

// WriteJUnit writes results as a JUnit XML report, the format CI systems
// read: one testsuite per file, one testcase per case. An invalid file is a
// suite with one errored case; a skipped file's cases are marked skipped.
func WriteJUnit(w io.Writer, results []FileResult) error {
	var all junitSuites
	for _, r := range results {
		s := junitSuite{Name: r.File}
		var secs float64
		if r.Err != nil {
			s.Tests, s.Errors = 1, 1
			s.Cases = append(s.Cases, junitCase{Name: "load", Classname: r.File, File: r.File,
				Error: &junitMessage{Message: "invalid test file or topology", Body: r.Err.Error()}})
		}
		for _, c := range r.Cases {
			jc := junitCase{Name: c.Name, Classname: r.File, File: r.File, Line: c.Line, Time: fmt.Sprintf("%.6f", c.Duration.Seconds())}
			secs += c.Duration.Seconds()
			if r.Skipped != "" {
				jc.Skipped = &junitMessage{Message: r.Skipped}
				s.Skipped++
			}
			if !c.Passed() {
				jc.Failure = &junitMessage{Message: c.Failures[0], Body: strings.Join(c.Failures, "\n")}
				s.Failures++
			}
			s.Tests++
			s.Cases = append(s.Cases, jc)
		}
		s.Time = fmt.Sprintf("%.6f", secs)
		all.Tests += s.Tests
		all.Failures += s.Failures
		all.Errors += s.Errors
		all.Skipped += s.Skipped
		all.Suites = append(all.Suites, s)
	}
	if _, err := io.WriteString(w, xml.Header); err != nil {
		return err
	}
	enc := xml.NewEncoder(w)
	enc.Indent("", "  ")
	if err := enc.Encode(all); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\n")
	return err
}
