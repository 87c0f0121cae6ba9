package crypt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/daead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	tinkpb "github.com/tink-crypto/tink-go/v2/proto/tink_go_proto"
	"github.com/tink-crypto/tink-go/v2/tink"
	"google.golang.org/protobuf/proto"
)

// Record headers that carry wrapped data keys. Each holds a tink
// EncryptedKeyset in binary protobuf: a data keyset encrypted by the
// key-encryption key with empty associated data, as tink's
// keyset.Handle.Write (Go) or keyset_handle.write (Python) writes it.
const (
	// HeaderDEK carries the AEAD data keyset (AES-256-GCM, tink prefix)
	// that encrypted the record's fields or payload.
	HeaderDEK = "streamer.enc.dek"
	// HeaderDeterministicDEK carries the deterministic AEAD data keyset
	// (AES-SIV, tink prefix) of the record's deterministic fields.
	HeaderDeterministicDEK = "streamer.enc.dek.det"
	// HeaderPrefix starts every header this package writes; a decoded
	// record is handed to pipes without them.
	HeaderPrefix = "streamer.enc."
)

func aeadTemplate() *tinkpb.KeyTemplate { return aead.AES256GCMKeyTemplate() }

// DeterministicTemplate is the template of deterministic data keys:
// AES-SIV with a 512-bit key (AES-256 in SIV mode), tink prefix.
func DeterministicTemplate() *tinkpb.KeyTemplate { return daead.AESSIVKeyTemplate() }

// dek is a data key a writer encrypts with.
type dek struct {
	aead    tink.AEAD
	wrapped []byte
	created time.Time
	used    atomic.Int64
}

func newDEK(kek KEK, tmpl *tinkpb.KeyTemplate) (*dek, error) {
	h, err := keyset.NewHandle(tmpl)
	if err != nil {
		return nil, err
	}
	wrapped, err := wrap(kek, h)
	if err != nil {
		return nil, err
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, err
	}
	return &dek{aead: a, wrapped: wrapped}, nil
}

// wrap encrypts a data keyset with the key-encryption key into a binary
// tink EncryptedKeyset, as keyset.Handle.Write does, in two steps so that
// the KMS's error is classified before tink flattens it.
func wrap(kek KEK, h *keyset.Handle) ([]byte, error) {
	var pt bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewBinaryWriter(&pt)); err != nil {
		return nil, err
	}
	ct, err := kek.Encrypt(pt.Bytes(), nil)
	if err != nil {
		return nil, kek.classify(fmt.Errorf("wrapping a data key: %w", err))
	}
	return proto.Marshal(&tinkpb.EncryptedKeyset{EncryptedKeyset: ct, KeysetInfo: h.KeysetInfo()})
}

// classify wraps ErrUnreachable around an error the KMS did not answer.
func (k KEK) classify(err error) error {
	if err != nil && k.Outage != nil && k.Outage(err) {
		return fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return err
}

// unwrap decrypts a wrapped data keyset. It does what keyset.Read does,
// in two steps, so that the KMS's own error is classified before tink
// flattens it into a message.
func unwrap(kek KEK, wrapped []byte) (*keyset.Handle, error) {
	var ek tinkpb.EncryptedKeyset
	if err := proto.Unmarshal(wrapped, &ek); err != nil || len(ek.GetEncryptedKeyset()) == 0 {
		return nil, errors.New("the data key header is not a tink EncryptedKeyset")
	}
	pt, err := kek.Decrypt(ek.GetEncryptedKeyset(), nil)
	if err != nil {
		return nil, kek.classify(fmt.Errorf("the data key does not unwrap with this key-encryption key: %w", err))
	}
	h, err := insecurecleartextkeyset.Read(keyset.NewBinaryReader(bytes.NewReader(pt)))
	if err != nil {
		return nil, fmt.Errorf("the unwrapped data key is not a keyset: %w", err)
	}
	return h, nil
}

func unwrapAEAD(kek KEK, wrapped []byte) (tink.AEAD, error) {
	h, err := unwrap(kek, wrapped)
	if err != nil {
		return nil, err
	}
	return aead.New(h)
}

// Rotation limits a data key's use: a writer makes a new one when either
// is reached. Zero values mean no limit.
type Rotation struct {
	Age     time.Duration
	Records int64
}

// Envelope holds one dataset's keys: its key-encryption key (opened once,
// on Start or first use), the data key it writes with, and the data keys
// it has unwrapped from records. It is safe for concurrent use.
type Envelope struct {
	key    Key
	rotate Rotation
	// detWrapped is the wrapped deterministic keyset the dataset writes
	// with (JSON, as the user gave it), or nil.
	detWrapped []byte
	// Now is the clock of rotation; tests replace it. Default: time.Now.
	Now func() time.Time

	mu      sync.Mutex
	kek     *KEK
	det     *detKey
	aeads   map[string]tink.AEAD
	daeads  map[string]tink.DeterministicAEAD
	current atomic.Pointer[dek]
}

type detKey struct {
	daead   tink.DeterministicAEAD
	wrapped []byte // binary, for the header
}

// NewEnvelope returns the keys of a dataset. deterministic is the wrapped
// deterministic keyset (tink JSON EncryptedKeyset) for a dataset that
// writes deterministic fields, or nil.
func NewEnvelope(k Key, r Rotation, deterministic []byte) *Envelope {
	return &Envelope{key: k, rotate: r, detWrapped: deterministic, aeads: map[string]tink.AEAD{}, daeads: map[string]tink.DeterministicAEAD{}}
}

// Key returns where the key-encryption key is.
func (e *Envelope) Key() Key { return e.key }

// openTimeout bounds the opening of a KMS on first use.
const openTimeout = 10 * time.Second

// Start opens the key-encryption key and checks it. An error wrapping
// ErrUnreachable means the KMS did not answer; run refuses to start then.
func (e *Envelope) Start(ctx context.Context) error {
	_, err := e.open(ctx)
	return err
}

func (e *Envelope) open(ctx context.Context) (KEK, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.kek != nil {
		return *e.kek, nil
	}
	kek, err := Open(ctx, e.key)
	if err != nil {
		return KEK{}, err
	}
	if e.detWrapped != nil {
		h, err := keyset.Read(keyset.NewJSONReader(bytes.NewReader(e.detWrapped)), kek)
		if err != nil {
			return KEK{}, kek.classify(fmt.Errorf("the deterministic keyset does not unwrap with the key-encryption key: %w", err))
		}
		d, err := daead.New(h)
		if err != nil {
			return KEK{}, fmt.Errorf("the deterministic keyset: %w", err)
		}
		w, err := wrap(kek, h)
		if err != nil {
			return KEK{}, err
		}
		e.det = &detKey{daead: d, wrapped: w}
	}
	e.kek = &kek
	return kek, nil
}

// kekNow returns the key-encryption key, opening it on first use.
func (e *Envelope) kekNow() (KEK, error) {
	e.mu.Lock()
	k := e.kek
	e.mu.Unlock()
	if k != nil {
		return *k, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), openTimeout)
	defer cancel()
	kek, err := e.open(ctx)
	if err != nil && !errors.Is(err, ErrUnreachable) && !errors.Is(err, ErrNotBuilt) {
		// A KMS that opens on first use and fails is most likely down:
		// the key was checked at start.
		return kek, fmt.Errorf("%w: %w", ErrUnreachable, err)
	}
	return kek, err
}

