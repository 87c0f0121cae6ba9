package state

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Keys are split into two spaces so that metadata never collides with user
// keys: user keys get the prefix 'u', the checkpoint lives under 'm'.
var (
	userPrefix    = []byte{'u'}
	checkpointKey = []byte("mcheckpoint")
)

// Pebble is a Store on a Pebble database in one directory. The open
// transaction is an indexed batch: reads go through it, so they see its
// writes, and Commit writes it with the checkpoint in one synced commit.
type Pebble struct {
	db    *pebble.DB
	batch *pebble.Batch
	buf   []byte
	got   []byte
	bulk  bool // opened by OpenPebbleBulk: no write-ahead log
	// commitOpt is how Commit writes: pebble.Sync unless NoSyncCommit.
	commitOpt *pebble.WriteOptions

	// iter serves Range and Prefix, one after another, over the open
	// transaction: a join looks up a key range per record, and making and
	// closing an iterator through every level each time cost more than the
	// scan. Re-bounding it refreshes its view of the batch, but not of the
	// database, which it sees as it was when it was made: commits, aborts
	// and a Loader's flushes close it. bounds holds
	// the bounds of the last two scans, as the iterator may compare the
	// old ones with the new; inRange is set while a scan runs, when a
	// nested one gets an iterator of its own.
	iter    *pebble.Iterator
	bounds  [2][2][]byte
	flip    int
	inRange bool
}

var _ Store = (*Pebble)(nil)

// PebbleOptions tunes the Pebble stores. A replica opens one store per
// (store, partition) it owns, so the sizes below are multiplied by the
// partitions a replica holds, except the block cache, which all the stores
// of a process share. The zero value gives the defaults, which keep a
// replica with a few partitions of state much larger than memory (10M keys,
// bench/RESULTS.md "State") well under 512 MB resident.
type PebbleOptions struct {
	// CacheSize is the block cache shared by every store the process opens
	// with the same size, in bytes. Default 64 MB. Pebble's own default is
	// 8 MB per database; one shared cache keeps memory flat however many
	// partitions a replica holds, and the Bloom filters (below) keep most
	// lookups of absent keys from reading blocks at all.
	CacheSize int64
	// MemTableSize is each store's write buffer, in bytes; a store holds at
	// most two while one is flushed. Default 4 MB (Pebble's): larger ones
	// make restores flush less often, but cost memory per partition.
	MemTableSize uint64
	// MaxConcurrentCompactions per store. Default 1 (Pebble's): replicas
	// run on a few cores, which the pipes need more than compactions.
	MaxConcurrentCompactions int
	// BulkMemTableSize is the memtable of a store opened for a bulk load
	// (OpenPebbleBulk), as a restore from far behind is. Default 16 MB:
	// restores measured the same from 8 to 64 MB (bench/RESULTS.md,
	// "State"); the engine runs one restore per core at a time.
	BulkMemTableSize uint64
	// SeparateValues is the value size from which a store keeps values in
	// blob files beside its tables, so that compactions move a reference
	// instead of rewriting the value (Pebble's value separation). Default
	// 256 bytes; negative turns it off. It pays where large values are
	// written and deleted (a stream join keeps whole records until their
	// window passes: 18-22% less CPU per record, bench/RESULTS.md); small
	// ones, such as aggregates, stay in the tables. Bulk loads do not
	// separate: compacting their overlapping tables once was slower with
	// blob files.
	SeparateValues int
	// BloomBitsPerKey sizes the Bloom filters of the tables, which let a
	// Get of a key that is not in a table skip reading it. Default 10 (1%
	// false positives, 1.25 bytes per key). An aggregate looks up every key
	// it sees for the first time, so without filters each new key costs a
	// read in every level.
	BloomBitsPerKey int
	// NoSyncCommit makes Commit return once Pebble has its batch,
	// without waiting for the disk (pebble.NoSync). A crash may lose the
	// last commits, checkpoint and all: small log writes stay in Pebble's
	// buffer until a 32 KB block fills or a sync, so even a process crash
	// loses them. The store reopens as a prefix of its commits at that
	// prefix's checkpoint (TestNoSyncCrashKeepsAConsistentPrefix), which
	// the engine restores on from the changelog. Default false: every
	// Commit syncs. (The engine turns it on: engine.Options.StateSync.)
	NoSyncCommit bool
	// FS is the filesystem the store lives on. Default: the disk
	// (vfs.Default). Tests pass a crashable in-memory one.
	FS vfs.FS
}

