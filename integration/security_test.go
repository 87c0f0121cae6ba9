package integration

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
)

// The SASL_SSL listener of the test broker (scripts/kafka/kafka.sh with
// KAFKA_SASL_SSL_PORT; make test sets both): its address and the CA that
// signed its certificate.
func saslSSL(t *testing.T) (broker, ca string) {
	t.Helper()
	broker, ca = os.Getenv("STREAMER_SASL_SSL_BROKERS"), os.Getenv("STREAMER_SASL_SSL_CA")
	if broker == "" || ca == "" {
		t.Skip("no SASL_SSL listener: set STREAMER_SASL_SSL_BROKERS and STREAMER_SASL_SSL_CA (make test starts the broker with KAFKA_SASL_SSL_PORT and sets them)")
	}
	return broker, ca
}

// scramUser creates a SCRAM-SHA-512 user over the plaintext listener and
// waits until the SASL_SSL listener accepts it.
func (e *env) scramUser(user, password string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	res, err := e.admin.AlterUserSCRAMs(ctx, nil, []kadm.UpsertSCRAM{{User: user, Mechanism: kadm.ScramSha512, Iterations: 4096, Password: password}})
	if err == nil {
		err = res.Error()
	}
	if err != nil {
		e.t.Fatalf("creating SCRAM user %s: %v", user, err)
	}
	e.t.Cleanup(func() {
		_, _ = e.admin.AlterUserSCRAMs(context.Background(), []kadm.DeleteSCRAM{{User: user, Mechanism: kadm.ScramSha512}}, nil)
	})
}

// writeClientProps writes a Java client properties file whose password is
// a reference to an environment variable.
func (e *env) writeClientProps(user, passwordEnv, ca string) string {
	e.t.Helper()
	f := filepath.Join(e.dir, "client.properties")
	text := `# as for the Java client
security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
  username="` + user + `" password="${env:` + passwordEnv + `}";
ssl.truststore.type=PEM
ssl.truststore.location=` + ca + `
ssl.endpoint.identification.algorithm=https
`
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return f
}

// TestSASLSSLExactlyOnce: a topology runs over SASL_SSL with SCRAM-SHA-512,
// configured by a client properties file whose password comes from an
// environment variable, and its output holds every record exactly once.
// Neither the password nor the user's SCRAM secret shows in its output.
func TestSASLSSLExactlyOnce(t *testing.T) {
	requireIntegration(t)
	broker, ca := saslSSL(t)
	e := newEnv(t)
	const password = "it-Scram-Pa55-word-7f3a"
	user := "u-" + e.id
	e.scramUser(user, password)
	t.Setenv("IT_KAFKA_PASSWORD", password)
	props := e.writeClientProps(user, "IT_KAFKA_PASSWORD", ca)
	e.createTopic("in", 3)
	file := e.writeTopology(filterMap, nil)
	const n = 20_000
	e.produce("in", inputRecords(0, n))
	r := e.startArgs(file, "r1", "--metrics-addr", "off", "--brokers", broker, "--kafka-config", props, "--log-level", "debug")
	e.waitConsumed("streamer-"+e.id, "in", []*replica{r}, 3*time.Minute)
	took, code := r.stop(t)
	if code != 0 || took > 10*time.Second {
		t.Errorf("exit %d after %v of SIGTERM, want 0 within 10s:\n%s", code, took, r.logText())
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")), n)
	if strings.Contains(r.logText(), password) {
		t.Errorf("the replica's output shows the password")
	}
}

// TestSASLSSLErrors: each way of getting a secured connection wrong stops
// `streamer run` within 10 s with exit 1 and an error that names the
// cause, never a hang, and never shows the password.
func TestSASLSSLErrors(t *testing.T) {
	requireIntegration(t)
	broker, ca := saslSSL(t)
	e := newEnv(t)
	const password = "it-Right-Pa55word-91c2"
	user := "u-" + e.id
	e.scramUser(user, password)
	otherCA := writeOtherCA(t, e.dir)
	file := e.writeTopology(filterMap, nil)
	sasl := func(user, pw, ca string) []string {
		return []string{"--brokers", broker, "--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512",
			"--sasl-username", user, "--sasl-password", pw, "--tls-ca", ca}
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"wrong password", sasl(user, "not-"+password, ca), "SASL authentication failed for user \"" + user + "\" with SCRAM-SHA-512: wrong password or unknown user"},
		{"unknown user", sasl("nobody-"+e.id, password, ca), "SASL authentication failed for user \"nobody-" + e.id + "\" with SCRAM-SHA-512: wrong password or unknown user"},
		{"wrong CA", sasl(user, password, otherCA), "the broker's certificate is not signed by a CA in the CA bundle"},
		{"plaintext client on the TLS port", []string{"--brokers", broker}, "the port expects TLS but security.protocol is PLAINTEXT"},
		{"TLS client on the plaintext port", append(sasl(user, password, ca), "--brokers", strings.Join(brokers, ",")), "this port does not speak TLS"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			args := append([]string{"run", file, "--metrics-addr", "off"}, tc.args...)
			began := time.Now()
			out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
			took := time.Since(began)
			t.Logf("exit %d after %v: %s", exitCode(err), took.Round(time.Millisecond), strings.TrimSpace(string(out)))
			if code := exitCode(err); code != 1 {
				t.Errorf("exit %d, want 1", code)
			}
			if took > 10*time.Second {
				t.Errorf("took %v, want under 10s", took)
			}
			if !strings.Contains(string(out), tc.want) {
				t.Errorf("the output does not say %q", tc.want)
			}
			if strings.Contains(string(out), password) {
				t.Errorf("the output shows the password")
			}
		})
	}
}

