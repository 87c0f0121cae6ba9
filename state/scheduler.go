package state

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/cockroachdb/pebble/v2"
)

// scheduler is each store's Pebble compaction scheduler. It lets at most
// as many compactions run as the store allows (Pebble's
// GetAllowedWithoutPermission, bounded by MaxConcurrentCompactions), as
// Pebble's default scheduler does, but none before start: pebble.Open
// waits for the compactions that start while it runs (its scan for
// obsolete files), so a store opened with a deep L0, as a bulk restore
// leaves it, would otherwise spend its first L0 compaction inside Open,
// before the replica can be ready. Started after Open returns, that
// compaction runs while the store is in use.
//
// The store owns it: Register and Unregister are Pebble's (Open, Close),
// start is openPebble's. Unregister stops its goroutine and waits for any
// grant under way; Pebble's Close then waits for the compactions running.
type scheduler struct {
	db pebble.DBForCompaction // set by Register, before any other call

	mu       sync.Mutex
	cond     sync.Cond // granting ended
	started  bool      // compactions may start
	stopped  bool      // unregistered
	granting bool      // grant is calling the DB
	running  int       // compactions granted and not done

	poke chan struct{} // grant soon
	quit chan struct{} // closed by Unregister
	done chan struct{} // closed as the granter returns
}

var _ pebble.CompactionScheduler = (*scheduler)(nil)
var _ pebble.CompactionGrantHandle = (*scheduler)(nil)

// grantEvery is how often the scheduler offers the store a compaction
// without being asked, as Pebble's default does: the store's backlog, and
// so the compactions it may run, change with flushes it does not report.
const grantEvery = 100 * time.Millisecond

// holdCompactions, set by tests only, keeps every scheduler from starting
// compactions, as before start.
var holdCompactions atomic.Bool

func newScheduler() *scheduler {
	s := &scheduler{poke: make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{})}
	s.cond.L = &s.mu
	return s
}

// Register is called by pebble.Open.
func (s *scheduler) Register(_ int, db pebble.DBForCompaction) { s.db = db }

// start lets compactions begin. It must be called once, after Open.
func (s *scheduler) start() {
	s.mu.Lock()
	s.started = true
	s.mu.Unlock()
	go s.granter()
	s.wake()
}

// Unregister is called by DB.Close.
func (s *scheduler) Unregister() {
	s.mu.Lock()
	s.stopped = true
	for s.granting {
		s.cond.Wait()
	}
	started := s.started
	s.mu.Unlock()
	if started {
		close(s.quit)
		<-s.done
	}
}

// TrySchedule is called by the DB, which holds its mutex.
func (s *scheduler) TrySchedule() (bool, pebble.CompactionGrantHandle) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.started || s.stopped || holdCompactions.Load() || s.db.GetAllowedWithoutPermission() <= s.running {
		return false, nil
	}
	s.running++
	return true, s
}

// UpdateGetAllowedWithoutPermission is called by the DB when it may run
// more compactions.
func (s *scheduler) UpdateGetAllowedWithoutPermission() { s.wake() }

// Started, MeasureCPU and CumulativeStats are the grant handle's reports,
// which this scheduler does not use.
func (s *scheduler) Started()                                          {}
func (s *scheduler) MeasureCPU(pebble.CompactionGoroutineKind)         {}
func (s *scheduler) CumulativeStats(pebble.CompactionGrantHandleStats) {}

// Done is called as a granted compaction ends.
func (s *scheduler) Done() {
	s.mu.Lock()
	s.running--
	s.mu.Unlock()
	s.wake()
}

func (s *scheduler) wake() {
	select {
	case s.poke <- struct{}{}:
	default:
	}
}

func (s *scheduler) granter() {
	defer close(s.done)
	t := time.NewTicker(grantEvery)
	defer t.Stop()
	for {
		select {
		case <-s.quit:
			return
		case <-t.C:
		case <-s.poke:
		}
		s.grant()
	}
}

// grant offers the DB as many compactions as it may run. It calls the DB
// without holding s.mu: the DB calls TrySchedule holding its own mutex.
func (s *scheduler) grant() {
	s.mu.Lock()
	if !s.started || s.stopped || s.granting || holdCompactions.Load() {
		s.mu.Unlock()
		return
	}
	n := s.db.GetAllowedWithoutPermission() - s.running
	if n <= 0 {
		s.mu.Unlock()
		return
	}
	s.granting = true
	s.mu.Unlock()
	for ; n > 0; n-- {
		if waiting, _ := s.db.GetWaitingCompaction(); !waiting || !s.db.Schedule(s) {
			break
		}
		s.mu.Lock()
		s.running++
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.granting = false
	s.cond.Broadcast()
	s.mu.Unlock()
}
