package main

import (
	"testing"

	"github.com/streamerio/streamer/bench/internal/benchkit"
)

// The hand-written programs' map and the oracle are written independently
// (shape parses the amount and items, the oracle takes them from the
// generator); they must agree, and the digest must tell a changed record
// from a right one.
func TestShapeMatchesOracle(t *testing.T) {
	in := benchkit.Input{Records: 3000, Size: 1024}
	g := in.Orders()
	var got fingerprint
	for i := 0; i < in.Records; i++ {
		o := g.Next()
		out, keep, err := shape(o.Value)
		if err != nil {
			t.Fatal(err)
		}
		if keep {
			got.add(o.Key, out)
		}
	}
	if want := expected(in); got != want {
		t.Fatalf("shape gives %v, the oracle %v", got, want)
	}
	if id := inputDigest(in); id.n != got.n || id.sum == got.sum {
		t.Fatalf("the input's digest %v should differ from the output's %v in content only", id, got)
	}
	// One record's value changed: the digest differs.
	g = in.Orders()
	var one fingerprint
	for i := 0; i < in.Records; i++ {
		o := g.Next()
		out, _, _ := shape(o.Value)
		if i == 17 {
			out, _, _ = shape(append([]byte(nil), o.Value...))
			out = append(out[:len(out)-1], []byte(`,"x":1}`)...)
		}
		one.add(o.Key, out)
	}
	if one == got {
		t.Fatal("a changed record left the digest as it was")
	}
}
