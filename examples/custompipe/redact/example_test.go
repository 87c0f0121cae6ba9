package redact_test

import (
	"context"
	"fmt"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/streamerio/streamer/engine"
	"github.com/streamerio/streamer/topology"
)

// Example runs a record through the example topology, as the engine would.
func Example() {
	top, err := topology.Load("../topology.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	task, _ := engine.NewTask(top, "signups", 0, engine.TaskOptions{})
	in := &kgo.Record{Topic: "signups", Value: []byte(`{"user_id":7,"email":"bo@example.com","plan":"pro"}`)}
	_ = task.Process(context.Background(), []*kgo.Record{in}, func(r *kgo.Record) {
		fmt.Println(r.Topic, string(r.Value))
	})
	// Output:
	// signups-clean {"email":"ce565d77a6111601","plan":"pro","user_id":7}
}
