package serde_test

import (
	"errors"
	"reflect"
	"strings"
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
