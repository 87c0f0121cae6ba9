package builtin_test

import "testing"

// TestRoute: route sends a record to the first output whose condition
// holds, or to every one with all: true, and to the default or nowhere
// when none does.
func TestRoute(t *testing.T) {
	runCases(t, "route", []pipeCase{
		{
			name: "route first match, default", outputs: []string{"big", "eu", "rest"},
			conf: "routes:\n  - when: amount > 100\n    to: big\n  - when: country == 'DE'\n    to: eu\ndefault: rest",
			in:   []string{`{"amount":500,"country":"DE"}`, `{"amount":5,"country":"DE"}`, `{"amount":5,"country":"US"}`},
			want: [][]string{{`{"amount":500,"country":"DE"}`}, {`{"amount":5,"country":"DE"}`}, {`{"amount":5,"country":"US"}`}},
		},
		{
			name: "route all matches, no default drops", outputs: []string{"big", "eu"},
			conf: "all: true\nroutes:\n  - when: amount > 100\n    to: big\n  - when: country == 'DE'\n    to: eu",
			in:   []string{`{"amount":500,"country":"DE"}`, `{"amount":5,"country":"US"}`},
			want: [][]string{{`{"amount":500,"country":"DE"}`}, {`{"amount":500,"country":"DE"}`}},
		},
	})
}
