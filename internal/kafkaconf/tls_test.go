package kafkaconf

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// testCA makes a CA and a server certificate it signs for names.
func testCA(t *testing.T, names ...string) (caPEM []byte, server tls.Certificate) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: names[0]}, DNSNames: names,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// TestTLSVerification: the chain and the name are checked by default;
// an empty ssl.endpoint.identification.algorithm skips the name but still
// checks the chain; --tls-server-name names the certificate to expect.
func TestTLSVerification(t *testing.T) {
	caPEM, cert := testCA(t, "broker.example")
	otherPEM, _ := testCA(t, "other")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { _ = c.(*tls.Conn).Handshake(); c.Close() }()
		}
	}()
	caFile := writeFile(t, "ca.pem", string(caPEM))
	otherFile := writeFile(t, "other.pem", string(otherPEM))
	cases := []struct {
		name string
		cfg  TLSConfig
		want string // "" for success
	}{
		{"name checked", TLSConfig{CAFile: caFile}, "doesn't contain any IP SANs"},
		{"server name", TLSConfig{CAFile: caFile, ServerName: "broker.example"}, ""},
		{"no hostname check", TLSConfig{CAFile: caFile, NoHostnameCheck: true}, ""},
		{"no hostname check, other CA", TLSConfig{CAFile: otherFile, NoHostnameCheck: true}, "unknown authority"},
		{"other CA", TLSConfig{CAFile: otherFile, ServerName: "broker.example"}, "unknown authority"},
		{"insecure", TLSConfig{CAFile: otherFile, InsecureSkipVerify: true}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cfg.Build()
			if err != nil {
				t.Fatal(err)
			}
			if c.ServerName == "" {
				c.ServerName = "127.0.0.1" // as kgo sets it to the host dialed
			}
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), c)
			if err == nil {
				conn.Close()
			}
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("want success, got %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("want an error with %q, got %v", tc.want, err)
			}
		})
	}
}

// TestOAuthTokenReread: the token file is read at every authentication, so
// a rotated token is used without a restart.
func TestOAuthTokenReread(t *testing.T) {
	f := writeFile(t, "token", "tok-one\n")
	c, err := Load(Settings{SecurityProtocol: "SASL_SSL", SASLMechanism: "OAUTHBEARER", OAuthTokenFile: f}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.mechanism()
	if err != nil {
		t.Fatal(err)
	}
	first := func() string {
		_, msg, err := m.Authenticate(context.Background(), "b:9092")
		if err != nil {
			t.Fatal(err)
		}
		return string(msg)
	}
	if msg := first(); !strings.Contains(msg, "auth=Bearer tok-one") {
		t.Errorf("first message %q", msg)
	}
	if err := os.WriteFile(f, []byte("tok-two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if msg := first(); !strings.Contains(msg, "auth=Bearer tok-two") {
		t.Errorf("after rotation: %q", msg)
	}
}

// TestMSKIAMCredentials: AWS_MSK_IAM signs with the credentials of the
// AWS SDK's chain (here its environment variables).
func TestMSKIAMCredentials(t *testing.T) {
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "secret-example")
	t.Setenv("AWS_CONFIG_FILE", "/nonexistent")
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
	c, err := Load(Settings{SecurityProtocol: "SASL_SSL", SASLMechanism: "AWS_MSK_IAM"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.mechanism()
	if err != nil {
		t.Fatal(err)
	}
	if m.Name() != "AWS_MSK_IAM" {
		t.Errorf("mechanism %s", m.Name())
	}
	_, msg, err := m.Authenticate(context.Background(), "b-1.c.kafka.eu-west-1.amazonaws.com:9098")
	if err != nil {
		t.Fatal(err)
	}
	if s := string(msg); !strings.Contains(s, "AKIDEXAMPLE") || !strings.Contains(s, "eu-west-1") || strings.Contains(s, "secret-example") {
		t.Errorf("signed payload: %s", s)
	}
}

// TestCheckWaitsForABroker: a broker that is not up yet is waited for
// until the check's deadline, then named.
func TestCheckWaitsForABroker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	c, _ := Load(Settings{}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	began := time.Now()
	err = Check(ctx, []string{addr}, c, nil)
	if took := time.Since(began); took < 1500*time.Millisecond || err == nil || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("after %v: %v", took, err)
	}
}
