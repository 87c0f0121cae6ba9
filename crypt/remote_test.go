//go:build !nokms

package crypt

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/streamerio/streamer/pipes"
)

// TestRemoteUnreachable opens a Vault key on a port nothing listens on:
// the real driver's error must say the KMS is unreachable (so run refuses
// to start, and a running replica pauses), not that the key is wrong.
func TestRemoteUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Open(ctx, Key{KMS: "vault", URI: "hcvault://127.0.0.1:1/transit/keys/streamer", Credentials: "token"})
	if !errors.Is(err, ErrUnreachable) || !errors.Is(err, pipes.ErrUnavailable) {
		t.Fatalf("got %v, want an unreachable KMS", err)
	}
}

func TestOutage(t *testing.T) {
	for msg, want := range map[string]bool{
		"dial tcp 127.0.0.1:1: connect: connection refused":                true,
		"rpc error: code = Unavailable desc = name resolver error":         true,
		"AccessDeniedException: not authorized to perform kms:Decrypt":     false,
		"InvalidCiphertextException: the ciphertext refers to another key": false,
		"ThrottlingException: Rate exceeded":                               true,
		"Error making API request. Code: 403. Errors: * permission denied": false,
		"Error making API request. Code: 503. Errors: * Vault is sealed":   true,
	} {
		if got := Outage(errors.New(msg)); got != want {
			t.Errorf("Outage(%q) = %v, want %v", msg, got, want)
		}
	}
}
