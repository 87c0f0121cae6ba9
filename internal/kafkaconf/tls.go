package kafkaconf

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
)

// TLSConfig are the TLS settings. Stores are PEM only: JKS and PKCS12
// stores are refused with the commands that convert them.
type TLSConfig struct {
	CAFile         string // ssl.truststore.location, ssl.ca.location, --tls-ca
	CAPEM          string // ssl.truststore.certificates
	TrustStoreType string // ssl.truststore.type: PEM (or empty)
	KeyStoreFile   string // ssl.keystore.location: certificate chain and key in one PEM file
	KeyStoreType   string // ssl.keystore.type: PEM (or empty)
	CertFile       string // ssl.certificate.location, --tls-cert
	KeyFile        string // ssl.key.location, --tls-key
	CertPEM        string // ssl.keystore.certificate.chain
	KeyPEM         Secret // ssl.keystore.key
	KeyPassword    Secret // ssl.key.password: only for a key that is encrypted, which is refused
	ServerName     string // --tls-server-name: the name every broker's certificate must carry
	// NoHostnameCheck verifies the chain but not the broker's name
	// (ssl.endpoint.identification.algorithm= empty).
	NoHostnameCheck bool
	// InsecureSkipVerify verifies nothing (--tls-insecure-skip-verify).
	InsecureSkipVerify bool
}

func (t *TLSConfig) given() bool {
	return t.CAFile != "" || t.CAPEM != "" || t.KeyStoreFile != "" || t.CertFile != "" || t.KeyFile != "" ||
		t.CertPEM != "" || !t.KeyPEM.IsZero() || t.ServerName != "" || t.InsecureSkipVerify || t.NoHostnameCheck
}

const convertHint = "streamer reads PEM only; convert a JKS or PKCS12 store with " +
	"`keytool -importkeystore -srckeystore STORE -destkeystore store.p12 -deststoretype PKCS12` and " +
	"`openssl pkcs12 -in store.p12 -nodes -out store.pem`"

func pemOnly(what, typ string) error {
	switch typ {
	case "", "PEM":
		return nil
	}
	return fmt.Errorf("%s type %s is not supported: %s", what, typ, convertHint)
}

// readPEM reads a file that must be PEM.
func readPEM(what, file string) ([]byte, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	if !bytes.Contains(b, []byte("-----BEGIN ")) {
		return nil, fmt.Errorf("%s %s is not PEM (a JKS or PKCS12 store?): %s", what, file, convertHint)
	}
	return b, nil
}

// Build returns the crypto/tls configuration: TLS 1.2 or later, the CA
// bundle (the system's when none is given), the client certificate.
func (t *TLSConfig) Build() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if err := errors.Join(pemOnly("ssl.truststore", t.TrustStoreType), pemOnly("ssl.keystore", t.KeyStoreType)); err != nil {
		return nil, err
	}
	var ca []byte
	if t.CAFile != "" {
		b, err := readPEM("CA bundle (--tls-ca, ssl.truststore.location)", t.CAFile)
		if err != nil {
			return nil, err
		}
		ca = b
	}
	ca = append(ca, t.CAPEM...)
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, fmt.Errorf("CA bundle (--tls-ca, ssl.truststore.location): no certificate in it")
		}
		tc.RootCAs = pool
	}
	var certPEM, keyPEM []byte
	switch {
	case t.KeyStoreFile != "":
		b, err := readPEM("ssl.keystore.location", t.KeyStoreFile)
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM = b, b
	case t.CertFile != "" || t.KeyFile != "":
		if t.CertFile == "" || t.KeyFile == "" {
			return nil, fmt.Errorf("a client certificate needs both --tls-cert and --tls-key (ssl.certificate.location and ssl.key.location)")
		}
		c, err := readPEM("client certificate (--tls-cert)", t.CertFile)
		if err != nil {
			return nil, err
		}
		k, err := readPEM("client key (--tls-key)", t.KeyFile)
		if err != nil {
			return nil, err
		}
		certPEM, keyPEM = c, k
	case t.CertPEM != "" || !t.KeyPEM.IsZero():
		certPEM, keyPEM = []byte(t.CertPEM), []byte(t.KeyPEM.Reveal())
	}
	if certPEM != nil {
		if encrypted(keyPEM) {
			return nil, fmt.Errorf("the client key is encrypted, which is not supported: decrypt it with `openssl pkey -in key.pem -out key-plain.pem` and keep it in a Secret")
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			// crypto/tls's errors describe the PEM blocks, never their bytes.
			return nil, fmt.Errorf("client certificate and key: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	switch {
	case t.InsecureSkipVerify:
		tc.InsecureSkipVerify = true
	case t.NoHostnameCheck:
		// Verify the chain, not the name.
		tc.InsecureSkipVerify = true
		roots := tc.RootCAs
		tc.VerifyConnection = func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return errors.New("the broker sent no certificate")
			}
			inter := x509.NewCertPool()
			for _, c := range cs.PeerCertificates[1:] {
				inter.AddCert(c)
			}
			_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter})
			return err
		}
	}
	return tc, nil
}

// encrypted reports whether a PEM holds an encrypted private key.
func encrypted(b []byte) bool {
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			return false
		}
		if blk.Type == "ENCRYPTED PRIVATE KEY" || blk.Headers["Proc-Type"] == "4,ENCRYPTED" {
			return true
		}
	}
}
