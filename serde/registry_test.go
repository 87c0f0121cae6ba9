package serde_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/streamerio/streamer/serde"
)

const (
	userV1 = `{"type":"record","name":"User","namespace":"shop","fields":[
		{"name":"id","type":"int"},
		{"name":"name","type":"string"},
		{"name":"tags","type":{"type":"array","items":"string"}}]}`
	// v2 drops name, widens id to long, and adds fields with defaults.
	userV2 = `{"type":"record","name":"User","namespace":"shop","fields":[
		{"name":"id","type":"long"},
		{"name":"tags","type":{"type":"array","items":"string"}},
		{"name":"email","type":["null","string"],"default":null},
		{"name":"score","type":"double","default":1.5},
		{"name":"plan","type":{"type":"enum","name":"Plan","symbols":["FREE","PRO"]},"default":"FREE"},
		{"name":"address","type":{"type":"record","name":"Address","fields":[{"name":"city","type":"string","default":"?"}]},"default":{}}]}`
)

func registry(t *testing.T) (*srfake.Registry, *serde.Registry) {
	t.Helper()
	fake := srfake.New()
	t.Cleanup(fake.Close)
	reg, err := serde.NewRegistry(fake.URL())
	if err != nil {
		t.Fatal(err)
	}
	return fake, reg
}

func TestRegistryRoundTripAndEvolution(t *testing.T) {
	_, reg := registry(t)
	v1, err := serde.NewRegistryAvro(reg, "users-value", userV1, true)
	if err != nil {
		t.Fatal(err)
	}
	in := map[string]any{"id": int32(7), "name": "Ann", "tags": []any{"a"}}
	b, err := v1.AppendEncode(nil, in)
	if err != nil {
		t.Fatal(err)
	}
	if b[0] != 0 || len(b) < 6 {
		t.Fatalf("not the wire format: %x", b)
	}
	got, err := v1.Decode(b)
	if err != nil || !reflect.DeepEqual(got, in) {
		t.Fatalf("v1 round trip: %#v, %v", got, err)
	}

	// A reader on v2 decodes what v1 wrote, by Avro's resolution rules.
	v2, err := serde.NewRegistryAvro(reg, "users-value", userV2, true)
	if err != nil {
		t.Fatal(err)
	}
	got, err = v2.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": int64(7), "tags": []any{"a"}, "email": nil, "score": 1.5, "plan": "FREE", "address": map[string]any{"city": "?"}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("v1 record read with v2:\n got %#v\nwant %#v", got, want)
	}
	// And v2's own records pass through untouched.
	w := map[string]any{"id": int64(8), "tags": []any{}, "email": "a@b", "score": 2.0, "plan": "PRO", "address": map[string]any{"city": "Oslo"}}
	b2, err := v2.AppendEncode(nil, w)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := v2.Decode(b2); err != nil || !reflect.DeepEqual(got, w) {
		t.Fatalf("v2 round trip: %#v, %v", got, err)
	}
	// A reader that requires a field v1 lacks, with no default, fails clearly.
	strict, _ := serde.NewRegistryAvro(reg, "users-value", `{"type":"record","name":"User","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"age","type":"int"}]}`, false)
	if _, err := strict.Decode(b); err == nil || !strings.Contains(err.Error(), `field "age"`) {
		t.Fatalf("missing field without default: %v", err)
	}
}

func TestRegistryBadInput(t *testing.T) {
	_, reg := registry(t)
	c, _ := serde.NewRegistryAvro(reg, "users-value", userV1, true)
	good, err := c.AppendEncode(nil, map[string]any{"id": int32(1), "name": "x", "tags": []any{}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in   []byte
		want string
	}{
		{[]byte{}, "wire format: empty value"},
		{append([]byte{1}, good[1:]...), "magic byte 0x1, want 0x00"},
		{good[:3], "too short for the 5-byte header"},
		{[]byte{0, 0, 0, 0, 99, 2}, "schema id 99 is not in the registry"},
		{good[:len(good)-2], "schema id"},
	}
	for _, tt := range tests {
		_, err := c.Decode(tt.in)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%x: %v, want %q", tt.in, err, tt.want)
		}
		if serde.IsUnavailable(err) {
			t.Errorf("%x: a bad record is reported as an unavailable registry: %v", tt.in, err)
		}
	}
}