// writeKey returns the data key for the next record, rotating it when its
// age or record count is past the limit.
func (e *Envelope) writeKey() (*dek, error) {
	now := time.Now
	if e.Now != nil {
		now = e.Now
	}
	if d := e.current.Load(); d != nil {
		n := d.used.Add(1)
		if (e.rotate.Records <= 0 || n <= e.rotate.Records) && (e.rotate.Age <= 0 || now().Sub(d.created) < e.rotate.Age) {
			return d, nil
		}
	}
	kek, err := e.kekNow()
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if d := e.current.Load(); d != nil && (e.rotate.Records <= 0 || d.used.Load() <= e.rotate.Records) && (e.rotate.Age <= 0 || now().Sub(d.created) < e.rotate.Age) {
		d.used.Add(1)
		return d, nil // another goroutine rotated
	}
	d, err := newDEK(kek, aeadTemplate())
	if err != nil {
		return nil, err
	}
	d.created = now()
	d.used.Store(1)
	e.current.Store(d)
	return d, nil
}

// deterministicKey returns the deterministic data key writers use.
func (e *Envelope) deterministicKey() (*detKey, error) {
	if _, err := e.kekNow(); err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.det == nil {
		return nil, errors.New("no deterministic keyset: set key.deterministic_keyset to write deterministic fields")
	}
	return e.det, nil
}

// maxCached bounds the unwrapped data keys kept per dataset; past it the
// cache starts again (a reader meets few data keys: one per writer and
// rotation).
const maxCached = 1024

// readAEAD returns the AEAD of a wrapped data keyset from a header.
func (e *Envelope) readAEAD(wrapped []byte) (tink.AEAD, error) {
	return cachedUnwrap(e, e.aeads, wrapped, unwrapAEAD)
}

// readDAEAD returns the deterministic AEAD of a wrapped data keyset.
func (e *Envelope) readDAEAD(wrapped []byte) (tink.DeterministicAEAD, error) {
	return cachedUnwrap(e, e.daeads, wrapped, func(kek KEK, wrapped []byte) (tink.DeterministicAEAD, error) {
		h, err := unwrap(kek, wrapped)
		if err != nil {
			return nil, err
		}
		return daead.New(h)
	})
}

// cachedUnwrap returns the primitive of a wrapped data keyset from cache
// (under e.mu), or unwraps it with the current key-encryption key and
// caches it, starting the cache again past maxCached entries.
func cachedUnwrap[P any](e *Envelope, cache map[string]P, wrapped []byte, open func(kek KEK, wrapped []byte) (P, error)) (P, error) {
	e.mu.Lock()
	p, ok := cache[string(wrapped)]
	e.mu.Unlock()
	if ok {
		return p, nil
	}
	kek, err := e.kekNow()
	if err != nil {
		return p, err
	}
	if p, err = open(kek, wrapped); err != nil {
		return p, err
	}
	e.mu.Lock()
	if len(cache) >= maxCached {
		clear(cache)
	}
	cache[string(wrapped)] = p
	e.mu.Unlock()
	return p, nil
}

// NewDeterministicKeyset returns a new deterministic data keyset (one
// AES-SIV key) wrapped by kek, as tink JSON: the file that
// key.deterministic_keyset names. Keep it with the topology; it is
// useless without the key-encryption key.
func NewDeterministicKeyset(kek tink.AEAD) ([]byte, error) {
	h, err := keyset.NewHandle(DeterministicTemplate())
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := h.Write(keyset.NewJSONWriter(&b), kek); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
