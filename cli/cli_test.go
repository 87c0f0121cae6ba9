package cli

import (
	"bytes"
	"strings"
	"testing"
)

func TestExitCodesAndOutput(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		env    map[string]string
		code   int
		stdout []string // substrings
		stderr []string
	}{
		{"validate ok", []string{"validate", "../examples/enrichment/topology.yaml"}, nil, ExitOK,
			[]string{"topology.yaml: ok (4 pipes, 6 datasets)"}, nil},
		{"validate broken", []string{"validate", "../topology/testdata/invalid/cycle.yaml"}, nil, ExitInvalid,
			nil, []string{"cycle.yaml:10:3: the pipes form a cycle"}},
		{"validate missing file", []string{"validate", "nope.yaml"}, nil, ExitUsage, nil, []string{"nope.yaml"}},
		{"validate no args", []string{"validate"}, nil, ExitUsage, nil, []string{"requires at least 1 arg"}},
		{"unknown flag", []string{"plan", "--colour", "x"}, nil, ExitUsage, nil, []string{"unknown flag"}},
		{"unknown command", []string{"frobnicate"}, nil, ExitUsage, nil, []string{"unknown command"}},
		{"plan text", []string{"plan", "../examples/enrichment/topology.yaml"}, map[string]string{"STREAMER_REPLICA_ID": "pod-0"}, ExitOK,
			[]string{"consumer group  streamer-orders-enrichment", "transactional id streamer-orders-enrichment-pod-0", "topics read     orders"}, nil},
		{"plan mermaid", []string{"plan", "--format", "mermaid", "../examples/enrichment/topology.yaml"}, nil, ExitOK,
			[]string{"flowchart LR"}, nil},
		{"plan bad format", []string{"plan", "--format", "svg", "../examples/enrichment/topology.yaml"}, nil, ExitUsage, nil, []string{"--format must be one of"}},
		{"pipes", []string{"pipes"}, nil, ExitOK, []string{"explode", "filter", "map", "route"}, nil},
		{"pipes map", []string{"pipes", "map"}, nil, ExitOK, []string{"compute: Fields set to the result"}, nil},
		{"test reference", []string{"test", "--reference"}, nil, ExitOK, []string{"dead_letters: Expected dead letters", "error: A substring of the error message", "match: partial"}, nil},
		{"version", []string{"version"}, nil, ExitOK, []string{"streamer "}, nil},
		{"run bad log level", []string{"run", "--log-level", "loud", "x.yaml"}, nil, ExitUsage, nil, []string{"--log-level"}},
		{"run bad gc headroom", []string{"run", "--gc-headroom", "lots", "x.yaml"}, nil, ExitUsage, nil, []string{"--gc-headroom"}},
		{"run bad gc headroom env", []string{"run", "x.yaml"}, map[string]string{"STREAMER_GC_HEADROOM": "1.5GiB"}, ExitUsage, nil, []string{"--gc-headroom"}},
		{"run bad purge interval", []string{"run", "--purge-interval", "never", "x.yaml"}, nil, ExitUsage, nil, []string{"--purge-interval: want a positive duration such as 30s, or off"}},
		{"run zero purge interval env", []string{"run", "x.yaml"}, map[string]string{"STREAMER_PURGE_INTERVAL": "0s"}, ExitUsage, nil, []string{"--purge-interval"}},
		{"reset bad from", []string{"reset", "--from", "yesterday", "x.yaml"}, nil, ExitUsage, nil, []string{"--from: want earliest, latest or an RFC 3339 time"}},
		{"reset no file", []string{"reset"}, nil, ExitUsage, nil, []string{"accepts 1 arg"}},
		// As the README suggests: the custom-pipe example needs a pipe type
		// this binary lacks, so its cases are skipped, saying why.
		{"test examples", []string{"test", "../examples"}, nil, ExitOK,
			[]string{"SKIP ../examples/custompipe/topology.test.yaml\t2 cases\tneeds pipe type redact, which this binary lacks", "ok   ../examples/windows/topology.test.yaml", "16 passed, 0 failed, 2 skipped"}, nil},
		{"run sasl without mechanism", []string{"run", "../examples/enrichment/topology.yaml", "--state-dir", "/tmp/streamer-cli-test", "--security-protocol", "SASL_SSL"}, nil, ExitUsage, nil, []string{"no sasl.mechanism (--sasl-mechanism) is set"}},
		{"run env mechanism", []string{"run", "../examples/enrichment/topology.yaml", "--state-dir", "/tmp/streamer-cli-test"}, map[string]string{"STREAMER_SECURITY_PROTOCOL": "SASL_SSL", "STREAMER_SASL_MECHANISM": "GSSAPI"}, ExitUsage, nil, []string{"GSSAPI (Kerberos) is not supported"}},
		{"run flag over env", []string{"run", "../examples/enrichment/topology.yaml", "--state-dir", "/tmp/streamer-cli-test", "--sasl-mechanism", "SCRAM-SHA-256", "--sasl-username", "u"}, map[string]string{"STREAMER_SECURITY_PROTOCOL": "SASL_SSL", "STREAMER_SASL_MECHANISM": "GSSAPI"}, ExitUsage, nil, []string{"sasl.mechanism SCRAM-SHA-256 needs a username and a password"}},
		{"run password from env not file", []string{"run", "../examples/enrichment/topology.yaml", "--state-dir", "/tmp/streamer-cli-test", "--kafka-config", "testdata/nope.properties"}, nil, ExitUsage, nil, []string{"--kafka-config: open testdata/nope.properties"}},
		{"run bad session timeout env", []string{"run", "../examples/enrichment/topology.yaml", "--state-dir", "/tmp/streamer-cli-test", "--transaction-timeout", "5s"}, map[string]string{"STREAMER_SESSION_TIMEOUT": "8s"}, ExitUsage, nil, []string{"transaction timeout 5s must exceed the session timeout 8s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			var out, errb bytes.Buffer
			code := run(tt.args, &out, &errb)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errb.String())
			}
			for _, s := range tt.stdout {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tt.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
		})
	}
}

func TestSchemaIsCurrent(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"schema"}, &out, &errb); code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	if !strings.Contains(out.String(), `"title": "streamer topology"`) {
		t.Fatalf("not a schema: %.200s", out.String())
	}
}

// TestDemo runs the README's first command, shortened: the example topology
// on the in-process broker, with its outputs checked against the generator.
func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("runs for a few seconds")
	}
	var out, errb bytes.Buffer
	code := run([]string{"demo", "--duration", "2s", "--rate", "2000"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, out.String(), errb.String())
	}
	for _, s := range []string{"in-process Kafka at", "in ", "every order accounted for, exactly once."} {
		if !strings.Contains(out.String(), s) {
			t.Errorf("stdout lacks %q:\n%s", s, out.String())
		}
	}
}

func TestLogsRedactSecrets(t *testing.T) {
	var out, errb bytes.Buffer
	g := &globals{logFormat: "json", stdout: &out, stderr: &errb}
	log, err := g.logger(0)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("connecting", "sasl_password", "hunter2", "tls", map[string]string{"x": "y"}, "api_token", "abc", "brokers", "b:9092")
	got := errb.String()
	for _, secret := range []string{"hunter2", `"abc"`} {
		if strings.Contains(got, secret) {
			t.Errorf("secret %s in log line: %s", secret, got)
		}
	}
	if !strings.Contains(got, "b:9092") || !strings.Contains(got, "[redacted]") {
		t.Errorf("log line %s", got)
	}
}
