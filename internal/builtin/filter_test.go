package builtin_test

import "testing"

// TestFilter: filter keeps the records its expression is true for, in
// order, and fails those it cannot evaluate.
func TestFilter(t *testing.T) {
	runCases(t, "filter", []pipeCase{
		{
			name: "filter keeps matches in order", conf: `when: amount > 10`,
			in:   []string{`{"amount":5}`, `{"amount":20}`, `{"amount":11}`},
			want: [][]string{{`{"amount":20}`, `{"amount":11}`}},
		},
		{
			name: "filter fails a record whose expression fails", conf: `when: amount > 10`,
			in:    []string{`{"amount":"x"}`, `{"amount":30}`},
			want:  [][]string{{`{"amount":30}`}},
			fails: []string{`expression "amount > 10"`},
		},
	})
}
