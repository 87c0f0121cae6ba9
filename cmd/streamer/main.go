// Command streamer runs declarative, exactly-once stream-processing
// topologies over Kafka. See the README and `streamer --help`.
package main

import (
	"os"

	"github.com/streamerio/streamer/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
