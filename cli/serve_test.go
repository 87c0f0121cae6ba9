package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/topology"
)

// get asks path with optional credentials and returns the status.
func get(t *testing.T, cl *http.Client, url, bearer, user, pass string) int {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if user != "" {
		req.SetBasicAuth(user, pass)
	}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestOpsAuth: with a token or basic auth, / and /metrics need them; the
// health endpoints stay open unless --http-auth-health.
func TestOpsAuth(t *testing.T) {
	t.Setenv("IT_OPS_TOKEN", "tok-123")
	metrics := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("m 1\n")) })
	cases := []struct {
		name  string
		flags httpFlags
		// status of /metrics, /healthz without credentials; /metrics with
		// the right and wrong ones.
		metrics, healthz, right, wrong int
		bearer, user, pass, badBearer  string
	}{
		{"off", httpFlags{}, 200, 200, 200, 200, "", "", "", "x"},
		{"token", httpFlags{token: "${env:IT_OPS_TOKEN}"}, 401, 200, 200, 401, "tok-123", "", "", "tok-12"},
		{"basic", httpFlags{username: "prom", password: "pw"}, 401, 200, 200, 401, "", "prom", "pw", "pw"},
		{"token, health too", httpFlags{token: "tok-123", authHealth: true}, 401, 401, 200, 401, "tok-123", "", "", "nope"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ops, err := serveOps("127.0.0.1:0", tc.flags, metrics, &fakeReadiness{}, noPage{}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer ops.stop()
			base := "http://" + ops.addr.String()
			cl := http.DefaultClient
			if got := get(t, cl, base+"/metrics", "", "", ""); got != tc.metrics {
				t.Errorf("/metrics without credentials: %d, want %d", got, tc.metrics)
			}
			if got := get(t, cl, base+"/healthz", "", "", ""); got != tc.healthz {
				t.Errorf("/healthz without credentials: %d, want %d", got, tc.healthz)
			}
			if got := get(t, cl, base+"/metrics", tc.bearer, tc.user, tc.pass); got != tc.right {
				t.Errorf("/metrics with the credentials: %d, want %d", got, tc.right)
			}
			bad := tc.badBearer
			if tc.user != "" {
				if got := get(t, cl, base+"/metrics", "", tc.user, bad+"x"); got != tc.wrong {
					t.Errorf("/metrics with a wrong password: %d, want %d", got, tc.wrong)
				}
			} else if got := get(t, cl, base+"/metrics", bad, "", ""); got != tc.wrong {
				t.Errorf("/metrics with a wrong token: %d, want %d", got, tc.wrong)
			}
		})
	}
}

// TestOpsTLS: --http-tls-cert/--http-tls-key serve HTTPS only.
func TestOpsTLS(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "ops"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalPKCS8PrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), 0o600)
	ops, err := serveOps("127.0.0.1:0", httpFlags{certFile: certFile, keyFile: keyFile}, http.NotFoundHandler(), &fakeReadiness{}, noPage{}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer ops.stop()
	pool := x509.NewCertPool()
	pool.AddCert(must(x509.ParseCertificate(der)))
	cl := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	if got := get(t, cl, "https://"+ops.addr.String()+"/healthz", "", "", ""); got != 200 {
		t.Errorf("https /healthz: %d", got)
	}
	resp, err := http.Get("http://" + ops.addr.String() + "/healthz")
	if err == nil {
		if resp.StatusCode == 200 {
			t.Errorf("plain http is served too")
		}
		resp.Body.Close()
	}
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestOpsAddrInUse: a second replica on the same port is told which flag
// to set.
func TestOpsAddrInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = serveOps(ln.Addr().String(), httpFlags{}, http.NotFoundHandler(), &fakeReadiness{}, noPage{}, slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "give each replica its own, e.g. --metrics-addr") {
		t.Errorf("got %v", err)
	}
	for _, f := range []httpFlags{{username: "u"}, {certFile: "c.pem"}} {
		if _, err := serveOps("127.0.0.1:0", f, http.NotFoundHandler(), &fakeReadiness{}, noPage{}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "go together") {
			t.Errorf("%+v: got %v", f, err)
		}
	}
}

// TestStateDirLock: a second replica of a topology with the same state
// directory is refused (the engine's lock), naming the flags to set and the
// holder's pid; the lock goes with the first. A topology of another group
// shares the state directory. Both topologies are stateless, which the
// engine locks too: two of them with one replica id fence each other.
func TestStateDirLock(t *testing.T) {
	dir := t.TempDir()
	stateDir := filepath.Join(dir, "state")
	newEngine := func(name string) *engine.Engine {
		t.Helper()
		src := "name: " + name + "\ndatasets:\n  in: {topic: in}\n  out: {topic: out}\npipes:\n  keep: {from: in, to: out, filter: {when: \"true\"}}\n"
		top, err := topology.Compile(name+".yaml", []byte(src), fstest.MapFS{})
		if err != nil {
			t.Fatal(err)
		}
		e, err := engine.New(top, engine.Options{Brokers: []string{"127.0.0.1:1"}, StateDir: stateDir, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			t.Fatal(err)
		}
		return e
	}
	first := newEngine("a")
	if err := lockState(first); err != nil {
		t.Fatal(err)
	}
	err := lockState(newEngine("a"))
	if err == nil || !strings.Contains(err.Error(), "state directory in use") || !strings.Contains(err.Error(), "own --state-dir, --replica-id and --metrics-addr") || !strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Errorf("second replica: %v", err)
	}
	if err := lockState(newEngine("b")); err != nil {
		t.Errorf("another topology on the same state directory: %v", err)
	}
	// Run lets go of the lock when it returns (here at once: canceled).
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = first.Run(ctx)
	if err := lockState(newEngine("a")); err != nil {
		t.Errorf("after the first stopped: %v", err)
	}
}
