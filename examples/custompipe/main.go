// Command custompipe is streamer with one extra pipe type, redact: the way a
// team ships its own pipes, from a module of its own (see go.mod). It has
// every streamer command; from this directory:
//
//	go run . validate topology.yaml
//	go run . test .
//	go run . pipes redact
package main

import (
	"os"

	"github.com/streamerio/streamer/cli"

	_ "example.com/custompipe/redact" // registers "redact"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
