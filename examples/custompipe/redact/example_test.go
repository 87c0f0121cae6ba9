package redact_test

import (
	"fmt"

	"github.com/streamerio/streamer/streamertest"
)

// Example pipes a signup through the example topology with the streamertest
// driver, which runs the same compiled plan and engine code as a replica,
// and reads what the redact pipe wrote.
func Example() {
	d, err := streamertest.Load("../topology.yaml")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer d.Close()
	err = d.Input("signups", streamertest.Record{
		Key:   streamertest.Key("u-7"),
		Value: map[string]any{"user_id": 7, "email": "bo@example.com", "plan": "pro"},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	out, err := d.Output("clean")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, r := range out {
		fmt.Println(*r.Key, r.Value)
	}
	fmt.Println(len(d.DeadLetters()), "dead letters")
	// Output:
	// u-7 map[email:ce565d77a6111601 plan:pro user_id:7]
	// 0 dead letters
}
