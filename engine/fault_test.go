package engine

import "testing"

func TestParseFault(t *testing.T) {
	p, n, err := ParseFault("after-endtxn:3")
	if err != nil || p != PhaseAfterEndTxn || n != 3 {
		t.Fatalf("after-endtxn:3 = %q %d %v", p, n, err)
	}
	if p, n, err = ParseFault("mid-restore"); err != nil || p != PhaseMidRestore || n != 1 {
		t.Fatalf("mid-restore = %q %d %v", p, n, err)
	}
	for _, bad := range []string{"nowhere:1", "after-endtxn:0", "after-endtxn:x", ""} {
		if _, _, err := ParseFault(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestFaultAtActsOnceOnTheNthTime(t *testing.T) {
	hits := 0
	f := FaultAt(PhaseAfterOffsets, 2, func() { hits++ })
	for range 5 {
		f.Reached(PhaseAfterEndTxn)
		f.Reached(PhaseAfterOffsets)
	}
	if hits != 1 {
		t.Fatalf("acted %d times, want once", hits)
	}
}
