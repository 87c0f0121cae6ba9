// Package kafkaconf owns how streamer connects to a Kafka cluster: it reads
// the Java client's settings (a client properties file with
// security.protocol, sasl.mechanism, sasl.jaas.config, ssl.truststore.location,
// ...) overridden by STREAMER_* environment variables and flags, resolves
// ${env:NAME} and ${file:/path} secret references, and turns them into
// franz-go options for TLS and SASL (PLAIN, SCRAM-SHA-256/512, OAUTHBEARER
// with a token file re-read on every authentication, AWS_MSK_IAM). Check
// asks the brokers once and explains a failure in words (wrong password,
// unknown CA, TLS port spoken to in plaintext) instead of retrying forever.
//
// Secrets are held as Secret, which never prints its value.
package kafkaconf

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"

	awssdk "github.com/aws/aws-sdk-go-v2/aws"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/aws"
	"github.com/twmb/franz-go/pkg/sasl/oauth"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
)

// Security protocols, as the Java client names them.
const (
	Plaintext     = "PLAINTEXT"
	SSL           = "SSL"
	SASLPlaintext = "SASL_PLAINTEXT"
	SASLSSL       = "SASL_SSL"
)

// SASL mechanisms.
const (
	MechPlain       = "PLAIN"
	MechScram256    = "SCRAM-SHA-256"
	MechScram512    = "SCRAM-SHA-512"
	MechOAuthBearer = "OAUTHBEARER"
	MechAWSMSKIAM   = "AWS_MSK_IAM"
)

// Settings are the connection settings given as flags or environment
// variables; each non-empty one overrides the properties file's. Password
// may hold ${env:NAME} or ${file:/path} references.
type Settings struct {
	ConfigFile       string // --kafka-config, STREAMER_KAFKA_CONFIG: a Java client properties file
	SecurityProtocol string // --security-protocol
	SASLMechanism    string // --sasl-mechanism
	SASLUsername     string // --sasl-username
	SASLPassword     string // --sasl-password
	OAuthTokenFile   string // --sasl-oauth-token-file
	TLSCA            string // --tls-ca: PEM bundle
	TLSCert          string // --tls-cert: PEM client certificate (chain)
	TLSKey           string // --tls-key: PEM private key
	TLSServerName    string // --tls-server-name
	// TLSInsecureSkipVerify turns certificate verification off. Logged
	// as a warning at every start.
	TLSInsecureSkipVerify bool // --tls-insecure-skip-verify
}

// Config is the resolved connection configuration.
type Config struct {
	SecurityProtocol string
	Mechanism        string
	Username         string
	Password         Secret
	// OAuthTokenFile holds the OAUTHBEARER token; it is read again at
	// every authentication, so a rotated token (a Kubernetes projected
	// service account token) is picked up.
	OAuthTokenFile string
	OAuthToken     Secret // a fixed token, when no file is given
	TLS            TLSConfig
}

// known are the properties Config understands; others are reported once
// as ignored (a Java client file carries many that do not apply).
var known = []string{
	"bootstrap.servers", "security.protocol", "sasl.mechanism", "sasl.jaas.config",
	"sasl.oauthbearer.token.endpoint.url", "sasl.login.callback.handler.class", "sasl.client.callback.handler.class",
	"ssl.truststore.location", "ssl.truststore.type", "ssl.truststore.certificates", "ssl.truststore.password",
	"ssl.keystore.location", "ssl.keystore.type", "ssl.keystore.password", "ssl.key.password",
	"ssl.keystore.certificate.chain", "ssl.keystore.key",
	"ssl.endpoint.identification.algorithm",
	"ssl.ca.location", "ssl.certificate.location", "ssl.key.location", // librdkafka's names
	"streamer.ssl.server.name", "streamer.ssl.insecure.skip.verify",
}

