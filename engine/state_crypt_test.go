package engine_test

import (
	"bytes"
	"context"
	"testing"
	"testing/fstest"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/serde"
	"github.com/streamerio/streamer/topology"
)

// TestEncryptedState: a task's aggregate fed by an encrypted source
// writes its state encrypted (the changelog records carry no plaintext,
// and the store's data key is among them), while its pipes, and
// Task.Store, see plaintext.
func TestEncryptedState(t *testing.T) {
	top, err := topology.Compile("t.yaml", []byte(`
name: encstate
datasets:
  signups:
    topic: signups
    schema: signup.json
    encryption: {fields: [name], key: {kms: local, uri: unused.json}}
  names:
    topic: names
    create: {partitions: 1}
    encryption: {fields: [last], key: {kms: local, uri: unused.json}}
pipes:
  last-name:
    from: signups
    to: names
    aggregate: {fields: {last: {op: last, of: name}, n: {op: count}}}
`), fstest.MapFS{"signup.json": {Data: []byte(`{"type":"object","properties":{"name":{"type":"string"}}}`)}}, topology.WithTestKeys())
	if err != nil {
		t.Fatal(err)
	}
	task, err := engine.NewTask(top, "signups", 0, engine.TaskOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer task.Close()
	hc := top.Datasets["signups"].Codec.(serde.HeaderCodec)
	var in []*kgo.Record
	for i, name := range []string{"Annabel Lee", "Bobby Ray"} {
		b, hs, err := hc.AppendEncodeRecord(nil, map[string]any{"name": name}, nil)
		if err != nil {
			t.Fatal(err)
		}
		in = append(in, &kgo.Record{Topic: "signups", Key: []byte("u1"), Value: b, Headers: hs, Offset: int64(i)})
	}
	var changelog []*kgo.Record
	err = task.Process(context.Background(), in, func(r *kgo.Record) {
		if r.Topic == top.ChangelogTopic("last-name") {
			changelog = append(changelog, r)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := task.CommitState(func(string, int32) (int64, bool) { return 0, false }); err != nil {
		t.Fatal(err)
	}
	if len(changelog) < 2 {
		t.Fatalf("%d changelog records", len(changelog))
	}
	dataKey := false
	for _, r := range changelog {
		if bytes.Contains(r.Value, []byte("Annabel")) || bytes.Contains(r.Value, []byte("Bobby")) {
			t.Errorf("changelog %q = %q: plaintext", r.Key, r.Value)
		}
		dataKey = dataKey || bytes.Contains(r.Key, []byte("streamer.enc.store-dek"))
	}
	if !dataKey {
		t.Error("the store's data key is not in the changelog")
	}
	st, ok := task.Store("last-name")
	if !ok {
		t.Fatal("no store")
	}
	plain := false
	if err := st.Range(nil, nil, func(k, v []byte) bool {
		plain = plain || bytes.Contains(v, []byte("Bobby Ray"))
		return true
	}); err != nil {
		t.Fatal(err)
	}
	if !plain {
		t.Error("Task.Store does not show the pipe's plaintext")
	}
}
