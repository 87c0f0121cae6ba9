package cli

import (
	"context"
	"crypto/subtle"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/internal/kafkaconf"
)

// opsServer serves /metrics, /healthz, /readyz and the live topology page
// for a replica.
type opsServer struct {
	srv  *http.Server
	addr net.Addr
	done chan error
}

// readiness is what /readyz asks: the engine.
type readiness interface {
	Ready() bool
	Restoring() []engine.RestoreProgress
	LoadingTables() int
	Live() error
}

// httpFlags secure the ops server: TLS, and a bearer token or basic auth
// on everything but (unless --http-auth-health) the health endpoints, which
// probes must reach without credentials.
type httpFlags struct {
	certFile, keyFile  string
	token              string
	username, password string
	authHealth         bool
}

func (h *httpFlags) register(fs *pflag.FlagSet) {
	fs.StringVar(&h.certFile, "http-tls-cert", env("STREAMER_HTTP_TLS_CERT", ""), "serve --metrics-addr over HTTPS with this PEM certificate (env STREAMER_HTTP_TLS_CERT)")
	fs.StringVar(&h.keyFile, "http-tls-key", env("STREAMER_HTTP_TLS_KEY", ""), "PEM private key of --http-tls-cert (env STREAMER_HTTP_TLS_KEY)")
	fs.StringVar(&h.token, "http-token", "", "require Authorization: Bearer with this token on / and /metrics, or a reference: ${env:NAME}, ${file:/path} (env STREAMER_HTTP_TOKEN)")
	fs.StringVar(&h.username, "http-username", env("STREAMER_HTTP_USERNAME", ""), "require HTTP basic auth with this user on / and /metrics (env STREAMER_HTTP_USERNAME)")
	fs.StringVar(&h.password, "http-password", "", "password of --http-username, or a reference: ${env:NAME}, ${file:/path} (env STREAMER_HTTP_PASSWORD)")
	fs.BoolVar(&h.authHealth, "http-auth-health", envBool("STREAMER_HTTP_AUTH_HEALTH"), "require the credentials on /healthz and /readyz too (default: those stay open for probes) (env STREAMER_HTTP_AUTH_HEALTH=true)")
}

// guard is the resolved access control of the ops server.
type guard struct {
	token, user, pass kafkaconf.Secret
	health            bool
}

func (h httpFlags) guard() (*guard, error) {
	g := &guard{health: h.authHealth}
	var err error
	if g.token, err = kafkaconf.ResolveSecret(orEnv(h.token, "STREAMER_HTTP_TOKEN")); err != nil {
		return nil, fmt.Errorf("--http-token: %w", err)
	}
	if g.pass, err = kafkaconf.ResolveSecret(orEnv(h.password, "STREAMER_HTTP_PASSWORD")); err != nil {
		return nil, fmt.Errorf("--http-password: %w", err)
	}
	g.user = kafkaconf.NewSecret(h.username)
	if (h.username == "") != g.pass.IsZero() {
		return nil, errors.New("--http-username and --http-password go together")
	}
	if (h.certFile == "") != (h.keyFile == "") {
		return nil, errors.New("--http-tls-cert and --http-tls-key go together")
	}
	return g, nil
}

func (g *guard) on() bool { return !g.token.IsZero() || !g.user.IsZero() }

func eq(a string, b kafkaconf.Secret) bool {
	return subtle.ConstantTimeCompare([]byte(a), []byte(b.Reveal())) == 1
}

// allowed reports whether r carries the credentials.
func (g *guard) allowed(r *http.Request) bool {
	if !g.token.IsZero() {
		if tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok && eq(tok, g.token) {
			return true
		}
	}
	if !g.user.IsZero() {
		if u, p, ok := r.BasicAuth(); ok && eq(u, g.user) && eq(p, g.pass) {
			return true
		}
	}
	return false
}

// wrap protects h unless the guard is off, or path is a health endpoint
// left open.
func (g *guard) wrap(h http.Handler) http.Handler {
	if !g.on() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.health && (r.URL.Path == "/healthz" || r.URL.Path == "/readyz") {
			h.ServeHTTP(w, r)
			return
		}
		if !g.allowed(r) {
			if !g.user.IsZero() {
				w.Header().Set("WWW-Authenticate", `Basic realm="streamer"`)
			} else {
				w.Header().Set("WWW-Authenticate", `Bearer realm="streamer"`)
			}
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// serveOps listens on addr and serves the endpoints until stop is called.
// /readyz answers 200 once the replica has joined its group and restored
// the state of its partitions, and 503 with the reason until then.
func serveOps(addr string, hf httpFlags, metrics http.Handler, ready readiness, page interface{ Register(*http.ServeMux) }, log *slog.Logger) (*opsServer, error) {
	gd, err := hf.guard()
	if err != nil {
		return nil, usageError{err}
	}
	var tc *tls.Config
	if hf.certFile != "" {
		cert, err := tls.LoadX509KeyPair(hf.certFile, hf.keyFile)
		if err != nil {
			return nil, usageError{fmt.Errorf("--http-tls-cert/--http-tls-key: %w", err)}
		}
		tc = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return nil, fmt.Errorf("--metrics-addr %s is in use (another replica on this machine?): give each replica its own, e.g. --metrics-addr :9465 (env STREAMER_METRICS_ADDR), or off: %w", addr, err)
		}
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", metrics)
	page.Register(mux)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		if err := ready.Live(); err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, err)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := notReady(ready); why != "" {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.Header().Set("X-Content-Type-Options", "nosniff")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, why)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	s := &opsServer{srv: &http.Server{Handler: gd.wrap(mux), ReadHeaderTimeout: 5 * time.Second}, addr: ln.Addr(), done: make(chan error, 1)}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	auth := "none"
	switch {
	case gd.on() && gd.health:
		auth = "every path"
	case gd.on():
		auth = "all but /healthz and /readyz"
	}
	log.Info("serving metrics and health", "addr", ln.Addr().String(), "tls", tc != nil, "auth", auth, "paths", "/ (topology page) /metrics /healthz /readyz")
	return s, nil
}

// stop shuts the server down, waiting at most a second for scrapes in flight.
func (s *opsServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return errors.Join(s.srv.Shutdown(ctx), <-s.done)
}
