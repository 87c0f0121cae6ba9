package kafkaconf

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseProperties(t *testing.T) {
	p, err := ParseProperties("client.properties", `# comment
! another
security.protocol = SASL_SSL
sasl.mechanism:SCRAM-SHA-512
ssl.truststore.location /etc/ca.pem
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required \
    username="alice" \
    password="${env:PW}";
key\=with\:seps=v\u00e9\tx
empty=
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"security.protocol":       "SASL_SSL",
		"sasl.mechanism":          "SCRAM-SHA-512",
		"ssl.truststore.location": "/etc/ca.pem",
		"sasl.jaas.config":        `org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="${env:PW}";`,
		"key=with:seps":           "vé\tx",
		"empty":                   "",
	}
	for k, v := range want {
		if p.Values[k] != v {
			t.Errorf("%s = %q, want %q", k, p.Values[k], v)
		}
	}
	if len(p.Values) != len(want) {
		t.Errorf("got %d keys, want %d: %v", len(p.Values), len(want), p.Values)
	}
	if p.Lines["sasl.jaas.config"] != 6 {
		t.Errorf("sasl.jaas.config at line %d, want 6", p.Lines["sasl.jaas.config"])
	}
}

func TestParseJAAS(t *testing.T) {
	j, err := ParseJAAS(`org.apache.kafka.common.security.plain.PlainLoginModule required username="bob" password="p a\"ss;word" extra=x;`)
	if err != nil {
		t.Fatal(err)
	}
	if j.moduleBase() != "PlainLoginModule" || j.Options["username"] != "bob" || j.Options["password"] != `p a"ss;word` || j.Options["extra"] != "x" {
		t.Errorf("got %+v", j)
	}
	for _, bad := range []string{"PlainLoginModule", `PlainLoginModule maybe username="x";`, `PlainLoginModule required username="x;`} {
		if _, err := ParseJAAS(bad); err == nil {
			t.Errorf("%q: no error", bad)
		} else if strings.Contains(err.Error(), `"x`) {
			t.Errorf("%q: the error quotes a value: %v", bad, err)
		}
	}
}

