package builtin

import (
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"
)

func benchWinState() winState {
	best := 12.5
	at := int64(1_700_000_000_000)
	return winState{TS: 1_700_000_000_123, Acc: acc{
		"orders":  {N: 17},
		"revenue": {N: 17, Sum: 1234.56},
		"segment": {Last: "gold", At: &at},
		"top":     {Best: &best},
	}}
}

// BenchmarkWinStateCodec is a window's read-modify-write of its state per
// record: decode the stored value, encode the new one.
func BenchmarkWinStateCodec(b *testing.B) {
	v, _ := json.Marshal(benchWinState())
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ws := winState{}
			if err := json.Unmarshal(v, &ws); err != nil {
				b.Fatal(err)
			}
			if _, err := json.Marshal(ws); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("goccy", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			ws := winState{}
			if err := gojson.Unmarshal(v, &ws); err != nil {
				b.Fatal(err)
			}
			if _, err := gojson.Marshal(ws); err != nil {
				b.Fatal(err)
			}
		}
	})
}
