package pipes_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/streamerio/streamer/pipes"
	"github.com/streamerio/streamer/serde"
)

// A schema registry that cannot be reached pauses the replica like a model
// server that cannot: the engine checks errors.Is(err, pipes.ErrUnavailable),
// and serde returns serde.ErrUnavailable without importing pipes, so the two
// must be one value.
func TestSerdeUnavailableIsPipesUnavailable(t *testing.T) {
	err := fmt.Errorf("%w: serde: registry: connection refused", serde.ErrUnavailable)
	if !errors.Is(err, pipes.ErrUnavailable) {
		t.Fatal("serde.ErrUnavailable is not pipes.ErrUnavailable: an unreachable registry would dead-letter the stream")
	}
}
