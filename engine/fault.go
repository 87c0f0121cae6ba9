package engine

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Phase names a moment of the engine's life at which a fault can be
// injected: the moments exactly-once depends on (docs/RELIABILITY.md).
type Phase string

// The phases the engine reports to Options.Faults.
const (
	// PhaseAfterProduce: a transaction's records are produced and flushed,
	// before the consumed offsets are added to it (TxnOffsetCommit).
	PhaseAfterProduce Phase = "after-produce"
	// PhaseAfterOffsets: the broker has answered TxnOffsetCommit, before
	// EndTxn is sent.
	PhaseAfterOffsets Phase = "after-offsets"
	// PhaseAfterEndTxn: the transaction committed on the broker, before
	// the local stores commit their batches.
	PhaseAfterEndTxn Phase = "after-endtxn"
	// PhaseMidRestore: a store restore has written part of a changelog
	// partition into the store.
	PhaseMidRestore Phase = "mid-restore"
	// PhaseMidTableLoad: a table load has written part of a table
	// partition into its store.
	PhaseMidTableLoad Phase = "mid-table-load"
	// PhaseMidBulkFlush: a bulk restore (no WAL) is flushing its batch.
	PhaseMidBulkFlush Phase = "mid-bulk-flush"
)

// Phases lists every phase, for tests that loop over them.
var Phases = []Phase{PhaseAfterProduce, PhaseAfterOffsets, PhaseAfterEndTxn, PhaseMidRestore, PhaseMidTableLoad, PhaseMidBulkFlush}

// Faults is told each time the engine reaches a phase. A test
// implementation may block, fail or kill the process there. Reached is
// called from several goroutines at once (restores run in parallel), and
// must be safe for that.
type Faults interface {
	Reached(Phase)
}

// FaultAt returns Faults that calls act the n-th time phase is reached
// (counting from 1) and never again. act is typically a self-SIGKILL.
func FaultAt(phase Phase, n int, act func()) Faults {
	return &faultAt{phase: phase, n: n, act: act}
}

type faultAt struct {
	mu    sync.Mutex
	phase Phase
	n     int
	seen  int
	act   func()
}

func (f *faultAt) Reached(p Phase) {
	if p != f.phase {
		return
	}
	f.mu.Lock()
	f.seen++
	hit := f.seen == f.n
	f.mu.Unlock()
	if hit {
		f.act()
	}
}

// ParseFault parses PHASE:N (for example after-endtxn:3), the form of
// STREAMER_FAULT.
func ParseFault(s string) (Phase, int, error) {
	name, count, ok := strings.Cut(s, ":")
	if !ok {
		count = "1"
	}
	n, err := strconv.Atoi(count)
	if err != nil || n < 1 {
		return "", 0, fmt.Errorf("fault %q: the count after the colon must be a whole number from 1", s)
	}
	for _, p := range Phases {
		if Phase(name) == p {
			return p, n, nil
		}
	}
	names := make([]string, len(Phases))
	for i, p := range Phases {
		names[i] = string(p)
	}
	return "", 0, fmt.Errorf("fault %q: unknown phase %q; phases: %s", s, name, strings.Join(names, ", "))
}

// reach reports phase p to the configured Faults, if any.
func (o *Options) reach(p Phase) {
	if o.Faults != nil {
		o.Faults.Reached(p)
	}
}

// txnOffsetCommitKey is the Kafka protocol's API key of TxnOffsetCommit.
const txnOffsetCommitKey = 28

// offsetsHook reports PhaseAfterOffsets when the main client has read a
// TxnOffsetCommit response: franz-go's End sends TxnOffsetCommit and then
// EndTxn, with no seam of its own between them.
type offsetsHook struct{ o *Options }

var _ kgo.HookBrokerRead = offsetsHook{}

func (h offsetsHook) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == txnOffsetCommitKey && err == nil {
		h.o.reach(PhaseAfterOffsets)
	}
}