// Load reads the properties file (if any) and applies the settings over
// it. It logs, as warnings, properties it ignores and any weakening of TLS
// verification. Errors name the property or flag and never its value.
func Load(s Settings, log *slog.Logger) (*Config, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	props := &Properties{Values: map[string]string{}, Lines: map[string]int{}}
	if s.ConfigFile != "" {
		p, err := ReadProperties(s.ConfigFile)
		if err != nil {
			return nil, fmt.Errorf("--kafka-config: %w", err)
		}
		props = p
	}
	where := func(key string) string {
		if l, ok := props.Lines[key]; ok {
			return fmt.Sprintf("%s:%d: %s", props.File, l, key)
		}
		return key
	}
	get := func(key string) (string, error) {
		v, err := Resolve(props.Values[key])
		if err != nil {
			return "", fmt.Errorf("%s: %w", where(key), err)
		}
		return strings.TrimSpace(v), nil
	}
	var ignored []string
	for k := range props.Values {
		if !slices.Contains(known, k) && !strings.HasPrefix(k, "config.providers") {
			ignored = append(ignored, k)
		}
	}
	if len(ignored) > 0 {
		sort.Strings(ignored)
		log.Warn("kafka config: ignoring properties streamer does not use", "file", props.File, "properties", strings.Join(ignored, ","))
	}

	c := &Config{}
	var err error
	must := func(v string, e error) string {
		if e != nil && err == nil {
			err = e
		}
		return v
	}
	c.SecurityProtocol = strings.ToUpper(must(get("security.protocol")))
	c.Mechanism = strings.ToUpper(must(get("sasl.mechanism")))
	if j := props.Values["sasl.jaas.config"]; j != "" {
		jaas, jerr := ParseJAAS(j)
		if jerr != nil {
			return nil, fmt.Errorf("%s: %w", where("sasl.jaas.config"), jerr)
		}
		switch jaas.moduleBase() {
		case "PlainLoginModule", "ScramLoginModule":
			u, e1 := Resolve(jaas.Options["username"])
			p, e2 := ResolveSecret(jaas.Options["password"])
			if e1 != nil || e2 != nil {
				return nil, fmt.Errorf("%s: %w", where("sasl.jaas.config"), firstErr(e1, e2))
			}
			c.Username, c.Password = u, p
		case "OAuthBearerLoginModule", "IAMLoginModule":
			// The token comes from sasl.oauthbearer.token.endpoint.url
			// (file:) or the flags; IAM credentials from the AWS chain.
		default:
			return nil, fmt.Errorf("%s: login module %s is not supported (want PlainLoginModule, ScramLoginModule, OAuthBearerLoginModule or IAMLoginModule)", where("sasl.jaas.config"), jaas.Module)
		}
	}
	if u := must(get("sasl.oauthbearer.token.endpoint.url")); u != "" {
		path, ok := strings.CutPrefix(u, "file://")
		if !ok {
			return nil, fmt.Errorf("%s: only a file:// URL is supported (a token file, re-read at every authentication); fetch tokens from an endpoint with a sidecar that writes the file", where("sasl.oauthbearer.token.endpoint.url"))
		}
		c.OAuthTokenFile = path
	}
	t := &c.TLS
	t.CAFile = must(get("ssl.truststore.location"))
	if t.CAFile == "" {
		t.CAFile = must(get("ssl.ca.location"))
	}
	t.CAPEM = must(get("ssl.truststore.certificates"))
	t.TrustStoreType = strings.ToUpper(must(get("ssl.truststore.type")))
	t.KeyStoreFile = must(get("ssl.keystore.location"))
	t.KeyStoreType = strings.ToUpper(must(get("ssl.keystore.type")))
	t.CertFile = must(get("ssl.certificate.location"))
	t.KeyFile = must(get("ssl.key.location"))
	t.CertPEM = must(get("ssl.keystore.certificate.chain"))
	kp, kerr := ResolveSecret(props.Values["ssl.keystore.key"])
	if kerr != nil {
		return nil, fmt.Errorf("%s: %w", where("ssl.keystore.key"), kerr)
	}
	t.KeyPEM = kp
	if kp, kerr = ResolveSecret(props.Values["ssl.key.password"]); kerr != nil {
		return nil, fmt.Errorf("%s: %w", where("ssl.key.password"), kerr)
	}
	t.KeyPassword = kp
	if alg, ok := props.Values["ssl.endpoint.identification.algorithm"]; ok {
		switch strings.ToLower(strings.TrimSpace(alg)) {
		case "":
			t.NoHostnameCheck = true
		case "https":
		default:
			return nil, fmt.Errorf("%s: want https or empty, got %q", where("ssl.endpoint.identification.algorithm"), alg)
		}
	}
	t.ServerName = must(get("streamer.ssl.server.name"))
	switch v := strings.ToLower(must(get("streamer.ssl.insecure.skip.verify"))); v {
	case "", "false":
	case "true":
		t.InsecureSkipVerify = true
	default:
		return nil, fmt.Errorf("%s: want true or false", where("streamer.ssl.insecure.skip.verify"))
	}
	if err != nil {
		return nil, err
	}

	// Flags and environment variables override the file.
	set := func(dst *string, v string) {
		if v = strings.TrimSpace(v); v != "" {
			*dst = v
		}
	}
	set(&c.SecurityProtocol, strings.ToUpper(s.SecurityProtocol))
	set(&c.Mechanism, strings.ToUpper(s.SASLMechanism))
	if s.SASLUsername != "" {
		u, err := Resolve(s.SASLUsername)
		if err != nil {
			return nil, fmt.Errorf("--sasl-username: %w", err)
		}
		c.Username = u
	}
	if s.SASLPassword != "" {
		p, err := ResolveSecret(s.SASLPassword)
		if err != nil {
			return nil, fmt.Errorf("--sasl-password: %w", err)
		}
		c.Password = p
	}
	set(&c.OAuthTokenFile, s.OAuthTokenFile)
	if s.TLSCA != "" {
		t.CAFile, t.CAPEM, t.TrustStoreType = s.TLSCA, "", ""
	}
	if s.TLSCert != "" || s.TLSKey != "" {
		t.CertFile, t.KeyFile, t.KeyStoreFile, t.CertPEM, t.KeyPEM, t.KeyStoreType = s.TLSCert, s.TLSKey, "", "", Secret{}, ""
	}
	set(&t.ServerName, s.TLSServerName)
	t.InsecureSkipVerify = t.InsecureSkipVerify || s.TLSInsecureSkipVerify

	if c.SecurityProtocol == "" {
		c.SecurityProtocol = Plaintext
	}
	if err := c.check(); err != nil {
		return nil, err
	}
	if c.tls() {
		if t.InsecureSkipVerify {
			log.Warn("TLS CERTIFICATE VERIFICATION IS OFF (--tls-insecure-skip-verify): anyone on the path to the brokers can read and change the data and the credentials; use it only to debug")
		} else if t.NoHostnameCheck {
			log.Warn("TLS hostname verification is off (ssl.endpoint.identification.algorithm is empty): the brokers' certificates are checked against the CA but not against their names")
		}
	}
	return c, nil
}

