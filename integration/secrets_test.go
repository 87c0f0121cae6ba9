package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSecretsNeverPrinted runs every command and asks every endpoint with
// known secrets in play (the SCRAM password from the environment, from a
// ${file:} reference and as a literal flag; the ops server's token; the
// schema registry's password) at the most verbose log level, and looks
// for the secrets in everything printed or served.
func TestSecretsNeverPrinted(t *testing.T) {
	requireIntegration(t)
	broker, ca := saslSSL(t)
	e := newEnv(t)
	const (
		kafkaPW    = "SECRET-kafka-pw-5d1e"
		httpToken  = "SECRET-http-token-77ab"
		registryPW = "SECRET-registry-pw-0c9f"
	)
	secrets := []string{kafkaPW, httpToken, registryPW}
	user := "u-" + e.id
	e.scramUser(user, kafkaPW)
	pwFile := filepath.Join(e.dir, "kafka-password")
	if err := os.WriteFile(pwFile, []byte(kafkaPW+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("STREAMER_SASL_PASSWORD", kafkaPW)
	t.Setenv("STREAMER_HTTP_TOKEN", httpToken)
	t.Setenv("STREAMER_REGISTRY_USERNAME", "reg-user")
	t.Setenv("STREAMER_REGISTRY_PASSWORD", registryPW)
	t.Setenv("STREAMER_REGISTRY_URL", "http://127.0.0.1:1")
	t.Setenv("STREAMER_LOG_LEVEL", "debug")
	t.Setenv("STREAMER_SECURITY_PROTOCOL", "SASL_SSL")
	t.Setenv("STREAMER_SASL_MECHANISM", "SCRAM-SHA-512")
	t.Setenv("STREAMER_SASL_USERNAME", user)
	t.Setenv("STREAMER_TLS_CA", ca)
	e.createTopic("in", 2)
	file := e.writeTopology(filterMap, nil)
	e.produce("in", inputRecords(0, 1000))

	var all strings.Builder
	cmd := func(args ...string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		out, err := exec.CommandContext(ctx, binary, args...).CombinedOutput()
		// The command line holds secrets on purpose; its echo masks them.
		line := strings.Join(args, " ")
		for _, s := range secrets {
			line = strings.ReplaceAll(line, s, "<secret>")
		}
		fmt.Fprintf(&all, "$ streamer %s (exit %d)\n%s\n", line, exitCode(err), out)
	}
	for _, c := range []string{"", "run", "reset", "validate", "plan", "test", "demo", "schema", "pipes"} {
		cmd(strings.Fields(c + " --help")...)
	}
	cmd("version")
	cmd("validate", file)
	cmd("plan", file)
	cmd("plan", "--format", "mermaid", file)
	cmd("reset", "--dry-run", "--brokers", broker, file)
	cmd("reset", "--dry-run", "--brokers", broker, "--sasl-password", "${file:"+pwFile+"}", file)
	// Wrong settings, where errors are printed.
	cmd("run", file, "--metrics-addr", "off", "--brokers", broker, "--sasl-password", kafkaPW+"-wrong")
	cmd("run", file, "--metrics-addr", "off", "--brokers", broker, "--sasl-username", "nobody")
	cmd("run", file, "--metrics-addr", "off", "--brokers", broker, "--sasl-password", kafkaPW, "--security-protocol", "PLAINTEXT")
	cmd("run", file, "--metrics-addr", "127.0.0.1:0", "--brokers", broker, "--log-format", "json", "--http-token", httpToken, "--http-password", kafkaPW)

	// A replica that runs, in JSON and in text, and every endpoint.
	for _, format := range []string{"json", "text"} {
		port := freePort(t)
		r := e.startArgs(file, "r-"+format, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port), "--brokers", broker, "--log-format", format)
		e.waitConsumed("streamer-"+e.id, "in", []*replica{r}, 2*time.Minute)
		waitUntil(t, "the replica to be ready", time.Minute, []*replica{r}, func() bool {
			return httpStatus(fmt.Sprintf("http://127.0.0.1:%d/readyz", port)) == 200
		})
		for _, path := range []string{"/", "/api/topology", "/api/stats", "/metrics", "/healthz", "/readyz"} {
			for _, tok := range []string{"", httpToken} {
				req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d%s", port, path), nil)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				fmt.Fprintf(&all, "GET %s (token %v): %d\n%s\n", path, tok != "", resp.StatusCode, b)
				if tok == "" && path != "/healthz" && path != "/readyz" && resp.StatusCode != http.StatusUnauthorized {
					t.Errorf("GET %s without the token: %d, want 401", path, resp.StatusCode)
				}
			}
		}
		if _, code := r.stop(t); code != 0 {
			t.Errorf("exit %d:\n%s", code, r.logText())
		}
		fmt.Fprintf(&all, "replica log (%s):\n%s\n", format, r.logText())
	}
	out := all.String()
	for _, s := range secrets {
		if i := strings.Index(out, s); i >= 0 {
			t.Errorf("secret %q printed: ...%s...", s, out[max(0, i-300):min(len(out), i+100)])
		}
	}
	for _, want := range []string{"SASL authentication failed", "security.protocol", "partitions assigned"} {
		if !strings.Contains(out, want) {
			t.Errorf("the output lacks %q: did the commands run?\n%s", want, out)
		}
	}
	if t.Failed() || testing.Verbose() {
		t.Logf("%d bytes of output checked", len(out))
	}
}
