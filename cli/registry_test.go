package cli

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/streamerio/streamer/serde"
)

// TestRegistryCredentials: --registry-username with a password reference,
// or --registry-token, reach the registry; bad combinations are refused.
func TestRegistryCredentials(t *testing.T) {
	t.Setenv("IT_REG_PW", "reg-pw")
	var got string
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte("[]"))
	}))
	defer s.Close()
	for _, tc := range []struct {
		g    globals
		want string
	}{
		{globals{registryUser: "u", registryPassword: "${env:IT_REG_PW}"}, "Basic dTpyZWctcHc="},
		{globals{registryToken: "tok"}, "Bearer tok"},
		{globals{}, ""},
	} {
		opts, err := tc.g.registryOpts()
		if err != nil {
			t.Fatal(err)
		}
		reg, err := serde.NewRegistry(s.URL, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := reg.Client().Subjects(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("Authorization %q, want %q", got, tc.want)
		}
	}
	for _, g := range []globals{
		{registryUser: "u"},
		{registryUser: "u", registryPassword: "p", registryToken: "t"},
		{registryUser: "u", registryPassword: "${env:NOPE_UNSET_REG}"},
		{registryCA: "/nonexistent/ca.pem"},
	} {
		if _, err := g.registryOpts(); err == nil || !strings.Contains(err.Error(), "--registry-") {
			t.Errorf("%+v: %v", g, err)
		}
	}
}
