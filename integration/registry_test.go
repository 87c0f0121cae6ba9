package integration

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/internal/topicread"
	"github.com/streamerio/streamer/serde"
)

// The writer registers v1; the job reads with v2 (a field added with a
// default, id widened to long) and writes its own registered schema.
const (
	profileV1 = `{"type":"record","name":"Profile","namespace":"it","fields":[
		{"name":"id","type":"int"},{"name":"plan","type":"string"}]}`
	profileV2 = `{"type":"record","name":"Profile","namespace":"it","fields":[
		{"name":"id","type":"long"},{"name":"plan","type":"string"},
		{"name":"region","type":"string","default":"eu"}]}`
	enrichedV1 = `{"type":"record","name":"Enriched","namespace":"it","fields":[
		{"name":"id","type":"long"},{"name":"plan","type":"string"},
		{"name":"region","type":"string"},{"name":"paid","type":"boolean"}]}`
	// Changing a field's type is not BACKWARD compatible.
	enrichedBad = `{"type":"record","name":"Enriched","namespace":"it","fields":[
		{"name":"id","type":"string"},{"name":"plan","type":"string"},
		{"name":"region","type":"string"},{"name":"paid","type":"boolean"}]}`
)

const registryTopology = `
name: {{.ID}}
dead_letter: dlq
datasets:
  profiles:
    topic: {{topic "in"}}
    value: avro
    schema: v2.avsc
    registry: {}
  enriched:
    topic: {{topic "out"}}
    value: avro
    schema: out.avsc
    registry: {register: true}
    create: {partitions: 3}
  dlq:
    topic: {{topic "dlq"}}
    value: bytes
    create: {partitions: 1}
pipes:
  enrich:
    from: profiles
    to: enriched
    map:
      compute: {paid: plan != "free"}
`

// TestRegistryEvolutionEndToEnd runs a replica against the real broker and a
// real schema registry (Apicurio, Confluent API): records written with an
// older schema are read with the newer one, outputs are registered and
// written in the wire format, bad headers and unknown schema ids go to the
// dead letters, and validate refuses an incompatible output schema.
func TestRegistryEvolutionEndToEnd(t *testing.T) {
	requireIntegration(t)
	url := os.Getenv("STREAMER_REGISTRY_URL")
	if url == "" {
		t.Fatal("STREAMER_REGISTRY_URL is not set: make test starts a registry (scripts/with-registry.sh)")
	}
	reg, err := serde.NewRegistry(url)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t)
	e.createTopic("in", 3)
	writer, err := serde.NewRegistryAvro(reg, e.topic("in")+"-value", profileV1, true)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	var recs []*kgo.Record
	for i := 0; i < n; i++ {
		plan := []string{"free", "pro", "team"}[i%3]
		b, err := writer.AppendEncode(nil, map[string]any{"id": int32(i), "plan": plan})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, &kgo.Record{Key: []byte{byte(i)}, Value: b})
	}
	recs = append(recs,
		&kgo.Record{Key: []byte("bad-magic"), Value: []byte{1, 0, 0, 0, 1, 2}},
		&kgo.Record{Key: []byte("unknown-id"), Value: []byte{0, 0x7f, 0, 0, 9, 2}},
	)
	e.produce("in", recs)

	file := e.writeTopology(registryTopology, map[string]string{"v2.avsc": profileV2, "out.avsc": enrichedV1})
	r := e.startArgs(file, "r1", "--metrics-addr", "off", "--registry", url)
	e.waitConsumed("streamer-"+e.id, "in", []*replica{r}, 2*time.Minute)
	if _, code := r.stop(t); code != 0 {
		t.Fatalf("replica exit %d:\n%s", code, r.log)
	}

	out, err := serde.NewRegistryAvro(reg, e.topic("out")+"-value", enrichedV1, false)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	var dead []*kgo.Record
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = topicread.All(ctx, brokers, 3*time.Second, func(rec *kgo.Record) {
		if rec.Topic == e.topic("dlq") {
			dead = append(dead, rec)
			return
		}
		v, err := out.Decode(rec.Value)
		if err != nil {
			t.Errorf("output not in the wire format with the registered schema: %v", err)
			return
		}
		m := v.(map[string]any)
		id := m["id"].(int64)
		if m["region"] != "eu" || m["paid"] != (m["plan"] != "free") || seen[id] {
			t.Errorf("output %v", m)
		}
		seen[id] = true
	}, e.topic("out"), e.topic("dlq"))
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != n {
		t.Errorf("%d distinct outputs, want %d", len(seen), n)
	}
	why := map[string]string{}
	for _, d := range dead {
		for _, h := range d.Headers {
			if h.Key == "streamer.error" {
				why[string(d.Key)] = string(h.Value)
			}
		}
	}
	if len(dead) != 2 || !strings.Contains(why["bad-magic"], "magic byte 0x1") || !strings.Contains(why["unknown-id"], "is not in the registry") {
		t.Errorf("dead letters %d: %v", len(dead), why)
	}

	// validate asks the registry: a type change of an output field is not
	// BACKWARD compatible with what the job registered.
	if err := os.WriteFile(filepath.Join(filepath.Dir(file), "out.avsc"), []byte(enrichedBad), 0o644); err != nil {
		t.Fatal(err)
	}
	msg, err := exec.Command(binary, "validate", "--registry", url, file).CombinedOutput()
	if code := exitCode(err); code != 3 || !strings.Contains(string(msg), `the schema is not compatible with subject "`+e.topic("out")+`-value"`) {
		t.Fatalf("validate of an incompatible schema: exit %d\n%s", code, msg)
	}
	t.Logf("validate says: %s", strings.SplitN(string(msg), "\n", 2)[0])
}
