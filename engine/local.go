package engine

import (
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/state"
	"github.com/streamerio/streamer/topology"
)

// localState is the replica's local state as the engine sees it: the
// partition materialiser (materialise.go) and its two users, the store
// restorer (restore.go) and the table syncer (tables.go), behind one API
// for the group's callbacks, the tasks and readiness:
//
//   - start locks <state-dir>/<group> (Run, before anything else);
//   - Prepare(assigned) pauses the new partitions and materialises their
//     stores and tables in the background (the assignment callback);
//   - Take(store, partition) hands a task its store, restored (the
//     StateOpener); tables are taken through tables.OpenTable;
//   - Release(revoked) stops what was under way for revoked or lost
//     partitions (the revoke and lose callbacks);
//   - pending and restoring say whether the replica is ready;
//   - stopLoads, stopRestores and close end it, in that order around the
//     tasks' closing (Run's deferred close).
//
// A nil *localState (a topology with neither stores nor tables) does
// nothing and is always ready.
type localState struct {
	m      *materialiser
	stores *pebbleState // nil without stores
	tables *tableSyncer // nil without tables
	holds  *holds
}

var _ StateOpener = (*localState)(nil)

// newLocalState returns the local state of t, nil if t keeps none.
func newLocalState(t *topology.Topology, o *Options, hs *hooks) *localState {
	if len(t.Stores()) == 0 && len(t.Tables()) == 0 {
		return nil
	}
	l := &localState{m: newMaterialiser(t, o), holds: newHolds()}
	l.tables = newTableSyncer(t, o, l.m, hs)
	if len(t.Stores()) > 0 {
		l.stores = newPebbleState(t, o, hs, l.holds, l.m)
	}
	return l
}

// start locks the state directory; see materialiser.start.
func (l *localState) start() error {
	if l == nil {
		return nil
	}
	return l.m.start()
}

// Prepare starts materialising the stores and tables of newly assigned
// partitions, holding the partitions paused until they are done. Called
// from the assignment callback, before fetching from them begins.
func (l *localState) Prepare(cl *kgo.Client, assigned map[string][]int32) {
	if l == nil {
		return
	}
	if l.stores != nil {
		l.stores.prepare(cl, assigned)
	}
	l.tables.prepare(cl, assigned, l.holds)
}

// Release forgets the holds of revoked or lost partitions and stops their
// restores. The caller resumes the partitions.
func (l *localState) Release(cl *kgo.Client, revoked map[string][]int32) {
	if l == nil {
		return
	}
	l.holds.forget(revoked)
	if l.stores != nil {
		l.stores.release(cl, revoked)
	}
}

// Take returns a task's store, restored (pebbleState.OpenState).
func (l *localState) Take(store string, partition int32) (state.Store, error) {
	return l.stores.OpenState(store, partition)
}

// OpenState is Take, as a StateOpener.
func (l *localState) OpenState(store string, partition int32) (state.Store, error) {
	return l.Take(store, partition)
}

// opener returns the StateOpener of the tasks: nil (not a typed nil)
// without stores.
func (l *localState) opener() StateOpener {
	if l == nil || l.stores == nil {
		return nil
	}
	return l
}

// syncer returns the table syncer, nil without tables.
func (l *localState) syncer() *tableSyncer {
	if l == nil {
		return nil
	}
	return l.tables
}

// restorer returns the store restorer, nil without stores.
func (l *localState) restorer() *pebbleState {
	if l == nil {
		return nil
	}
	return l.stores
}

// restoring returns the store restores under way.
func (l *localState) restoring() []RestoreProgress {
	if l == nil || l.stores == nil {
		return nil
	}
	return l.stores.restoring()
}

// loading returns how many partitions wait for a table load.
func (l *localState) loading() int64 {
	if l == nil {
		return 0
	}
	return l.tables.loading()
}

// pending reports whether anything assigned is still being materialised.
func (l *localState) pending() bool { return len(l.restoring()) > 0 || l.loading() > 0 }

// stopLoads ends the table loads under way: before the tasks let go of
// their tables.
func (l *localState) stopLoads() {
	if l != nil {
		l.tables.stop()
	}
}

// stopRestores ends the restores under way and closes the stores they
// restored that no task took: after the tasks closed theirs.
func (l *localState) stopRestores() {
	if l != nil && l.stores != nil {
		l.stores.close()
	}
}

// close lets go of the state directory's lock and the materialiser's
// client. Every store must be closed first. It may be called more than
// once.
func (l *localState) close() {
	if l != nil {
		l.m.close()
	}
}
