package streamertest

import (
	"reflect"
	"strings"

	"github.com/streamerio/streamer/internal/spec"
)

// Reference returns the reference of the test-file format: the keys, from
// the same structs (and doc tags) that decode a file and report its errors,
// and how a case is run and compared. `streamer test --reference` prints
// it, and docs/test-files.md holds a copy that a test keeps current.
func Reference() string {
	var b strings.Builder
	section := func(title, intro string, t any) {
		b.WriteString(title + "\n")
		if intro != "" {
			b.WriteString(intro + "\n")
		}
		b.WriteString(spec.Describe(reflect.TypeOf(t), "  ") + "\n")
	}
	b.WriteString(`A test file is named NAME` + Suffix + ` and sits beside its topology.
` + "`streamer test DIR`" + ` runs every one below DIR. Each case runs on a fresh
in-process topology (the same compiled plan and pipe code as a replica; only
Kafka is replaced): tables are written, then the input is piped in, then
every sink's output and the dead letters are compared with the expectations.

`)
	section("File keys:", "", fileSpec{})
	section("Case keys (each item of cases:):", "", caseSpec{})
	section("Record keys (the items of each dataset's list under tables:, input: and expect:):", "", recordSpec{})
	section("Dead-letter keys (the items of dead_letters:):",
		"  Each key given is compared with the dead letter of the same rank; a key left out is not checked.", deadLetterSpec{})
	b.WriteString(`Matching:
  match: exact     an expected value equals the output's, field for field, at every depth.
  match: partial   only the fields an expected value gives are compared, at every depth;
                   the output may have more. Lists compare whole, item by item.
  Numbers compare by value (1 matches 1.0). An expected record's key must equal the
  output's (no key: the output has none); its headers must be among the output's.
  order: key       the records of each key come in the order given (the order within a
                   Kafka partition); records of different keys may interleave.
  order: total     all records of the dataset come in the order given.
  order: none      any order; each expected record matches a different output record.
  A sink left out of expect: is not checked; "sink: []" expects no records.
  Dead letters are compared in order, and all of them: without dead_letters: none may
  occur. error: is a substring of the error, so a message can be checked by its
  stable part; pipe:, stage:, key: and raw: must be equal.

Time:
  A case's clock starts at its time: (default 2026-01-01T00:00:00Z). An input record's
  timestamp is the clock unless it gives timestamp:, an RFC 3339 time or an offset from
  the case's time such as +5s or -1m. at: moves the clock (the wall clock pipes see,
  and the default timestamp of later records) before its record. Event-time pipes
  (window, dedupe, stream_join) run on record or event times, so out-of-order and late
  records are written as timestamps; session gaps and window closes follow from them.

Updating (streamer test --update):
  The expectations of the failing cases are rewritten in place with what the topology
  produced: each expected dataset that differs, and dead_letters:. Everything else in
  the file (comments, blank lines, the layout of other records) stays as written. A
  match: partial case stays partial: a rewritten record keeps only the fields its old
  expectation gave, in their order (a record that had none gets all of them). A dead
  letter keeps its error: substring while the error still contains it, and its key:
  and raw: only if it gave them. A case without expect: gets one with every sink.
  Each rewrite is listed ("updated case ... rewrote expect.gold"); review the diff.

Running:
  streamer test [FILES|DIRS]   --run REGEXP runs the cases whose name matches;
  --junit FILE writes a JUnit report. Exit codes: 0 all passed, 4 a case failed,
  3 a test file or its topology is invalid (each problem at file:line:col).
  From Go, streamertest.Load gives the same driver: Input, Table, Output, DeadLetters,
  SetTime and AdvanceTime.
`)
	return b.String()
}
