package cli

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/streamerio/streamer/engine"
)

// faultEnv names the fault a replica injects into itself, PHASE:N: it
// SIGKILLs itself the N-th time the engine reaches PHASE (engine.Phases).
// For the exactly-once tests (docs/RELIABILITY.md); never set it in
// production.
const faultEnv = "STREAMER_FAULT"

// faultsFromEnv returns the Faults STREAMER_FAULT asks for, or nil.
func faultsFromEnv(log *slog.Logger) (engine.Faults, error) {
	spec := os.Getenv(faultEnv)
	if spec == "" {
		return nil, nil
	}
	phase, n, err := engine.ParseFault(spec)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", faultEnv, err)
	}
	log.Warn("fault injection is on: this replica kills itself on the way", "phase", phase, "at", n)
	return engine.FaultAt(phase, n, func() {
		log.Warn("fault injected: SIGKILL", "phase", phase, "at", n)
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
	}), nil
}
