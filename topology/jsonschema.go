package topology

import (
	"github.com/streamerio/streamer/internal/spec"
	"github.com/streamerio/streamer/pipes"
)

// JSONSchema returns the JSON Schema of the topology format, generated from
// the same config structs that decode topology files and from every
// registered pipe type, so it is never out of date.
func JSONSchema() map[string]any {
	root := spec.JSONSchema(reflectFileSpec)
	root["$schema"] = "https://json-schema.org/draft/2020-12/schema"
	root["title"] = "streamer topology"
	props := root["properties"].(spec.Schema)

	ds := spec.JSONSchema(reflectDatasetSpec)
	props["datasets"] = spec.Schema{
		"type":                 "object",
		"description":          props["datasets"].(spec.Schema)["description"],
		"additionalProperties": ds,
	}

	var oneOf []any
	for _, t := range pipes.Types() {
		p := spec.JSONSchema(reflectPipeSpec)
		pp := p["properties"].(spec.Schema)
		pp[t.Name] = t.JSONSchema()
		p["required"] = append(p["required"].([]string), t.Name)
		p["title"] = t.Name
		p["description"] = t.Spec.Summary
		oneOf = append(oneOf, p)
	}
	props["pipes"] = spec.Schema{
		"type":                 "object",
		"description":          props["pipes"].(spec.Schema)["description"],
		"additionalProperties": spec.Schema{"oneOf": oneOf},
	}
	return root
}
