//go:build unix

package engine

import (
	"errors"
	"os"
	"syscall"
)

// flock takes an exclusive lock of f without waiting; errLocked if another
// open file description holds it (another process, or this one twice).
func flock(f *os.File) error {
	err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, syscall.EWOULDBLOCK) {
		return errLocked
	}
	return err
}
