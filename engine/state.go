package engine

import (
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/crypt"
	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/state"
)

// StateOpener opens the local store of one (store, partition) for a task,
// restored up to what Kafka has committed. The engine's opener uses Pebble
// and the changelog topic; without one, tasks get in-memory stores (tests).
type StateOpener interface {
	OpenState(store string, partition int32) (state.Store, error)
}

// changelogStore is what a pipe holds: every write goes to the local store's
// open transaction and, as a record, to the store's changelog partition in
// the Kafka transaction. The engine commits the local store only after the
// Kafka transaction commits, with the changelog offset it reached.
type changelogStore struct {
	state.Store
	task      *Task
	name      string
	topic     string
	partition int32
	dirty     bool
}

var _ pipes.Store = (*changelogStore)(nil)

// errOutsideProcess: a store write with no transaction to put its
// changelog record in.
func (c *changelogStore) errOutsideProcess() error {
	return fmt.Errorf("engine: store %q written outside Process (in a pipe's constructor or a goroutine of its own): the write would never reach the changelog, and would be lost on the next restore; write stores only while processing a batch", c.name)
}

func (c *changelogStore) Put(k, v []byte) error {
	if c.task.emit == nil {
		return c.errOutsideProcess()
	}
	if err := c.Store.Put(k, v); err != nil {
		return err
	}
	if v == nil {
		v = []byte{} // a put, even of nothing, is not a tombstone
	}
	c.changelog(k, v)
	return nil
}

func (c *changelogStore) Delete(k []byte) error {
	if c.task.emit == nil {
		return c.errOutsideProcess()
	}
	if err := c.Store.Delete(k); err != nil {
		return err
	}
	c.changelog(k, nil) // a tombstone: compaction drops the key
	return nil
}

func (c *changelogStore) changelog(k, v []byte) {
	c.dirty = true
	var value []byte
	if v != nil {
		value = append([]byte{}, v...)
	}
	c.task.emit(&kgo.Record{Topic: c.topic, Partition: c.partition, Key: append([]byte(nil), k...), Value: value})
}

// openStore is the Env.Stores of a task: one changelogged store per name.
func (k *Task) openStore(name string) (pipes.Store, error) {
	s, err := k.changelogStore(name)
	if err != nil {
		return nil, err
	}
	if env := k.top.StoreEnvelope(name); env != nil {
		return crypt.NewStore(s, env), nil // fed by encrypted data (docs/ENCRYPTION.md)
	}
	return s, nil
}

// changelogStore returns the task's changelogged store of that name,
// opening it on first use.
func (k *Task) changelogStore(name string) (*changelogStore, error) {
	for _, s := range k.stores {
		if s.name == name {
			return s, nil
		}
	}
	var st state.Store
	if k.opener != nil {
		var err error
		if st, err = k.opener.OpenState(name, k.partition); err != nil {
			return nil, fmt.Errorf("engine: opening state store %q for partition %d: %w", name, k.partition, err)
		}
	} else {
		st = state.NewMemory()
	}
	s := &changelogStore{Store: st, task: k, name: name, topic: k.top.ChangelogTopic(name), partition: k.partition}
	k.stores = append(k.stores, s)
	return s, nil
}

// CommitState applies the stores' writes since the last commit or abort,
// once the Kafka transaction that holds their changelog records committed.
// offset returns the offset after the last changelog record the transaction
// wrote to a (topic, partition).
func (k *Task) CommitState(offset func(topic string, partition int32) (int64, bool)) error {
	var errs []error
	for _, s := range k.stores {
		if !s.dirty {
			continue
		}
		off, ok := offset(s.topic, s.partition)
		if !ok {
			off = -1 // no changelog offset known (the test driver)
		}
		if err := s.Commit(off); err != nil {
			errs = append(errs, fmt.Errorf("engine: committing state store %q: %w", s.name, err))
		}
		s.dirty = false
	}
	return errors.Join(errs...)
}

// AbortState drops the stores' writes since the last commit, as the Kafka
// transaction that held them aborted.
func (k *Task) AbortState() error {
	var errs []error
	for _, s := range k.stores {
		if s.dirty {
			errs = append(errs, s.Abort())
			s.dirty = false
		}
	}
	return errors.Join(errs...)
}

// Stateful reports whether the task's pipes keep state.
func (k *Task) Stateful() bool { return len(k.stores) > 0 }

// Store returns a store the task's pipes opened, for inspection: its
// values as the pipes see them (decrypted, for a store crypt.Store
// encrypts).
func (k *Task) Store(name string) (pipes.Store, bool) {
	for _, s := range k.stores {
		if s.name == name {
			if env := k.top.StoreEnvelope(name); env != nil {
				return crypt.NewStore(s.Store, env), true // as the pipes see it
			}
			return s.Store, true
		}
	}
	return nil, false
}

// reportSizes tells the hooks how large the task's stores are on disk.
func (k *Task) reportSizes(hooks []StateHook) {
	for _, s := range k.stores {
		sz, ok := s.Store.(interface{ Size() int64 })
		if !ok {
			continue
		}
		n := sz.Size()
		for _, h := range hooks {
			h.OnStateSize(s.name, k.partition, n)
		}
	}
}
