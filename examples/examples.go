// Package examples embeds the example topologies, so that `streamer demo`
// runs one with nothing else on disk.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed enrichment/topology.yaml enrichment/schemas
var files embed.FS

// Enrichment is the order-enrichment example: its topology file is
// topology.yaml at the root of the returned FS, beside its schemas/.
func Enrichment() fs.FS {
	sub, err := fs.Sub(files, "enrichment")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return sub
}