// writeOtherCA writes a CA certificate that signed nothing the broker has.
func writeOtherCA(t *testing.T, dir string) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "some other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(dir, "other-ca.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestSASLSSLCommands: the commands other than run that talk to Kafka take
// the same connection settings: offsets show and reset, a backfill, its
// shadow run (whose comparison reads the sinks back) and its cleanup all
// work over SASL_SSL with a client properties file, and a wrong CA stops
// offsets show within 10 s with the clear TLS error.
func TestSASLSSLCommands(t *testing.T) {
	requireIntegration(t)
	broker, ca := saslSSL(t)
	e := newEnv(t)
	const password = "it-Cmd-Pa55word-4e1b"
	user := "u-" + e.id
	e.scramUser(user, password)
	t.Setenv("IT_KAFKA_PASSWORD", password)
	props := e.writeClientProps(user, "IT_KAFKA_PASSWORD", ca)
	e.createTopic("in", 3)
	file := e.writeTopology(filterMap, nil)
	const n = 2_000
	e.produce("in", inputRecords(0, n))
	conn := []string{"--brokers", broker, "--kafka-config", props}
	stateDir := filepath.Join(e.dir, "bf")
	steps := []struct {
		name string
		args []string
		want []string
	}{
		{"offsets show", []string{"offsets", "show", file}, []string{"group streamer-" + e.id, e.topic("in") + "  0"}},
		{"offsets reset", []string{"offsets", "reset", file, "--to", "earliest"}, []string{"dry run: nothing changed"}},
		{"backfill", []string{"backfill", file, "--from", "earliest", "--to", "now", "--id", "s", "--sink-suffix", "-bf", "--state-dir", stateDir},
			[]string{"backfill s finished"}},
		{"shadow run", []string{"backfill", file, "--compare", file, "--from", "earliest", "--to", "now", "--id", "c", "--state-dir", stateDir},
			[]string{"shadow run c: no differences"}},
		{"cleanup", []string{"backfill", file, "--cleanup", "s", "--state-dir", stateDir}, []string{"group streamer-" + e.id + "-backfill-s deleted"}},
	}
	for _, s := range steps {
		out, code := e.cmd(3*time.Minute, append(s.args, conn...)...)
		if code != 0 {
			t.Fatalf("%s: exit %d:\n%s", s.name, code, out)
		}
		for _, w := range s.want {
			if !strings.Contains(out, w) {
				t.Errorf("%s: the output lacks %q:\n%s", s.name, w, out)
			}
		}
		if strings.Contains(out, password) {
			t.Errorf("%s: the output shows the password", s.name)
		}
	}
	checkExactlyOnce(t, readOutput(t, e.topic("out")+"-bf"), n)

	otherCA := writeOtherCA(t, e.dir)
	began := time.Now()
	out, code := e.cmd(time.Minute, "offsets", "show", file, "--brokers", broker, "--security-protocol", "SASL_SSL", "--sasl-mechanism", "SCRAM-SHA-512",
		"--sasl-username", user, "--sasl-password", "${env:IT_KAFKA_PASSWORD}", "--tls-ca", otherCA)
	took := time.Since(began)
	if code != 1 || took > 10*time.Second || !strings.Contains(out, "the broker's certificate is not signed by a CA in the CA bundle") {
		t.Errorf("offsets show with a wrong CA: exit %d after %v, want 1 within 10s with the TLS error:\n%s", code, took, out)
	}
}
