// Package crypt owns dataset encryption: envelope encryption with tink-go.
//
// A dataset's records are encrypted with data keys (DEKs): a tink AEAD keyset
// of one AES-256-GCM key for fields and whole payloads, and a tink
// deterministic AEAD keyset of one AES-SIV key for deterministic fields. Data
// keys are wrapped (encrypted) by a key-encryption key (KEK) that a KMS holds:
// a local keyset file, AWS KMS, GCP KMS or HashiCorp Vault, all seen as one
// tink.AEAD. A wrapped DEK travels in a header of every record it encrypted,
// so that any reader holding the KEK can decrypt any record by itself; readers
// cache unwrapped DEKs by their wrapped bytes. See docs/ENCRYPTION.md for the
// format, precisely enough to reproduce it with tink in another language.
//
// No cryptography is written here: tink does all of it. This package frames
// values, picks keys and rotates them.
package crypt

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/tink-crypto/tink-go/v2/tink"

	"github.com/streamerio/streamer/pipes"
)

// Key says where a key-encryption key is.
type Key struct {
	// KMS is the driver: local, aws, gcp or vault.
	KMS string
	// URI names the key in the KMS. local: the keyset (a path, or the
	// keyset's JSON itself, as a ${file:...} reference resolves to);
	// aws: aws-kms://arn:aws:kms:...; gcp: gcp-kms://projects/...;
	// vault: hcvault://host[:port]/transit/keys/<name>.
	URI string
	// Credentials: aws and gcp, a credentials file (empty: the SDK's
	// default chain); vault, the token (empty: $VAULT_TOKEN).
	Credentials string
	// Dir resolves a relative local path (the topology file's directory).
	Dir string
}

// Driver opens the key-encryption key of a KMS. Open must return an error
// wrapping ErrUnreachable when the KMS cannot be reached, and another error
// when the key is wrong (a bad URI, a key that does not exist).
type Driver interface {
	Open(ctx context.Context, k Key) (KEK, error)
}

// KEK is an opened key-encryption key.
type KEK struct {
	tink.AEAD
	// Outage, when set, says whether an error of the AEAD is the service
	// failing to answer (pause) rather than a key that does not fit (the
	// record's fault). nil: every error is the record's fault.
	Outage func(error) bool
}

// ErrUnreachable is wrapped by errors of a KMS that did not answer. It
// wraps pipes.ErrUnavailable: the engine pauses and reads the records
// again rather than dead-lettering them.
var ErrUnreachable = fmt.Errorf("kms unreachable: %w", pipes.ErrUnavailable)

// ErrNotBuilt is wrapped by the error of a driver this binary lacks.
var ErrNotBuilt = errors.New("kms driver not built into this binary")

var (
	driversMu sync.RWMutex
	drivers   = map[string]Driver{}
)

// Register makes a driver available under a kms name. It panics on a
// duplicate name, like database/sql.
func Register(name string, d Driver) {
	driversMu.Lock()
	defer driversMu.Unlock()
	if _, dup := drivers[name]; dup {
		panic("crypt: driver registered twice: " + name)
	}
	drivers[name] = d
}

// KMSNames lists the kms values the format accepts.
var KMSNames = []string{"local", "aws", "gcp", "vault"}

// Drivers returns the registered driver names, sorted.
func Drivers() []string {
	driversMu.RLock()
	defer driversMu.RUnlock()
	out := make([]string, 0, len(drivers))
	for n := range drivers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Open opens the key-encryption key k names and checks that it works: it
// wraps and unwraps a fresh data key. An unreachable KMS is an error
// wrapping ErrUnreachable.
func Open(ctx context.Context, k Key) (KEK, error) {
	driversMu.RLock()
	d, ok := drivers[k.KMS]
	driversMu.RUnlock()
	if !ok {
		return KEK{}, fmt.Errorf("kms %q: %w", k.KMS, ErrNotBuilt)
	}
	kek, err := d.Open(ctx, k)
	if err != nil {
		return KEK{}, fmt.Errorf("kms %s: %w", k.KMS, err)
	}
	if err := probe(kek); err != nil {
		return KEK{}, fmt.Errorf("kms %s: the key-encryption key does not work: %w", k.KMS, err)
	}
	return kek, nil
}

// probe wraps a fresh data key and unwraps it.
func probe(kek KEK) error {
	d, err := newDEK(kek, aeadTemplate())
	if err != nil {
		return err
	}
	_, err = unwrapAEAD(kek, d.wrapped)
	return err
}
