package streamertest_test

import (
	"testing"

	"github.com/streamerio/streamer/streamertest"
)

// TestNullEquality: a field the schema lets be null or absent compares with
// == and != as a value (null == "curl" is false, null != "x" is true); the
// record is filtered, not dead-lettered.
func TestNullEquality(t *testing.T) {
	d, err := streamertest.Load("testdata/nulls/topology.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	in := []streamertest.Record{
		{Value: map[string]any{"id": "present", "user_agent": "curl", "referrer": "x"}},
		{Value: map[string]any{"id": "null", "user_agent": nil, "referrer": "x"}},
		{Value: map[string]any{"id": "absent", "referrer": "x"}},
		{Value: map[string]any{"id": "both-absent"}},
	}
	if err := d.Input("hits", in...); err != nil {
		t.Fatal(err)
	}
	for _, dl := range d.DeadLetters() {
		t.Errorf("dead letter %v: %s", dl.Value, dl.Error)
	}
	out, err := d.Output("curl")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range out {
		got = append(got, r.Value.(map[string]any)["id"].(string))
	}
	if want := []string{"present", "both-absent"}; len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want %v", got, want)
	}
}
