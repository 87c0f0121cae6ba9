package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/streamerio/streamer/engine"
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

// serveOps listens on addr and serves the endpoints until stop is called.
// /readyz answers 200 once the replica has joined its group and restored
// the state of its partitions, and 503 with the reason until then.
func serveOps(addr string, metrics http.Handler, ready readiness, page interface{ Register(*http.ServeMux) }, log *slog.Logger) (*opsServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
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
	s := &opsServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}, addr: ln.Addr(), done: make(chan error, 1)}
	go func() {
		err := s.srv.Serve(ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	log.Info("serving metrics and health", "addr", ln.Addr().String(), "paths", "/ (topology page) /metrics /healthz /readyz")
	return s, nil
}

// stop shuts the server down, waiting at most a second for scrapes in flight.
func (s *opsServer) stop() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return errors.Join(s.srv.Shutdown(ctx), <-s.done)
}