func firstErr(errs ...error) error {
	for _, e := range errs {
		if e != nil {
			return e
		}
	}
	return nil
}

func (c *Config) tls() bool { return c.SecurityProtocol == SSL || c.SecurityProtocol == SASLSSL }
func (c *Config) sasl() bool {
	return c.SecurityProtocol == SASLPlaintext || c.SecurityProtocol == SASLSSL
}

// check reports contradictory or incomplete settings: a password that
// would be silently ignored is an error, not a surprise.
func (c *Config) check() error {
	switch c.SecurityProtocol {
	case Plaintext, SSL, SASLPlaintext, SASLSSL:
	default:
		return fmt.Errorf("security.protocol (--security-protocol): want PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, got %q", c.SecurityProtocol)
	}
	if !c.sasl() && (c.Mechanism != "" || c.Username != "" || !c.Password.IsZero() || c.OAuthTokenFile != "") {
		return fmt.Errorf("SASL settings are given but security.protocol (--security-protocol) is %s: set it to SASL_SSL (or SASL_PLAINTEXT)", c.SecurityProtocol)
	}
	if !c.tls() && c.TLS.given() {
		return fmt.Errorf("TLS settings are given but security.protocol (--security-protocol) is %s: set it to SSL or SASL_SSL", c.SecurityProtocol)
	}
	if !c.sasl() {
		return nil
	}
	switch c.Mechanism {
	case MechPlain, MechScram256, MechScram512:
		if c.Username == "" || c.Password.IsZero() {
			return fmt.Errorf("sasl.mechanism %s needs a username and a password: sasl.jaas.config, or --sasl-username and --sasl-password (STREAMER_SASL_USERNAME, STREAMER_SASL_PASSWORD)", c.Mechanism)
		}
	case MechOAuthBearer:
		if c.OAuthTokenFile == "" {
			return fmt.Errorf("sasl.mechanism OAUTHBEARER needs a token file: sasl.oauthbearer.token.endpoint.url=file:///path or --sasl-oauth-token-file (STREAMER_SASL_OAUTH_TOKEN_FILE)")
		}
	case MechAWSMSKIAM:
	case "":
		return fmt.Errorf("security.protocol is %s but no sasl.mechanism (--sasl-mechanism) is set: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM", c.SecurityProtocol)
	case "GSSAPI":
		return fmt.Errorf("sasl.mechanism GSSAPI (Kerberos) is not supported: want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM")
	default:
		return fmt.Errorf("sasl.mechanism (--sasl-mechanism): want PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM, got %q", c.Mechanism)
	}
	return nil
}

