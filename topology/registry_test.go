package topology_test

import (
	"net/http"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/twmb/franz-go/pkg/sr"
	"github.com/twmb/franz-go/pkg/sr/srfake"

	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

const userSchema = `{"type":"record","name":"User","namespace":"shop","fields":[{"name":"id","type":"long"},{"name":"plan","type":"string"}]}`

const registryTopology = `name: reg
datasets:
  users:
    topic: users
    value: avro
    registry: {}
  pro:
    topic: pro-users
    value: avro
    schema: user.avsc
    registry: {strategy: topic-record, register: true}
pipes:
  keep:
    from: users
    to: pro
    on_error: skip
    filter: {when: 'plan == "pro"'}
`

func TestRegistryDatasets(t *testing.T) {
	fake := srfake.New()
	defer fake.Close()
	if _, _, err := fake.RegisterSchema("users-value", sr.Schema{Schema: userSchema, Type: sr.TypeAvro}); err != nil {
		t.Fatal(err)
	}
	reg, err := serde.NewRegistry(fake.URL())
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{"user.avsc": {Data: []byte(userSchema)}}

	// The source's schema comes from the registry, so the filter is
	// type-checked against it; the sink's subject follows its strategy.
	top, err := topology.Compile("t.yaml", []byte(registryTopology), fsys, topology.WithRegistry(reg))
	if err != nil {
		t.Fatal(err)
	}
	if s := top.Datasets["users"].Schema; s == nil || len(s.Fields) != 2 {
		t.Fatalf("source schema %v", s)
	}
	if got := top.Datasets["pro"].Subject; got != "pro-users-shop.User" {
		t.Errorf("sink subject %q", got)
	}
	bad := strings.Replace(registryTopology, `plan == "pro"`, `plna == "pro"`, 1)
	if _, err := topology.Compile("t.yaml", []byte(bad), fsys, topology.WithRegistry(reg)); err == nil || !strings.Contains(err.Error(), `unknown name plna (did you mean "plan"?)`) {
		t.Errorf("field check against the registry schema: %v", err)
	}

	// The registry's compatibility verdict on a sink schema is reported at
	// the schema's position.
	fake.Intercept(func(w http.ResponseWriter, r *http.Request) bool {
		if strings.HasPrefix(r.URL.Path, "/compatibility/subjects/pro-users-shop.User/") {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"is_compatible":false,"messages":["READER_FIELD_MISSING_DEFAULT_VALUE: plan"]}`))
			return true
		}
		return false
	})
	_, err = topology.Compile("t.yaml", []byte(registryTopology), fsys, topology.WithRegistry(reg))
	if err == nil || !strings.Contains(err.Error(), `t.yaml:10:13: dataset "pro": the schema is not compatible with subject "pro-users-shop.User": READER_FIELD_MISSING_DEFAULT_VALUE: plan`) {
		t.Errorf("compatibility: %v", err)
	}

	// Without a registry, a dataset with no schema file cannot compile; one
	// with a file compiles with a warning.
	_, err = topology.Compile("t.yaml", []byte(registryTopology), fsys)
	if err == nil || !strings.Contains(err.Error(), `no schema file, and no registry to fetch subject "users-value" from`) {
		t.Errorf("no registry: %v", err)
	}
}

// TestDeclaredOutputSchema: what a map derives is checked against the
// schema its output dataset declares.
func TestDeclaredOutputSchema(t *testing.T) {
	fsys := fstest.MapFS{
		"in.json":  {Data: []byte(`{"type":"object","required":["n","s"],"properties":{"n":{"type":"integer"},"s":{"type":"string"}}}`)},
		"out.json": {Data: []byte(`{"type":"object","required":["n","total","label"],"properties":{"n":{"type":"integer"},"total":{"type":"number"},"label":{"type":"string"}}}`)},
	}
	src := `name: d
datasets:
  in: {topic: in, schema: in.json}
  out: {topic: out, schema: out.json}
pipes:
  m:
    from: in
    to: out
    on_error: skip
    map:
      compute: {total: n * 2, label: n > 1}
`
	_, err := topology.Compile("t.yaml", []byte(src), fsys)
	var te *topology.Error
	if err == nil {
		t.Fatal("compiled")
	}
	te = err.(*topology.Error)
	got := te.Error()
	for _, want := range []string{
		`t.yaml:6:3: pipe "m" writes field "label" of dataset "out" as bool, but its schema says string`,
		`t.yaml:6:3: warning: pipe "m" emits field "s", which the schema of dataset "out" lacks: it is not written`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("missing %q in:\n%s", want, got)
		}
	}
	fixed := strings.Replace(src, "label: n > 1", `label: '"big"'`, 1)
	fixed = strings.Replace(fixed, "compute: {total: n * 2,", "drop: [s]\n      compute: {total: n * 2,", 1)
	if _, err := topology.Compile("t.yaml", []byte(fixed), fsys); err != nil {
		t.Errorf("fixed topology: %v", err)
	}
	missing := strings.Replace(src, "compute: {total: n * 2, label: n > 1}", "compute: {total: n * 2}", 1)
	if _, err := topology.Compile("t.yaml", []byte(missing), fsys); err == nil || !strings.Contains(err.Error(), `without field "label", which its schema requires`) {
		t.Errorf("missing field: %v", err)
	}
}
