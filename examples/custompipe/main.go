// Command custompipe is streamer with one extra pipe type, redact: the way a
// team ships its own pipes, from a module of its own (see go.mod). It has
// every streamer command; from this directory:
//
//	go run . validate topology.yaml
//	go run . test .
//	go run . pipes redact
//
// It has every built-in pipe but language, whose lingua models would add
// 125 MB to the binary: add `_ "github.com/streamerio/streamer/pipes/language"`
// to the imports to have it (docs/your-own-pipes.md).
package main

import (
	"os"

	"github.com/streamerio/streamer/cli"

	_ "example.com/custompipe/redact" // registers "redact"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
