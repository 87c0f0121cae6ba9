package kafkaconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
)

// CheckTimeout bounds Check.
const CheckTimeout = 10 * time.Second

// Check connects to the seed brokers with opts and asks one of them for
// the cluster's metadata, within CheckTimeout. It returns nil once one
// answers, and otherwise an error that says what went wrong in the terms
// of the settings: the broker rejected the credentials, its certificate is
// not signed by the CA given, the port speaks TLS and the client does not,
// ... A client left to itself would retry such errors until its context
// ends; a replica that cannot authenticate should say so and stop.
func Check(ctx context.Context, brokers []string, c *Config, opts []kgo.Opt) error {
	ctx, cancel := context.WithTimeout(ctx, CheckTimeout)
	defer cancel()
	var mu sync.Mutex
	var connErr error // the last connection-level error, which Ping may hide behind a timeout
	hook := connHook(func(err error) {
		mu.Lock()
		connErr = err
		mu.Unlock()
	})
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(brokers...), kgo.WithHooks(hook)}, opts...)...)
	if err != nil {
		return fmt.Errorf("kafka client: %w", err)
	}
	defer cl.Close()
	// A broker not up yet (refused, unreachable) is waited for until the
	// deadline; anything else is an answer.
	for {
		if err = cl.Ping(ctx); err == nil {
			return nil
		}
		if !dialErr(err) {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
			continue
		}
		break
	}
	mu.Lock()
	if connErr != nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || isEOF(err) || dialErr(err)) {
		err = connErr
	}
	mu.Unlock()
	if ctx.Err() != nil && errors.Is(err, context.Canceled) && !errors.Is(context.Cause(ctx), context.DeadlineExceeded) {
		return err
	}
	return Explain(err, brokers, c)
}

// connHook records connection and read errors.
type connHook func(error)

func (h connHook) OnBrokerConnect(_ kgo.BrokerMetadata, _ time.Duration, _ net.Conn, err error) {
	if err != nil {
		h(err)
	}
}

func (h connHook) OnBrokerRead(_ kgo.BrokerMetadata, _ int16, _ int, _, _ time.Duration, err error) {
	if err != nil {
		h(err)
	}
}

var (
	_ kgo.HookBrokerConnect = connHook(nil)
	_ kgo.HookBrokerRead    = connHook(nil)
)

// dialErr reports a connection that could not be made at all (TLS and
// certificate errors, made while dialing too, are not such).
func dialErr(err error) bool {
	var oe *net.OpError
	var rhe tls.RecordHeaderError
	var ce *tls.CertificateVerificationError
	return errors.As(err, &oe) && oe.Op == "dial" && !errors.As(err, &rhe) && !errors.As(err, &ce)
}

func isEOF(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// Explain rewords a connection error in terms of the settings that cause
// it. It never includes a secret (the broker's and crypto/tls's messages
// do not carry them).
func Explain(err error, brokers []string, c *Config) error {
	at := strings.Join(brokers, ",")
	proto := Plaintext
	if c != nil {
		proto = c.SecurityProtocol
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	var rhe tls.RecordHeaderError
	var ae *tls.AlertError
	var fre *kgo.ErrFirstReadEOF
	tlsProto := proto == SSL || proto == SASLSSL
	switch {
	case errors.Is(err, kerr.SaslAuthenticationFailed):
		return fmt.Errorf("kafka %s: SASL authentication failed for user %q with %s: wrong password or unknown user (check sasl.jaas.config or --sasl-username/--sasl-password): %w", at, c.Username, c.Mechanism, err)
	case errors.Is(err, kerr.UnsupportedSaslMechanism):
		return fmt.Errorf("kafka %s: the broker does not enable sasl.mechanism %s on this listener: %w", at, c.Mechanism, err)
	case errors.Is(err, kerr.IllegalSaslState):
		return fmt.Errorf("kafka %s: the broker refused the SASL exchange (is security.protocol %s right for this port?): %w", at, proto, err)
	case errors.As(err, &uae):
		return fmt.Errorf("kafka %s: TLS: the broker's certificate is not signed by a CA in the CA bundle (--tls-ca, ssl.truststore.location; default the system's): %w", at, err)
	case errors.As(err, &hne):
		return fmt.Errorf("kafka %s: TLS: the broker's certificate is not for the name dialed (set --tls-server-name, or fix the advertised listener): %w", at, err)
	case errors.As(err, &cie):
		return fmt.Errorf("kafka %s: TLS: the broker's certificate is not valid: %w", at, err)
	case errors.As(err, &rhe):
		return fmt.Errorf("kafka %s: this port does not speak TLS but security.protocol is %s: use PLAINTEXT or SASL_PLAINTEXT, or the broker's TLS port: %w", at, proto, err)
	case errors.As(err, &ae):
		return fmt.Errorf("kafka %s: TLS: the broker refused the handshake (a client certificate it does not accept, or none when it requires one: --tls-cert/--tls-key): %w", at, err)
	case !tlsProto && strings.Contains(err.Error(), "tls alert record"):
		return fmt.Errorf("kafka %s: the port expects TLS but security.protocol is %s: set it to SSL or SASL_SSL, or use the broker's plaintext port: %w", at, proto, err)
	case errors.As(err, &fre) && tlsProto:
		return fmt.Errorf("kafka %s: this port does not speak TLS but security.protocol is %s: use PLAINTEXT or SASL_PLAINTEXT, or the broker's TLS port: %w", at, proto, err)
	case (errors.As(err, &fre) || isEOF(err)) && !tlsProto:
		return fmt.Errorf("kafka %s: the broker closed the connection at the first request: the port may expect TLS (security.protocol SSL or SASL_SSL) or SASL (SASL_PLAINTEXT), and security.protocol is %s: %w", at, proto, err)
	case isEOF(err):
		return fmt.Errorf("kafka %s: the broker closed the connection at the first request: is security.protocol %s what this port expects? %w", at, proto, err)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("kafka %s: no broker answered within %v (security.protocol %s): %w", at, CheckTimeout, proto, err)
	}
	return fmt.Errorf("kafka %s: %w", at, err)
}