func (o *PebbleOptions) setDefaults() {
	if o.CacheSize <= 0 {
		o.CacheSize = 64 << 20
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = 4 << 20
	}
	if o.MaxConcurrentCompactions <= 0 {
		o.MaxConcurrentCompactions = 1
	}
	if o.BulkMemTableSize == 0 {
		o.BulkMemTableSize = 16 << 20
	}
	if o.BloomBitsPerKey <= 0 {
		o.BloomBitsPerKey = 10
	}
	if o.SeparateValues == 0 {
		o.SeparateValues = 256
	}
}

// caches are the block caches shared by the stores of the process, by
// size. They live as long as the process: stores come and go with
// rebalances, and the cache should outlive them.
var caches = struct {
	sync.Mutex
	bySize map[int64]*pebble.Cache
}{bySize: map[int64]*pebble.Cache{}}

func sharedCache(size int64) *pebble.Cache {
	caches.Lock()
	defer caches.Unlock()
	c, ok := caches.bySize[size]
	if !ok {
		c = pebble.NewCache(size) // the map keeps this first reference
		caches.bySize[size] = c
	}
	return c
}

// OpenPebble opens or creates the store in dir, with the default options.
func OpenPebble(dir string) (*Pebble, error) {
	return OpenPebbleWith(dir, PebbleOptions{})
}

// OpenPebbleWith opens or creates the store in dir.
func OpenPebbleWith(dir string, o PebbleOptions) (*Pebble, error) {
	return openPebble(dir, o, false)
}

// OpenPebbleBulk opens or creates the store in dir for a bulk load through
// a Loader, such as a restore from far behind: without a write-ahead log,
// and with BulkMemTableSize memtables. Writes are durable once flushed to
// tables: by a Loader's syncing Flush, and by Close. A crash loses what
// was not flushed, the checkpoint with it, so the store still reflects a
// prefix of what was written, with that prefix's checkpoint. Reopen the
// store with OpenPebbleWith to use it.
func OpenPebbleBulk(dir string, o PebbleOptions) (*Pebble, error) {
	return openPebble(dir, o, true)
}

func openPebble(dir string, o PebbleOptions, bulk bool) (*Pebble, error) {
	o.setDefaults()
	opts := &pebble.Options{
		// The format that can separate values; older stores are upgraded
		// when opened.
		FormatMajorVersion: pebble.FormatValueSeparation,
		Logger:             quiet{},
		Cache:              sharedCache(o.CacheSize),
		FS:                 o.FS,
		MemTableSize:       o.MemTableSize,
		CompactionConcurrencyRange: func() (int, int) {
			return 1, o.MaxConcurrentCompactions
		},
	}
	if bulk {
		opts.MemTableSize, opts.DisableWAL = o.BulkMemTableSize, true
		// Keys arrive in no order, so every flushed table overlaps all
		// the others: compacting while loading would rewrite the store
		// about once per flush. The tables pile up in L0 instead (writes
		// must not stall on that), to be compacted in one pass at the end
		// (CompactAll).
		opts.DisableAutomaticCompactions = true
		opts.L0CompactionThreshold, opts.L0StopWritesThreshold = 4, math.MaxInt32
	}
	for i := range opts.Levels {
		opts.Levels[i].FilterPolicy = bloom.FilterPolicy(o.BloomBitsPerKey)
	}
	if !bulk && o.SeparateValues > 0 {
		opts.Experimental.ValueSeparationPolicy = func() pebble.ValueSeparationPolicy {
			return pebble.ValueSeparationPolicy{
				Enabled:               true,
				MinimumSize:           o.SeparateValues,
				MaxBlobReferenceDepth: 10,
				// Blob files whose values are mostly deleted (expired
				// join records) are rewritten after a while.
				RewriteMinimumAge:  5 * time.Minute,
				TargetGarbageRatio: 0.5,
			}
		}
	}
	db, err := pebble.Open(dir, opts)
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", dir, err)
	}
	p := &Pebble{db: db, batch: db.NewIndexedBatch(), bulk: bulk, commitOpt: pebble.Sync}
	if o.NoSyncCommit {
		p.commitOpt = pebble.NoSync
	}
	return p, nil
}

