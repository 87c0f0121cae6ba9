//go:build unix

package cli

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// lockStateDir takes an exclusive lock on <dir>/streamer.lock for the life
// of the process, so that a second replica on this machine with the same
// state directory (by default both use ./streamer-state and the hostname
// as replica id) is refused at start with the flags to set, rather than
// fencing the first. The lock goes with the process, however it ends.
func lockStateDir(dir string) (release func(), err error) {
	// A directory that cannot be made or written is no reason to stop a
	// stateless topology: the stores report it if the topology has any.
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return func() {}, nil
	}
	path := filepath.Join(dir, "streamer.lock")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return func() {}, nil
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		b := make([]byte, 32)
		n, _ := f.ReadAt(b, 0)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			who := "another replica"
			if pid, perr := strconv.Atoi(strings.TrimSpace(string(b[:n]))); perr == nil {
				who = fmt.Sprintf("another replica (pid %d)", pid)
			}
			return nil, fmt.Errorf("%s on this machine runs with --state-dir %s: give each replica on one machine its own --state-dir, --replica-id and --metrics-addr (env STREAMER_STATE_DIR, STREAMER_REPLICA_ID, STREAMER_METRICS_ADDR)", who, dir)
		}
		return nil, fmt.Errorf("--state-dir: locking %s: %w", path, err)
	}
	_ = f.Truncate(0)
	_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() { f.Close() }, nil
}
