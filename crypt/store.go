package crypt

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/streamerio/streamer/pipes"
)

// Encrypted state stores.
//
// The state of a stateful pipe fed by an encrypted input (an aggregate's
// groups, a window's panes, a dedupe's keys seen) is held in a state store
// and its changelog topic. Store wraps the store a pipe is given so that
// every value it writes is encrypted, in Pebble and in the changelog alike
// (the changelog is written from the same puts), and decrypted as it is
// read. Keys are not: a pipe looks them up and ranges over them in order.
//
// One data key per store partition, wrapped by the dataset's key-encryption
// key, is kept in the store itself under storeKeyKey, so that it travels in
// the changelog with the values it encrypted, in the same transaction, and
// a restore anywhere brings it back. A value is a version byte and the
// tink ciphertext (AES-256-GCM, key id prefix), with the store key as
// associated data, so that a value moved to another key does not decrypt.

// storeKeyKey is the key under which a store keeps its wrapped data key.
// Pipes never see it: Range and Prefix skip it.
var storeKeyKey = []byte("\xff\xffstreamer.enc.store-dek")

// storeFrame starts every value Store writes.
const storeFrame = 3

// Store is a pipes.Store whose values are encrypted. It is not safe for
// concurrent use, as the stores pipes are given are not.
type Store struct {
	under   pipes.Store
	env     *Envelope
	wrapped []byte    // the data key of under, as stored
	aead    tink.AEAD // its primitive
}

var _ pipes.Store = (*Store)(nil)

// NewStore returns s with its values encrypted by a data key wrapped by
// env's key-encryption key.
func NewStore(s pipes.Store, env *Envelope) *Store { return &Store{under: s, env: env} }

// key returns the store's data key, making and storing one when it has
// none and write is set (nil, nil when it has none and write is not). The
// stored key is read again on every call: a transaction that stored it
// may have been aborted since.
func (s *Store) key(write bool) (tink.AEAD, error) {
	cur, ok, err := s.under.Get(storeKeyKey)
	if err != nil {
		return nil, err
	}
	if ok {
		if s.aead != nil && bytes.Equal(cur, s.wrapped) {
			return s.aead, nil
		}
		cur = bytes.Clone(cur)
		a, err := s.env.readAEAD(cur)
		if err != nil {
			return nil, fmt.Errorf("encrypted state: %w", err)
		}
		s.wrapped, s.aead = cur, a
		return a, nil
	}
	if !write {
		return nil, nil
	}
	d, err := s.env.writeKey()
	if err != nil {
		return nil, fmt.Errorf("encrypted state: %w", err)
	}
	if err := s.under.Put(storeKeyKey, d.wrapped); err != nil {
		return nil, err
	}
	s.wrapped, s.aead = d.wrapped, d.aead
	return d.aead, nil
}

func (s *Store) open(a tink.AEAD, k, v []byte) ([]byte, error) {
	if a == nil {
		return nil, errors.New("encrypted state: the store holds values but no data key (was it written before its input was encrypted? reset the state)")
	}
	if len(v) == 0 || v[0] != storeFrame {
		return nil, errors.New("encrypted state: a value not encrypted by this store (was it written before its input was encrypted? reset the state)")
	}
	pt, err := a.Decrypt(v[1:], k)
	if err != nil {
		return nil, fmt.Errorf("encrypted state: decryption failed (wrong key or tampered value): %w", err)
	}
	return pt, nil
}

// Get returns the decrypted value of key.
func (s *Store) Get(k []byte) ([]byte, bool, error) {
	v, ok, err := s.under.Get(k)
	if err != nil || !ok {
		return nil, ok, err
	}
	v = bytes.Clone(v) // valid until the next call, which key makes
	a, err := s.key(false)
	if err != nil {
		return nil, false, err
	}
	pt, err := s.open(a, k, v)
	if err != nil {
		return nil, false, err
	}
	return pt, true, nil
}

// Put encrypts v and writes it.
func (s *Store) Put(k, v []byte) error {
	if bytes.Equal(k, storeKeyKey) {
		return errors.New("encrypted state: the key is reserved")
	}
	a, err := s.key(true)
	if err != nil {
		return err
	}
	ct, err := a.Encrypt(v, k)
	if err != nil {
		return fmt.Errorf("encrypted state: %w", err)
	}
	return s.under.Put(k, append([]byte{storeFrame}, ct...))
}

// Delete deletes key.
func (s *Store) Delete(k []byte) error {
	if bytes.Equal(k, storeKeyKey) {
		return nil
	}
	return s.under.Delete(k)
}

// Range calls fn with the decrypted values of the keys in [start, end).
func (s *Store) Range(start, end []byte, fn func(k, v []byte) bool) error {
	a, err := s.key(false)
	if err != nil {
		return err
	}
	var ferr error
	err = s.under.Range(start, end, s.each(a, fn, &ferr))
	return errors.Join(err, ferr)
}

// Prefix calls fn with the decrypted values of the keys with the prefix.
func (s *Store) Prefix(p []byte, fn func(k, v []byte) bool) error {
	a, err := s.key(false)
	if err != nil {
		return err
	}
	var ferr error
	err = s.under.Prefix(p, s.each(a, fn, &ferr))
	return errors.Join(err, ferr)
}

// each decrypts each value for fn, skipping the data key; the first
// value that does not decrypt stops the scan, its error in *ferr.
func (s *Store) each(a tink.AEAD, fn func(k, v []byte) bool, ferr *error) func(k, v []byte) bool {
	return func(k, v []byte) bool {
		if bytes.Equal(k, storeKeyKey) {
			return true
		}
		pt, err := s.open(a, k, v)
		if err != nil {
			*ferr = err
			return false
		}
		return fn(k, pt)
	}
}
