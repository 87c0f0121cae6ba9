package cli

import (
	"context"
	"log/slog"
	"os"

	"github.com/spf13/pflag"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/kafkaconf"
)

// kafkaFlags are the connection settings of the commands that talk to
// Kafka (run, reset, offsets, backfill and its shadow runs): flags, whose defaults come from STREAMER_* variables,
// over the client properties file of --kafka-config.
type kafkaFlags struct{ s kafkaconf.Settings }

func (k *kafkaFlags) register(fs *pflag.FlagSet) {
	s := &k.s
	fs.StringVar(&s.ConfigFile, "kafka-config", env("STREAMER_KAFKA_CONFIG", ""), "Kafka client properties file with the Java client's names: security.protocol, sasl.mechanism, sasl.jaas.config, ssl.truststore.location (PEM), ...; flags and their env vars override it; see docs/SECURITY.md (env STREAMER_KAFKA_CONFIG)")
	fs.StringVar(&s.SecurityProtocol, "security-protocol", env("STREAMER_SECURITY_PROTOCOL", ""), "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL (env STREAMER_SECURITY_PROTOCOL; default the file's, else PLAINTEXT)")
	fs.StringVar(&s.SASLMechanism, "sasl-mechanism", env("STREAMER_SASL_MECHANISM", ""), "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER or AWS_MSK_IAM (env STREAMER_SASL_MECHANISM)")
	fs.StringVar(&s.SASLUsername, "sasl-username", env("STREAMER_SASL_USERNAME", ""), "SASL user for PLAIN and SCRAM (env STREAMER_SASL_USERNAME)")
	fs.StringVar(&s.SASLPassword, "sasl-password", "", "SASL password, or better a reference: ${env:NAME} or ${file:/path} (env STREAMER_SASL_PASSWORD)")
	fs.StringVar(&s.OAuthTokenFile, "sasl-oauth-token-file", env("STREAMER_SASL_OAUTH_TOKEN_FILE", ""), "OAUTHBEARER token file, read again at every authentication (env STREAMER_SASL_OAUTH_TOKEN_FILE)")
	fs.StringVar(&s.TLSCA, "tls-ca", env("STREAMER_TLS_CA", ""), "PEM bundle of the CAs that sign the brokers' certificates; default the system's (env STREAMER_TLS_CA)")
	fs.StringVar(&s.TLSCert, "tls-cert", env("STREAMER_TLS_CERT", ""), "PEM client certificate for mutual TLS (env STREAMER_TLS_CERT)")
	fs.StringVar(&s.TLSKey, "tls-key", env("STREAMER_TLS_KEY", ""), "PEM private key of --tls-cert (env STREAMER_TLS_KEY)")
	fs.StringVar(&s.TLSServerName, "tls-server-name", env("STREAMER_TLS_SERVER_NAME", ""), "name the brokers' certificates must carry; default the host dialed (env STREAMER_TLS_SERVER_NAME)")
	fs.BoolVar(&s.TLSInsecureSkipVerify, "tls-insecure-skip-verify", envBool("STREAMER_TLS_INSECURE_SKIP_VERIFY"), "do not verify the brokers' certificates: for debugging only, logged as a warning (env STREAMER_TLS_INSECURE_SKIP_VERIFY=true)")
}

// options loads the settings into franz-go options. Bad settings are
// usage errors (exit 2).
func (k *kafkaFlags) options(log *slog.Logger) (*kafkaconf.Config, []kgo.Opt, error) {
	s := k.s
	s.SASLPassword = orEnv(s.SASLPassword, "STREAMER_SASL_PASSWORD")
	c, err := kafkaconf.Load(s, log)
	if err != nil {
		return nil, nil, usageError{err}
	}
	opts, err := c.Options()
	if err != nil {
		return nil, nil, usageError{err}
	}
	return c, opts, nil
}

// connect loads the settings and checks, within kafkaconf.CheckTimeout,
// that a broker answers with them: a wrong password or CA fails here with
// a clear error (exit 1) rather than as retries.
func (k *kafkaFlags) connect(ctx context.Context, brokers []string, log *slog.Logger) ([]kgo.Opt, error) {
	c, opts, err := k.options(log)
	if err != nil {
		return nil, err
	}
	return opts, k.check(ctx, brokers, c, opts)
}

// check is kafkaconf.Check, failing with exit 1.
func (k *kafkaFlags) check(ctx context.Context, brokers []string, c *kafkaconf.Config, opts []kgo.Opt) error {
	if err := kafkaconf.Check(ctx, brokers, c, opts); err != nil {
		return &exitError{code: ExitFailure, err: err}
	}
	return nil
}

// orEnv returns v, or the environment variable name when v is empty. A
// secret flag takes its env var here rather than as its default, which
// --help would print.
func orEnv(v, name string) string {
	if v == "" {
		return os.Getenv(name)
	}
	return v
}

func envBool(name string) bool {
	switch env(name, "") {
	case "1", "true", "TRUE", "True", "yes":
		return true
	}
	return false
}
