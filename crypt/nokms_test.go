//go:build nokms

package crypt

import (
	"context"
	"errors"
	"testing"
)

// TestNotBuilt: without the remote drivers, a remote kms is a clear
// error at start, not a pause.
func TestNotBuilt(t *testing.T) {
	for _, kms := range []string{"aws", "gcp", "vault"} {
		_, err := Open(context.Background(), Key{KMS: kms, URI: "x"})
		if !errors.Is(err, ErrNotBuilt) || errors.Is(err, ErrUnreachable) {
			t.Errorf("%s: %v, want ErrNotBuilt", kms, err)
		}
	}
}
