// Package cli is the streamer command line. cmd/streamer calls Main; a custom
// binary that registers its own pipes calls it too, so it gets the same
// commands with its pipes built in:
//
//	func main() { os.Exit(cli.Main(os.Args[1:])) }
package cli

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamerio/streamer/internal/kafkaconf"

	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitFailure  = 1 // a runtime error: broker unreachable, fatal record, ...
	ExitUsage    = 2 // bad flags or arguments
	ExitInvalid  = 3 // the topology file has errors
	ExitTestFail = 4 // `streamer test`: a case failed
)

// Version is set at build time with -ldflags "-X github.com/streamerio/streamer/cli.Version=...".
var Version = ""

func version() string {
	if Version != "" {
		return Version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}

// usageError marks errors that should exit with ExitUsage.
type usageError struct{ error }

// exitError carries a chosen exit code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

// Main runs the command line with args (without the program name) and
// returns the exit code.
func Main(args []string) int {
	return run(args, os.Stdout, os.Stderr)
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.Execute()
	if err == nil {
		return ExitOK
	}
	var ee *exitError
	var ue usageError
	var te *topology.Error
	switch {
	case errors.As(err, &ee):
		if ee.err != nil {
			fmt.Fprintln(stderr, "streamer:", ee.err)
		}
		return ee.code
	case errors.As(err, &te):
		fmt.Fprintln(stderr, te.Error())
		return ExitInvalid
	case errors.As(err, &ue), isCobraUsage(err):
		fmt.Fprintln(stderr, "streamer:", err)
		fmt.Fprintln(stderr, "Run 'streamer --help' for usage.")
		return ExitUsage
	}
	fmt.Fprintln(stderr, "streamer:", err)
	return ExitFailure
}

// isCobraUsage recognises cobra's own argument and flag errors.
func isCobraUsage(err error) bool {
	msg := err.Error()
	for _, p := range []string{"unknown command", "unknown flag", "unknown shorthand", "accepts ", "requires at least", "invalid argument", "flag needs an argument"} {
		if strings.Contains(msg, p) {
			return true
		}
	}
	return false
}

type globals struct {
	logFormat string
	logLevel  string
	registry  string
	// The registry's credentials and CA; the password and token may be
	// ${env:NAME} or ${file:/path} references.
	registryUser, registryPassword, registryToken, registryCA string
	stdout                                                    io.Writer
	stderr                                                    io.Writer
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	g := &globals{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "streamer",
		Short: "Declarative, exactly-once stream processing over Kafka",
		Long: `streamer runs declarative topologies of pipes over Kafka topics, exactly once.

A topology file declares datasets (topics, formats, schemas) and pipes that
read and write them. Replicas of 'streamer run' share the work as one
consumer group; outputs and offsets commit in Kafka transactions.

Environment variables override flag defaults: STREAMER_BROKERS,
STREAMER_REPLICA_ID, STREAMER_COMMIT_INTERVAL, STREAMER_METRICS_ADDR,
STREAMER_REGISTRY_URL, STREAMER_STATE_DIR, STREAMER_LOG_FORMAT,
STREAMER_LOG_LEVEL, STREAMER_GC_HEADROOM, STREAMER_SESSION_TIMEOUT,
STREAMER_TRANSACTION_TIMEOUT; the Kafka connection's (STREAMER_KAFKA_CONFIG,
STREAMER_SECURITY_PROTOCOL, STREAMER_SASL_*, STREAMER_TLS_*) are in
docs/SECURITY.md. Secrets (passwords, tokens) may be given as ${env:NAME} or
${file:/path} references and are never printed.

Exit codes: 0 ok, 1 runtime failure, 2 usage error, 3 invalid topology,
4 failed test cases.`,
		SilenceErrors: true,
		SilenceUsage:  true,
		Version:       version(),
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.PersistentFlags().StringVar(&g.logFormat, "log-format", env("STREAMER_LOG_FORMAT", "text"), "log format: text or json")
	root.PersistentFlags().StringVar(&g.registry, "registry", env("STREAMER_REGISTRY_URL", ""), "schema registry URL (Confluent API), for datasets with registry: (env STREAMER_REGISTRY_URL)")
	root.PersistentFlags().StringVar(&g.registryUser, "registry-username", env("STREAMER_REGISTRY_USERNAME", ""), "schema registry basic auth user (env STREAMER_REGISTRY_USERNAME)")
	root.PersistentFlags().StringVar(&g.registryPassword, "registry-password", "", "schema registry basic auth password, or a reference: ${env:NAME}, ${file:/path} (env STREAMER_REGISTRY_PASSWORD)")
	root.PersistentFlags().StringVar(&g.registryToken, "registry-token", "", "schema registry bearer token, or a reference: ${env:NAME}, ${file:/path} (env STREAMER_REGISTRY_TOKEN)")
	root.PersistentFlags().StringVar(&g.registryCA, "registry-ca", env("STREAMER_REGISTRY_CA", ""), "PEM bundle of the CAs that sign the schema registry's certificate; default the system's (env STREAMER_REGISTRY_CA)")
	root.PersistentFlags().StringVar(&g.logLevel, "log-level", env("STREAMER_LOG_LEVEL", ""), "log level: debug, info, warn or error (default info; warn for demo)")
	root.AddCommand(
		validateCmd(g), planCmd(g), runCmd(g), resetCmd(g), offsetsCmd(g), backfillCmd(g), testCmd(g), demoCmd(g), schemaCmd(g), pipesCmd(g),
		&cobra.Command{
			Use:   "version",
			Short: "Print the version",
			Args:  cobra.NoArgs,
			Run:   func(cmd *cobra.Command, _ []string) { fmt.Fprintln(cmd.OutOrStdout(), "streamer", version()) },
		},
	)
	return root
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func (g *globals) logger(defaultLevel slog.Level) (*slog.Logger, error) {
	level := defaultLevel
	if g.logLevel != "" {
		if err := level.UnmarshalText([]byte(g.logLevel)); err != nil {
			return nil, usageError{fmt.Errorf("--log-level: %w", err)}
		}
	}
	opts := &slog.HandlerOptions{Level: level, ReplaceAttr: redactSecrets}
	switch g.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(g.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(g.stderr, opts)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format must be text or json, not %q", g.logFormat)}
}

// secretKeys are parts of attribute names whose values never reach a log.
var secretKeys = []string{"password", "secret", "token", "sasl", "credential", "salt", "key_pem", "private"}

// redactSecrets replaces the value of any log attribute whose name looks
// like a secret's, wherever it is logged from (TLS and SASL settings come
// later; this holds for them too).
func redactSecrets(_ []string, a slog.Attr) slog.Attr {
	k := strings.ToLower(a.Key)
	for _, s := range secretKeys {
		if strings.Contains(k, s) {
			return slog.String(a.Key, "[redacted]")
		}
	}
	return a
}

// load compiles a topology file, printing its warnings.
func (g *globals) load(file string, extra ...topology.Option) (*topology.Topology, error) {
	opts := extra
	if g.registry != "" {
		ropts, err := g.registryOpts()
		if err != nil {
			return nil, usageError{err}
		}
		reg, err := serde.NewRegistry(g.registry, ropts...)
		if err != nil {
			return nil, usageError{fmt.Errorf("--registry: %w", err)}
		}
		opts = append(opts, topology.WithRegistry(reg))
	}
	t, err := topology.Load(file, opts...)
	if err != nil {
		var te *topology.Error
		if errors.As(err, &te) {
			return nil, err
		}
		return nil, &exitError{code: ExitUsage, err: err}
	}
	for _, w := range t.Warnings {
		fmt.Fprintln(g.stderr, w)
	}
	return t, nil
}

// registryOpts are the schema registry client's credentials and TLS.
func (g *globals) registryOpts() ([]sr.ClientOpt, error) {
	var opts []sr.ClientOpt
	pass, err := kafkaconf.ResolveSecret(orEnv(g.registryPassword, "STREAMER_REGISTRY_PASSWORD"))
	if err != nil {
		return nil, fmt.Errorf("--registry-password: %w", err)
	}
	tok, err := kafkaconf.ResolveSecret(orEnv(g.registryToken, "STREAMER_REGISTRY_TOKEN"))
	if err != nil {
		return nil, fmt.Errorf("--registry-token: %w", err)
	}
	switch {
	case g.registryUser != "" && !tok.IsZero():
		return nil, errors.New("--registry-username and --registry-token: give one")
	case g.registryUser != "":
		if pass.IsZero() {
			return nil, errors.New("--registry-username needs --registry-password (env STREAMER_REGISTRY_PASSWORD)")
		}
		opts = append(opts, sr.BasicAuth(g.registryUser, pass.Reveal()))
	case !tok.IsZero():
		opts = append(opts, sr.BearerToken(tok.Reveal()))
	}
	if g.registryCA != "" {
		tc, err := (&kafkaconf.TLSConfig{CAFile: g.registryCA}).Build()
		if err != nil {
			return nil, fmt.Errorf("--registry-ca: %w", err)
		}
		opts = append(opts, sr.DialTLSConfig(tc))
	}
	return opts, nil
}
