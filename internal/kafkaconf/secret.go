package kafkaconf

import "github.com/streamerio/streamer/internal/secret"

// Secret is secret.Secret: a value that never prints.
type Secret = secret.Secret

// NewSecret wraps v.
func NewSecret(v string) Secret { return secret.New(v) }

// Resolve expands ${env:NAME} and ${file:/path} references (secret.Resolve).
func Resolve(v string) (string, error) { return secret.Resolve(v) }

// ResolveSecret is Resolve returning a Secret.
func ResolveSecret(v string) (Secret, error) { return secret.ResolveSecret(v) }