func (p *Pebble) key(k []byte) []byte {
	p.buf = append(append(p.buf[:0], userPrefix...), k...)
	return p.buf
}

func (p *Pebble) Get(key []byte) ([]byte, bool, error) {
	if p.db == nil {
		return nil, false, ErrClosed
	}
	v, closer, err := p.batch.Get(p.key(key))
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	p.got = append(p.got[:0], v...) // v is valid only until closer.Close
	closer.Close()
	return p.got, true, nil
}

func (p *Pebble) Put(key, value []byte) error {
	if p.db == nil {
		return ErrClosed
	}
	return p.batch.Set(p.key(key), value, nil)
}

func (p *Pebble) Delete(key []byte) error {
	if p.db == nil {
		return ErrClosed
	}
	return p.batch.Delete(p.key(key), nil)
}

func (p *Pebble) Range(start, end []byte, fn func(k, v []byte) bool) error {
	if p.db == nil {
		return ErrClosed
	}
	if p.inRange {
		it, err := p.batch.NewIter(&pebble.IterOptions{LowerBound: lowerBound(nil, start), UpperBound: upperBound(nil, end)})
		if err != nil {
			return err
		}
		return errors.Join(scan(it, fn), it.Close())
	}
	p.flip ^= 1
	b := &p.bounds[p.flip]
	b[0], b[1] = lowerBound(b[0][:0], start), upperBound(b[1][:0], end)
	opts := &pebble.IterOptions{LowerBound: b[0], UpperBound: b[1]}
	if p.iter == nil {
		it, err := p.batch.NewIter(opts)
		if err != nil {
			return err
		}
		p.iter = it
	} else {
		p.iter.SetOptions(opts)
	}
	p.inRange = true
	defer func() { p.inRange = false }()
	return scan(p.iter, fn)
}

// lowerBound appends the store key of a Range start to buf.
func lowerBound(buf, start []byte) []byte {
	return append(append(buf, userPrefix...), start...)
}

// upperBound appends the store key of a Range end to buf; a nil end is
// the end of the user keys.
func upperBound(buf, end []byte) []byte {
	if end == nil {
		return append(buf, prefixEnd(userPrefix)...)
	}
	return append(append(buf, userPrefix...), end...)
}

// scan calls fn on the records within its bounds in order, until it says stop.
func scan(it *pebble.Iterator, fn func(k, v []byte) bool) error {
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key()[len(userPrefix):], it.Value()) {
			break
		}
	}
	return it.Error()
}

// closeIter closes the scans' iterator, which must not outlive its batch.
func (p *Pebble) closeIter() error {
	if p.iter == nil {
		return nil
	}
	err := p.iter.Close()
	p.iter = nil
	return err
}

func (p *Pebble) Prefix(prefix []byte, fn func(k, v []byte) bool) error {
	return p.Range(prefix, prefixEnd(prefix), fn)
}

func (p *Pebble) Commit(offset int64) error {
	if p.db == nil {
		return ErrClosed
	}
	if err := p.batch.Set(checkpointKey, binary.BigEndian.AppendUint64(nil, uint64(offset)), nil); err != nil {
		return err
	}
	if err := p.closeIter(); err != nil {
		return err
	}
	if err := p.batch.Commit(p.commitOpt); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	// The batch is emptied for the next transaction. Pebble keeps its
	// buffer if it is at most 1 MB (a transaction of small values, such as
	// an aggregate's), where a new batch would grow one again from 1 KB.
	p.batch.Reset()
	return nil
}

func (p *Pebble) Abort() error {
	if p.db == nil {
		return ErrClosed
	}
	err := p.closeIter()
	p.batch.Reset()
	return err
}

func (p *Pebble) Checkpoint() (int64, bool, error) {
	if p.db == nil {
		return 0, false, ErrClosed
	}
	v, closer, err := p.db.Get(checkpointKey)
	if errors.Is(err, pebble.ErrNotFound) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	defer closer.Close()
	if len(v) != 8 {
		return 0, false, fmt.Errorf("state: corrupt checkpoint (%d bytes)", len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), true, nil
}

// CompactAll compacts the whole store into its last level, as after a
// bulk load: reads then look in one table per key range.
func (p *Pebble) CompactAll() error {
	if p.db == nil {
		return ErrClosed
	}
	if err := p.db.Flush(); err != nil {
		return err
	}
	return p.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true)
}

