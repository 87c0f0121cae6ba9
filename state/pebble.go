package state

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/cockroachdb/pebble/v2"
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
}

var _ Store = (*Pebble)(nil)

// OpenPebble opens or creates the store in dir.
func OpenPebble(dir string) (*Pebble, error) {
	db, err := pebble.Open(dir, &pebble.Options{Logger: quiet{}})
	if err != nil {
		return nil, fmt.Errorf("state: opening %s: %w", dir, err)
	}
	return &Pebble{db: db, batch: db.NewIndexedBatch()}, nil
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
	lower := append(append([]byte(nil), userPrefix...), start...)
	upper := prefixEnd(userPrefix)
	if end != nil {
		upper = append(append([]byte(nil), userPrefix...), end...)
	}
	it, err := p.batch.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return err
	}
	for ok := it.First(); ok; ok = it.Next() {
		if !fn(it.Key()[len(userPrefix):], it.Value()) {
			break
		}
	}
	return it.Close()
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
	if err := p.batch.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("state: commit: %w", err)
	}
	p.batch = p.db.NewIndexedBatch() // a committed batch cannot be reused
	return nil
}

func (p *Pebble) Abort() error {
	if p.db == nil {
		return ErrClosed
	}
	err := p.batch.Close()
	p.batch = p.db.NewIndexedBatch()
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
	err := errors.Join(p.batch.Close(), p.db.Close())
	p.db, p.batch = nil, nil
	return err
}

// quiet drops Pebble's informational logs (they went to stderr); errors
// come back through the API.
type quiet struct{}

func (quiet) Infof(string, ...any)  {}
func (quiet) Errorf(string, ...any) {}
func (quiet) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("pebble: "+format, args...))
}
