package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	neturl "net/url"
	"os"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr"

	"github.com/streamerio/streamer/serde"
)

// TestRegistryBlipAndMissingSubject runs the wire-format codec against the
// real registry (Apicurio, Confluent API) behind a proxy that can drop
// every connection: during the outage the codec says unavailable (the
// replica pauses); once the registry answers again, a subject that is not
// registered is a configuration error naming the subject; and once it is
// registered, the same codec works: no error was cached, nothing needed a
// restart.
func TestRegistryBlipAndMissingSubject(t *testing.T) {
	requireIntegration(t)
	url := os.Getenv("STREAMER_REGISTRY_URL")
	if url == "" {
		t.Fatal("STREAMER_REGISTRY_URL is not set: make test starts a registry (scripts/with-registry.sh)")
	}
	target, err := neturl.Parse(url)
	if err != nil {
		t.Fatal(err)
	}
	var down atomic.Bool
	proxy := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close() // as a registry that is restarting
			}
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	reg, err := serde.NewRegistry(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	reg.Attempts, reg.Backoff = 2, 10*time.Millisecond

	subject := fmt.Sprintf("it-blip-%d-value", time.Now().UnixNano())
	c, err := serde.NewRegistryAvro(reg, subject, profileV1, false)
	if err != nil {
		t.Fatal(err)
	}
	rec := map[string]any{"id": int32(7), "plan": "pro"}

	down.Store(true)
	if _, err := c.AppendEncode(nil, rec); !serde.IsUnavailable(err) {
		t.Fatalf("encode during the outage: %v, want ErrUnavailable", err)
	}
	down.Store(false)
	_, err = c.AppendEncode(nil, rec)
	if err == nil || serde.IsUnavailable(err) || !strings.Contains(err.Error(), subject) {
		t.Fatalf("encode with the subject not registered: %v, want a configuration error naming %s", err, subject)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := reg.Client().CreateSchema(ctx, subject, sr.Schema{Schema: profileV1, Type: sr.TypeAvro}); err != nil {
		t.Fatalf("registering %s: %v", subject, err)
	}
	b, err := c.AppendEncode(nil, rec)
	if err != nil {
		t.Fatalf("encode once the subject is registered, same codec: %v", err)
	}
	if got, err := c.Decode(b); err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("decode: %#v, %v", got, err)
	}
}
