package engine

import (
	"errors"
	"path/filepath"
)

// LockStateDir takes the lock of the group's state directory,
// <StateDir>/<group>/STREAMER-LOCK, now rather than at the start of Run, so
// that a caller can be refused before it opens anything else (a metrics
// server, a connection check). It fails with ErrStateDirInUse, naming the
// directory and the holder's pid, when another process (or another Engine
// of this one) of the group holds it: a second replica of the group on
// this machine with the same StateDir, which would share its stores and,
// with the same ReplicaID, fence its transactions. Replicas of other
// groups share a StateDir freely.
//
// Run takes the lock itself for a topology with stores or tables, which
// keeps them there. LockStateDir takes it for a stateless topology too
// (the streamer command does, so that two replicas with the default
// replica id are refused rather than fence each other), and then a
// directory that cannot be made or opened is logged and ignored: such a
// topology keeps nothing there. Run lets go of the lock when it returns,
// even if it was stopped before it started. LockStateDir must not be
// called concurrently with Run; calling it again is a no-op.
func (e *Engine) LockStateDir() error {
	if e.local != nil {
		return e.local.start()
	}
	if e.dirLock != nil {
		return nil
	}
	dir := filepath.Join(e.opts.StateDir, e.top.Group)
	f, err := lockGroupDir(dir)
	if errors.Is(err, ErrStateDirInUse) {
		return err
	}
	if err != nil {
		e.opts.Logger.Warn("not locking the state directory of a stateless topology", "err", err)
		return nil
	}
	e.dirLock = f
	return nil
}

// unlockStateDir lets go of the lock LockStateDir took for a stateless
// topology (a stateful one's goes with the materialiser).
func (e *Engine) unlockStateDir() {
	if e.dirLock != nil {
		e.dirLock.Close() // closing the file drops the flock
		e.dirLock = nil
	}
}
