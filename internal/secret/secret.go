// Package secret owns secret values and references: Secret never prints
// its value, and Resolve expands ${env:NAME} and ${file:/path} wherever a
// secret may be written (Kafka client properties and flags, registry and
// model-server credentials, the ops server's token).
package secret

import (
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// Secret is a value that must never be printed: a password, a key
// password, a token. Its String, GoString, text, JSON and slog forms are
// all "[redacted]"; Reveal returns the value.
type Secret struct{ v string }

// New wraps v.
func New(v string) Secret { return Secret{v} }

const redacted = "[redacted]"

// Reveal returns the secret's value, for the one place that needs it.
func (s Secret) Reveal() string { return s.v }

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.v == "" }

func (s Secret) String() string                { return redacted }
func (s Secret) GoString() string              { return redacted }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(redacted), nil }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(redacted) }
func (s Secret) Format(f fmt.State, verb rune) { fmt.Fprint(f, redacted) }
func (s Secret) MarshalJSON() ([]byte, error)  { return []byte(`"` + redacted + `"`), nil }
func (s *Secret) UnmarshalText(b []byte) error { s.v = string(b); return nil }

var _ slog.LogValuer = Secret{}
var _ fmt.Formatter = Secret{}

// Resolve expands the secret references in v: ${env:NAME} is the value of
// the environment variable NAME (which must be set), ${file:/path} the
// content of the file at /path less its trailing newline (as Kubernetes
// mounts a Secret's keys). Anything else is kept as it is; $$ is not
// special. Errors name the reference, never a value.
func Resolve(v string) (string, error) {
	if !strings.Contains(v, "${") {
		return v, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(v, "${")
		if i < 0 {
			b.WriteString(v)
			return b.String(), nil
		}
		j := strings.IndexByte(v[i:], '}')
		if j < 0 {
			b.WriteString(v)
			return b.String(), nil
		}
		ref := v[i+2 : i+j]
		kind, arg, ok := strings.Cut(ref, ":")
		var val string
		switch {
		case ok && kind == "env":
			x, set := os.LookupEnv(arg)
			if !set {
				return "", fmt.Errorf("${env:%s}: the environment variable %s is not set", arg, arg)
			}
			val = x
		case ok && kind == "file":
			if arg == "" || !strings.HasPrefix(arg, "/") {
				return "", fmt.Errorf("${file:%s}: want an absolute path, as ${file:/var/run/secrets/kafka/password}", arg)
			}
			raw, err := os.ReadFile(arg)
			if err != nil {
				return "", fmt.Errorf("${file:%s}: %w", arg, unwrapPathErr(err))
			}
			val = strings.TrimRight(string(raw), "\r\n")
		default:
			// Not a reference of ours: keep it.
			b.WriteString(v[:i+j+1])
			v = v[i+j+1:]
			continue
		}
		b.WriteString(v[:i])
		b.WriteString(val)
		v = v[i+j+1:]
	}
}

// unwrapPathErr keeps an os.PathError's cause: the path is already named.
func unwrapPathErr(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}

// ResolveSecret is Resolve returning a Secret.
func ResolveSecret(v string) (Secret, error) {
	s, err := Resolve(v)
	return Secret{s}, err
}