// Options returns the franz-go options for c: the TLS dialer and the SASL
// mechanism. Files are read now, so that a missing one is an error at
// start; the OAUTHBEARER token file is read again at every authentication.
func (c *Config) Options() ([]kgo.Opt, error) {
	var opts []kgo.Opt
	if c.tls() {
		tc, err := c.TLS.Build()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if c.sasl() {
		m, err := c.mechanism()
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func (c *Config) mechanism() (sasl.Mechanism, error) {
	switch c.Mechanism {
	case MechPlain:
		return plain.Auth{User: c.Username, Pass: c.Password.Reveal()}.AsMechanism(), nil
	case MechScram256:
		return scram.Auth{User: c.Username, Pass: c.Password.Reveal()}.AsSha256Mechanism(), nil
	case MechScram512:
		return scram.Auth{User: c.Username, Pass: c.Password.Reveal()}.AsSha512Mechanism(), nil
	case MechOAuthBearer:
		file := c.OAuthTokenFile
		if _, err := readToken(file); err != nil {
			return nil, err
		}
		return oauth.Oauth(func(context.Context) (oauth.Auth, error) {
			tok, err := readToken(file)
			return oauth.Auth{Token: tok}, err
		}), nil
	case MechAWSMSKIAM:
		return mskIAM(), nil
	}
	return nil, fmt.Errorf("sasl.mechanism %q is not supported", c.Mechanism)
}

// readToken reads an OAUTHBEARER token file; errors never quote it.
func readToken(file string) (string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("OAUTHBEARER token file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("OAUTHBEARER token file %s is empty", file)
	}
	return tok, nil
}

// mskIAM signs with the credentials of the AWS SDK's default chain
// (environment, shared config and profile, web identity as EKS's IRSA
// and Pod Identity give, ECS, EC2 instance role), which caches and
// refreshes them.
func mskIAM() sasl.Mechanism {
	load := sync.OnceValues(func() (awssdk.Config, error) { return awsconfig.LoadDefaultConfig(context.Background()) })
	return aws.ManagedStreamingIAM(func(ctx context.Context) (aws.Auth, error) {
		cfg, err := load()
		if err != nil {
			return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: loading the AWS configuration: %w", err)
		}
		cr, err := cfg.Credentials.Retrieve(ctx)
		if err != nil {
			return aws.Auth{}, fmt.Errorf("AWS_MSK_IAM: no AWS credentials (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, a profile, or a role for the pod): %w", err)
		}
		return aws.Auth{AccessKey: cr.AccessKeyID, SecretKey: cr.SecretAccessKey, SessionToken: cr.SessionToken, UserAgent: "streamer"}, nil
	})
}