func TestRegistryUnavailable(t *testing.T) {
	reg, err := serde.NewRegistry("http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	reg.Attempts, reg.Backoff = 3, time.Millisecond
	c, _ := serde.NewRegistryAvro(reg, "users-value", userV1, true)
	_, err = c.Decode([]byte{0, 0, 0, 0, 1, 2})
	if !serde.IsUnavailable(err) || !strings.Contains(err.Error(), "after 3 attempts") {
		t.Fatalf("decode: %v", err)
	}
	_, err = c.AppendEncode(nil, map[string]any{"id": int32(1), "name": "x", "tags": []any{}})
	if !errors.Is(err, serde.ErrUnavailable) {
		t.Fatalf("encode: %v", err)
	}
}

func TestSubjectNames(t *testing.T) {
	for _, tt := range []struct{ strategy, want string }{
		{"topic", "users-value"}, {"record", "shop.User"}, {"topic-record", "users-shop.User"},
	} {
		got, err := serde.SubjectName(tt.strategy, "users", userV1)
		if err != nil || got != tt.want {
			t.Errorf("%s: %q %v, want %q", tt.strategy, got, err, tt.want)
		}
	}
}

// flakyRegistry answers the subject lookup and the schema-by-id request of
// a registry that knows one subject, "users-value" with id 1, or 503 while
// down is set.
func flakyRegistry(t *testing.T, down *atomic.Bool, calls *atomic.Int32) *serde.Registry {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/vnd.schemaregistry.v1+json")
		if down.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprint(w, `{"error_code":50301,"message":"registry restarting"}`)
			return
		}
		switch {
		case r.URL.Path == "/subjects/users-value":
			fmt.Fprintf(w, `{"subject":"users-value","version":1,"id":1,"schema":%q}`, userV1)
		case r.URL.Path == "/schemas/ids/1":
			fmt.Fprintf(w, `{"schema":%q}`, userV1)
		case strings.HasPrefix(r.URL.Path, "/subjects/"):
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error_code":40401,"message":"Subject not found."}`)
		default:
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error_code":40403,"message":"Schema not found"}`)
		}
	}))
	t.Cleanup(srv.Close)
	reg, err := serde.NewRegistry(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	reg.Attempts, reg.Backoff = 2, time.Millisecond
	return reg
}

// An outage of the registry pauses (ErrUnavailable), and the same codec
// works once the registry is back: no error is cached.
func TestRegistryRecoversAfterOutage(t *testing.T) {
	var down atomic.Bool
	var calls atomic.Int32
	down.Store(true)
	reg := flakyRegistry(t, &down, &calls)
	c, err := serde.NewRegistryAvro(reg, "users-value", userV1, false)
	if err != nil {
		t.Fatal(err)
	}
	rec := map[string]any{"id": int32(1), "name": "x", "tags": []any{}}
	if _, err := c.AppendEncode(nil, rec); !serde.IsUnavailable(err) {
		t.Fatalf("encode during the outage: %v, want ErrUnavailable", err)
	}
	if _, err := c.Decode([]byte{0, 0, 0, 0, 1, 2}); !serde.IsUnavailable(err) {
		t.Fatalf("decode during the outage: %v, want ErrUnavailable", err)
	}

	down.Store(false)
	b, err := c.AppendEncode(nil, rec)
	if err != nil {
		t.Fatalf("encode after the registry came back: %v", err)
	}
	if got, err := c.Decode(b); err != nil || !reflect.DeepEqual(got, rec) {
		t.Fatalf("decode after the registry came back: %#v, %v", got, err)
	}
	// Successes are cached: more records make no more requests.
	n := calls.Load()
	for range 3 {
		b, _ := c.AppendEncode(nil, rec)
		if _, err := c.Decode(b); err != nil {
			t.Fatal(err)
		}
	}
	if calls.Load() != n {
		t.Errorf("%d more registry requests for cached ids", calls.Load()-n)
	}
}

// A subject that is not registered is a configuration error: it fails at
// once (no retries), names the subject, and does not pause the replica.
func TestRegistryMissingSubject(t *testing.T) {
	var down atomic.Bool
	var calls atomic.Int32
	reg := flakyRegistry(t, &down, &calls)
	c, err := serde.NewRegistryAvro(reg, "orders-value", userV1, false)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AppendEncode(nil, map[string]any{"id": int32(1), "name": "x", "tags": []any{}})
	if err == nil || serde.IsUnavailable(err) {
		t.Fatalf("missing subject: %v, want a configuration error, not ErrUnavailable", err)
	}
	if !strings.Contains(err.Error(), `"orders-value"`) || !strings.Contains(err.Error(), "register: true") {
		t.Errorf("the error does not name the subject and the fix: %v", err)
	}
	if calls.Load() != 1 {
		t.Errorf("%d requests for a missing subject, want 1 (no retries)", calls.Load())
	}
}

// A registry refusing the credentials is misconfigured, not the record's
// fault: the replica pauses (ErrUnavailable) and the error names the status.
func TestRegistryUnauthorizedPauses(t *testing.T) {
	for _, code := range []int{http.StatusUnauthorized, http.StatusForbidden} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(code)
			fmt.Fprint(w, `{"error_code":`+fmt.Sprint(code)+`,"message":"no"}`)
		}))
		reg, err := serde.NewRegistry(srv.URL)
		if err != nil {
			t.Fatal(err)
		}
		c, _ := serde.NewRegistryAvro(reg, "users-value", userV1, true)
		_, err = c.AppendEncode(nil, map[string]any{"id": int32(1), "name": "x", "tags": []any{}})
		if !serde.IsUnavailable(err) || !strings.Contains(err.Error(), fmt.Sprint(code)) {
			t.Errorf("encode against a registry answering %d: %v", code, err)
		}
		if _, err := c.Decode([]byte{0, 0, 0, 0, 1, 2}); !serde.IsUnavailable(err) {
			t.Errorf("decode against a registry answering %d: %v", code, err)
		}
		srv.Close()
	}
}