// Size returns the bytes the store takes on disk.
func (p *Pebble) Size() int64 {
	if p.db == nil {
		return 0
	}
	return int64(p.db.Metrics().DiskSpaceUsage())
}

func (p *Pebble) Close() error {
	if p.db == nil {
		return nil
	}
	var err error
	if p.bulk {
		// Without a log, only flushed writes outlive the close.
		err = p.db.Flush()
	}
	err = errors.Join(err, p.closeIter(), p.batch.Close(), p.db.Close())
	p.db, p.batch = nil, nil
	return err
}

// Loader writes a restore's changelog records straight to the database, in
// large plain batches: a restore only writes, so it needs neither the open
// transaction's index nor a disk sync per batch. Each Flush commits the
// records so far with the checkpoint they reach, atomically, so a crash
// mid-restore resumes from there; only the final Flush waits for the disk.
// A batch commits while the next one fills: inserting into the memtable
// is a restore's largest cost, and this way it overlaps reading.
// While a Loader is in use, the store's open transaction must stay empty.
type Loader struct {
	p     *Pebble
	batch *pebble.Batch
	// committing receives the outcome of the batch committing in the
	// background, if one is.
	committing chan error
}

// loaderBatch is the size a Loader's batch starts at, in bytes.
const loaderBatch = 1 << 20

// Loader returns a Loader on the store.
func (p *Pebble) Loader() (*Loader, error) {
	if p.db == nil {
		return nil, ErrClosed
	}
	return &Loader{p: p, batch: p.db.NewBatchWithSize(loaderBatch)}, nil
}

// Put writes key's value.
func (l *Loader) Put(key, value []byte) error {
	// One copy of the key and value, straight into the batch.
	op := l.batch.SetDeferred(len(userPrefix)+len(key), len(value))
	copy(op.Key[copy(op.Key, userPrefix):], key)
	copy(op.Value, value)
	return op.Finish()
}

// Delete removes key.
func (l *Loader) Delete(key []byte) error {
	return l.batch.Delete(l.p.key(key), nil)
}

// Len returns the bytes written since the last Flush.
func (l *Loader) Len() int { return l.batch.Len() }

// wait waits for the batch committing in the background, if any.
func (l *Loader) wait() error {
	if l.committing == nil {
		return nil
	}
	err := <-l.committing
	l.committing = nil
	return err
}

// Flush commits the writes so far with offset as the store's checkpoint.
// Without sync, the commit may still be under way when it returns (a
// later call reports its error); with sync, it returns once they, and
// every earlier Flush, are on disk.
func (l *Loader) Flush(offset int64, sync bool) error {
	if l.p.db == nil {
		return ErrClosed
	}
	if err := l.batch.Set(checkpointKey, binary.BigEndian.AppendUint64(nil, uint64(offset)), nil); err != nil {
		return err
	}
	// Batches commit in order: the previous one first.
	if err := l.wait(); err != nil {
		return err
	}
	if err := l.p.closeIter(); err != nil { // scans must see the load
		return err
	}
	b := l.batch
	l.batch = l.p.db.NewBatchWithSize(loaderBatch)
	if !sync {
		l.committing = make(chan error, 1)
		go func() {
			err := b.Commit(pebble.NoSync)
			b.Close()
			if err != nil {
				err = fmt.Errorf("state: restore commit: %w", err)
			}
			l.committing <- err
		}()
		return nil
	}
	defer b.Close()
	opt := pebble.Sync
	if l.p.bulk {
		opt = pebble.NoSync // there is no log to sync
	}
	if err := b.Commit(opt); err != nil {
		return fmt.Errorf("state: restore commit: %w", err)
	}
	if l.p.bulk {
		// The memtables go to tables instead.
		if err := l.p.db.Flush(); err != nil {
			return fmt.Errorf("state: restore flush: %w", err)
		}
	}
	return nil
}

// Close drops the writes since the last Flush, once the one committing,
// if any, is done; it returns that commit's error.
func (l *Loader) Close() error {
	return errors.Join(l.wait(), l.batch.Close())
}

// quiet drops Pebble's informational logs (they went to stderr); errors
// come back through the API.
type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}

// IsCorrupt reports whether err, from opening or reading a store, says its
// files are corrupt (Pebble's corruption marker). Other errors, a lock held
// by another process among them, do not mean the files are bad.
func IsCorrupt(err error) bool { return pebble.IsCorruptionError(err) }
