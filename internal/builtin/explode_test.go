package builtin_test

import "testing"

// TestExplode: explode emits one record per element of a list, none for
// an empty or null one, and fails a record whose field is not a list.
func TestExplode(t *testing.T) {
	runCases(t, "explode", []pipeCase{
		{
			name: "explode one record to many",
			conf: "items: items\nas: item\nindex: i\ndrop: [items]",
			in:   []string{`{"id":1,"items":["a","b"]}`, `{"id":2,"items":[]}`, `{"id":3,"items":null}`, `{"id":4,"items":["c"]}`},
			want: [][]string{{`{"i":0,"id":1,"item":"a"}`, `{"i":1,"id":1,"item":"b"}`, `{"i":0,"id":4,"item":"c"}`}},
		},
		{
			name: "explode of a non-list fails", conf: "items: id\nas: item",
			in:    []string{`{"id":1}`},
			want:  [][]string{nil},
			fails: []string{"want a list"},
		},
	})
}
