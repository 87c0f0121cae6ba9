package builtin

import gojson "github.com/goccy/go-json"

// The accumulators of aggregate and window are stored, and written to their
// changelogs, as encoding/json writes them. They are encoded and decoded
// with goccy/go-json, which writes the same bytes (sorted map keys, the
// same escaping and number formatting: TestStateCodecMatchesEncodingJSON)
// in less than half the time: a window or an aggregate reads and writes
// its state for every record.

// marshalState encodes a state value in the stored format.
func marshalState(v any) ([]byte, error) { return gojson.Marshal(v) }

// unmarshalState decodes a stored state value into v.
func unmarshalState(b []byte, v any) error { return gojson.Unmarshal(b, v) }
