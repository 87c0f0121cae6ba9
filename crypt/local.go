package crypt

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tink-crypto/tink-go/v2/aead"
	"github.com/tink-crypto/tink-go/v2/insecurecleartextkeyset"
	"github.com/tink-crypto/tink-go/v2/keyset"
	"github.com/tink-crypto/tink-go/v2/tink"
)

// local reads a key-encryption key from a cleartext tink JSON keyset of AEAD
// keys (tinkey create-keyset --key-template AES256_GCM). It is for tests
// and small deployments: whoever reads the file can decrypt everything.
type local struct{}

func init() { Register("local", local{}) }

func (local) Open(_ context.Context, k Key) (KEK, error) {
	text, err := LocalKeyset(k)
	if err != nil {
		return KEK{}, err
	}
	a, err := ParseKeyset(text)
	if err != nil {
		return KEK{}, err
	}
	return KEK{AEAD: a}, nil
}

// LocalKeyset returns the text of a local key: URI itself when it is a JSON
// document (a resolved ${file:...} reference), or else the file it names,
// relative to Dir.
func LocalKeyset(k Key) ([]byte, error) {
	if strings.HasPrefix(strings.TrimSpace(k.URI), "{") {
		return []byte(k.URI), nil
	}
	if k.URI == "" {
		return nil, fmt.Errorf("local: uri names no keyset file")
	}
	p := k.URI
	if !filepath.IsAbs(p) {
		p = filepath.Join(k.Dir, filepath.FromSlash(p))
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("local: reading the keyset: %w", err)
	}
	return b, nil
}

// ParseKeyset reads a cleartext tink JSON keyset of AEAD keys.
func ParseKeyset(text []byte) (tink.AEAD, error) {
	h, err := insecurecleartextkeyset.Read(keyset.NewJSONReader(strings.NewReader(string(text))))
	if err != nil {
		return nil, fmt.Errorf("local: not a tink JSON keyset: %w", err)
	}
	a, err := aead.New(h)
	if err != nil {
		return nil, fmt.Errorf("local: the keyset holds no AEAD key: %w", err)
	}
	return a, nil
}

// NewLocalKeyset returns a new cleartext tink JSON keyset of one
// AES-256-GCM key: a local key-encryption key, for tests and `streamer
// test`.
func NewLocalKeyset() ([]byte, error) {
	h, err := keyset.NewHandle(aead.AES256GCMKeyTemplate())
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := insecurecleartextkeyset.Write(h, keyset.NewJSONWriter(&b)); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
