//go:build !unix

package engine

import "os"

// flock is a no-op where flock(2) is missing: the state directory is not
// guarded against a second process there.
func flock(*os.File) error { return nil }
