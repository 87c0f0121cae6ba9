//go:build !nolanguage

package main

import (
	"testing"

	"github.com/streamerio/streamer/pipes"
)

// The stock binary has every pipe type: the language pipe lives in a package
// of its own (pipes/language), registered only where it is imported.
func TestStockBinaryHasLanguage(t *testing.T) {
	if _, ok := pipes.Lookup("language"); !ok {
		t.Fatal("the streamer command lacks the language pipe: cmd/streamer must import pipes/language")
	}
	if why := pipes.NotLinked("language"); why != "" {
		t.Errorf("NotLinked says %q for a linked type", why)
	}
}