const pw = "s3cr3t-Pa55word"

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(f, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestLoadPrecedence: the file, overridden by the settings (flags, whose
// defaults are the env vars); secrets from ${env:} and ${file:}.
func TestLoadPrecedence(t *testing.T) {
	t.Setenv("KAFKA_PW", pw)
	file := writeFile(t, "c.properties", `security.protocol=SASL_SSL
sasl.mechanism=SCRAM-SHA-256
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="alice" password="${env:KAFKA_PW}";
ssl.truststore.location=/nonexistent/ca.pem
client.dns.lookup=use_all_dns_ips
`)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	c, err := Load(Settings{ConfigFile: file}, log)
	if err != nil {
		t.Fatal(err)
	}
	if c.SecurityProtocol != SASLSSL || c.Mechanism != MechScram256 || c.Username != "alice" || c.Password.Reveal() != pw || c.TLS.CAFile != "/nonexistent/ca.pem" {
		t.Errorf("from the file: %+v", c)
	}
	if !strings.Contains(logs.String(), "client.dns.lookup") {
		t.Errorf("the ignored property is not reported: %s", logs.String())
	}
	pwFile := writeFile(t, "pw", "other-secret\n")
	c, err = Load(Settings{ConfigFile: file, SASLMechanism: "scram-sha-512", SASLUsername: "bob", SASLPassword: "${file:" + pwFile + "}", TLSCA: "/etc/ca2.pem"}, log)
	if err != nil {
		t.Fatal(err)
	}
	if c.Mechanism != MechScram512 || c.Username != "bob" || c.Password.Reveal() != "other-secret" || c.TLS.CAFile != "/etc/ca2.pem" {
		t.Errorf("flags over the file: %+v", c)
	}
	if strings.Contains(logs.String(), pw) || strings.Contains(fmt.Sprintf("%v %+v %#v %s", c, c, c, c.Password), pw) {
		t.Errorf("a secret is printed")
	}
}

// TestLoadErrors: each mistake is an error that names the setting, and
// none quotes a secret.
func TestLoadErrors(t *testing.T) {
	t.Setenv("KAFKA_PW", pw)
	jks := writeFile(t, "trust.jks", "\xfe\xed\xfe\xed binary")
	cases := []struct {
		name string
		s    Settings
		file string
		want string
	}{
		{"sasl without protocol", Settings{SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: pw}, "", "security.protocol"},
		{"tls without protocol", Settings{TLSCA: "/x.pem"}, "", "set it to SSL or SASL_SSL"},
		{"no mechanism", Settings{SecurityProtocol: "SASL_SSL"}, "", "no sasl.mechanism"},
		{"gssapi", Settings{SecurityProtocol: "SASL_SSL", SASLMechanism: "GSSAPI"}, "", "GSSAPI (Kerberos) is not supported"},
		{"no password", Settings{SecurityProtocol: "SASL_SSL", SASLMechanism: "PLAIN", SASLUsername: "u"}, "", "needs a username and a password"},
		{"unset env", Settings{SecurityProtocol: "SASL_SSL", SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "${env:NOPE_NOT_SET}"}, "", "NOPE_NOT_SET is not set"},
		{"missing file", Settings{SecurityProtocol: "SASL_SSL", SASLMechanism: "PLAIN", SASLUsername: "u", SASLPassword: "${file:/nonexistent/pw}"}, "", "/nonexistent/pw"},
		{"oauth no file", Settings{SecurityProtocol: "SASL_SSL", SASLMechanism: "OAUTHBEARER"}, "", "needs a token file"},
		{"bad protocol", Settings{SecurityProtocol: "TLS"}, "", "want PLAINTEXT, SSL"},
		{"jaas module", Settings{}, "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.jaas.config=com.sun.security.auth.module.Krb5LoginModule required;\n", "c.properties:3: sasl.jaas.config: login module"},
		{"jaas env", Settings{}, "security.protocol=SASL_SSL\nsasl.mechanism=PLAIN\nsasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"u\" password=\"${env:NOPE_NOT_SET}\";\n", "c.properties:3: sasl.jaas.config: ${env:NOPE_NOT_SET}"},
		{"token url", Settings{}, "security.protocol=SASL_SSL\nsasl.mechanism=OAUTHBEARER\nsasl.oauthbearer.token.endpoint.url=https://idp/token\n", "only a file:// URL"},
		{"jks type", Settings{}, "security.protocol=SSL\nssl.truststore.type=JKS\nssl.truststore.location=" + jks + "\n", "JKS is not supported"},
		{"jks content", Settings{}, "security.protocol=SSL\nssl.truststore.location=" + jks + "\n", "is not PEM"},
		{"cert without key", Settings{SecurityProtocol: "SSL", TLSCert: "/x.pem"}, "", "needs both --tls-cert and --tls-key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := tc.s
			if tc.file != "" {
				s.ConfigFile = writeFile(t, "c.properties", tc.file)
			}
			c, err := Load(s, nil)
			if err == nil {
				_, err = c.Options()
			}
			if err == nil {
				t.Fatalf("no error, want one with %q", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q, want it to contain %q", err, tc.want)
			}
			if strings.Contains(err.Error(), pw) {
				t.Errorf("the error quotes the secret: %v", err)
			}
		})
	}
}

// TestSecretNeverPrints: every way Go prints a value shows [redacted].
func TestSecretNeverPrints(t *testing.T) {
	s := NewSecret(pw)
	type holder struct {
		P Secret
		Q *Secret
	}
	h := holder{s, &s}
	var out bytes.Buffer
	fmt.Fprintf(&out, "%v %+v %#v %s %q %x %v", s, h, h, s, s, s, []Secret{s})
	b, _ := json.Marshal(h)
	out.Write(b)
	slog.New(slog.NewJSONHandler(&out, nil)).Info("x", "p", s, "h", h)
	slog.New(slog.NewTextHandler(&out, nil)).Info("x", "p", s, "h", h)
	if strings.Contains(out.String(), pw) {
		t.Errorf("the secret shows: %s", out.String())
	}
	if s.Reveal() != pw {
		t.Errorf("Reveal = %q", s.Reveal())
	}
}

func TestResolve(t *testing.T) {
	t.Setenv("A_VAR", "va")
	f := writeFile(t, "tok", "from-file\r\n")
	got, err := Resolve("x${env:A_VAR}y${file:" + f + "}z${other:k}${unclosed")
	if err != nil {
		t.Fatal(err)
	}
	if want := "xvayfrom-filez${other:k}${unclosed"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if _, err := Resolve("${file:relative/path}"); err == nil || !strings.Contains(err.Error(), "absolute path") {
		t.Errorf("a relative path: %v", err)
	}
}
