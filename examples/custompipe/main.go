// Command custompipe is streamer with one extra pipe type, redact: the way a
// team ships its own pipes. It has every streamer command:
//
//	go run ./examples/custompipe validate examples/custompipe/topology.yaml
//	go run ./examples/custompipe pipes redact
package main

import (
	"os"

	"github.com/streamerio/streamer/cli"

	_ "github.com/streamerio/streamer/examples/custompipe/redact" // registers "redact"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
