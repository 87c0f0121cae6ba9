// Package state holds keyed state for stateful pipes, one store per
// (store, partition) task, with transactional writes.
//
// Writes go to the store's open transaction, and reads see them. Commit
// applies them together with the changelog offset they correspond to, in
// one atomic write; Abort discards them. The engine commits a store only
// after the Kafka transaction holding the same writes (in the changelog
// topic) has committed, so a crash or a rebalance can never leave local
// state ahead of, or apart from, what Kafka committed. This is the seam for
// exactly-once state (the engine side is not wired yet).
//
// Two implementations share the contract and one test suite: Pebble, for
// state larger than memory, and an in-memory store for unit tests.
package state

import (
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
)

// Store is one task's keyed state. It is not safe for concurrent use: a
// task's records are processed by one goroutine at a time.
type Store interface {
	// Get returns the value of key, seeing the open transaction's writes.
	// The returned slice is valid until the next call on the store.
	Get(key []byte) (value []byte, ok bool, err error)
	// Put and Delete write to the open transaction.
	Put(key, value []byte) error
	Delete(key []byte) error
	// Range calls fn for the keys in [start, end) in key order, seeing the
	// open transaction; a nil end means no upper bound. fn returns false to
	// stop. Keys and values are valid only during the call.
	Range(start, end []byte, fn func(key, value []byte) bool) error
	// Prefix calls fn for the keys with the prefix, in key order.
	Prefix(prefix []byte, fn func(key, value []byte) bool) error
	// Commit applies the open transaction's writes and records offset,
	// the changelog offset the state now reflects, atomically and durably.
	Commit(offset int64) error
	// Abort discards the open transaction's writes.
	Abort() error
	// Checkpoint returns the offset recorded by the last Commit, and false
	// if the store has never committed (restore from the changelog start).
	Checkpoint() (offset int64, ok bool, err error)
	// Close closes the store; the open transaction is discarded.
	Close() error
}

// ErrClosed is returned by a closed store.
var ErrClosed = errors.New("state: store is closed")

// Dir returns the directory of one store's partition:
// <root>/<group>/<store>/<partition>. It never leaves root: a group or
// store that is not one plain path element (see CheckPathName) is replaced
// by an escaped form, "_bad_" and its bytes in hex. The topology compiler
// refuses such names; this is a second line of defence for the callers
// that remove the directory it returns.
func Dir(root, group, store string, partition int32) string {
	return filepath.Join(root, pathElem(group), pathElem(store), fmt.Sprint(partition))
}

// CheckPathName returns an error unless name is one plain path element:
// not empty, not "." or "..", no separator, no NUL, not absolute. Joined
// to a directory, such a name stays inside it.
func CheckPathName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsAny(name, "/\\\x00") ||
		strings.ContainsRune(name, filepath.Separator) || !filepath.IsLocal(name) {
		return fmt.Errorf("state: %q is not a plain directory name", name)
	}
	return nil
}

// pathElem returns name, or its escaped form when it is not a plain path
// element.
func pathElem(name string) string {
	if CheckPathName(name) == nil {
		return name
	}
	return "_bad_" + hex.EncodeToString([]byte(name))
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none (p is all 0xff).
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
