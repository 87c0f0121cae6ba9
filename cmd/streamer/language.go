//go:build !nolanguage

package main

// The language pipe: lingua's models are 125 MB of the binary, so
// -tags nolanguage (the default container image) leaves it out.
import _ "github.com/streamerio/streamer/pipes/language"
