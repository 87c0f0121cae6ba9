//go:build !nokms

package crypt

import (
	"context"
	"errors"
	"net"
	"net/url"
	"os"
	"strings"

	vault "github.com/hashicorp/vault/api"
	"github.com/tink-crypto/tink-go-awskms/v2/integration/awskms"
	"github.com/tink-crypto/tink-go-gcpkms/v2/integration/gcpkms"
	"github.com/tink-crypto/tink-go-hcvault/v2/integration/hcvault"
	"github.com/tink-crypto/tink-go/v2/core/registry"
	"google.golang.org/api/option"
)

// The remote drivers go through tink's own integrations. They are built
// and type-checked here, but no test runs them against AWS, GCP or Vault
// (none is reachable from the build machine): the local driver is the
// tested one, and the interface is the same tink.AEAD.
func init() {
	Register("aws", remote{open: func(ctx context.Context, k Key) (registry.KMSClient, error) {
		var opts []awskms.ClientOption
		if k.Credentials != "" {
			opts = append(opts, awskms.WithCredentialPath(k.Credentials))
		}
		return awskms.NewClientWithOptions(k.URI, opts...)
	}})
	Register("gcp", remote{open: func(ctx context.Context, k Key) (registry.KMSClient, error) {
		var opts []gcpkms.Option
		if k.Credentials != "" {
			// A service account key file; other kinds come through the
			// default chain (GOOGLE_APPLICATION_CREDENTIALS).
			opts = append(opts, gcpkms.WithGoogleAPIClientOptions(option.WithAuthCredentialsFile(option.ServiceAccount, k.Credentials)))
		}
		return gcpkms.NewClient(ctx, k.URI, opts...)
	}})
	Register("vault", remote{open: func(_ context.Context, k Key) (registry.KMSClient, error) {
		u, err := url.Parse(k.URI)
		if err != nil {
			return nil, err
		}
		cfg := vault.DefaultConfig()
		cfg.Address = "https://" + u.Host
		c, err := vault.NewClient(cfg)
		if err != nil {
			return nil, err
		}
		token := k.Credentials
		if token == "" {
			token = os.Getenv("VAULT_TOKEN")
		}
		c.SetToken(token)
		return hcvault.NewClientWithAEADOptions(k.URI, c.Logical())
	}})
}

type remote struct {
	open func(context.Context, Key) (registry.KMSClient, error)
}

func (r remote) Open(ctx context.Context, k Key) (KEK, error) {
	c, err := r.open(ctx, k)
	if err != nil {
		return KEK{}, classifyOpen(err)
	}
	a, err := c.GetAEAD(k.URI)
	if err != nil {
		return KEK{}, classifyOpen(err)
	}
	return KEK{AEAD: a, Outage: Outage}, nil
}

func classifyOpen(err error) error {
	if Outage(err) {
		return errors.Join(ErrUnreachable, err)
	}
	return err
}

// Outage reports whether an error of a remote KMS is the service not
// answering (the network, a timeout, throttling, a 5xx), as opposed to a
// refusal (a wrong key, no permission). It is a best effort over the SDKs'
// error types and messages.
func Outage(err error) bool {
	var ne net.Error
	var ue *url.Error
	if errors.As(err, &ne) || errors.As(err, &ue) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"connection refused", "no such host", "timeout", "deadline exceeded", "unavailable", "throttl", "status code: 5", "code: 5", "code = internal", "requesterror", "eof"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}
