package engine

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"
)

func TestOutageClassifies(t *testing.T) {
	for _, c := range []struct {
		err  error
		want bool
	}{
		{fmt.Errorf("flush: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}, true},
		{fmt.Errorf("ending: %w", kerr.CoordinatorNotAvailable), true},
		{fmt.Errorf("flush: %w", context.Canceled), false}, // a stop signal, not an outage
		{fmt.Errorf("ending: %w", kerr.ProducerFenced), false},
		{fmt.Errorf("ending: %w", kerr.TransactionalIDAuthorizationFailed), false},
		{errors.New("a pipe failed"), false},
		{nil, false},
	} {
		if got := errors.Is(outage(c.err), ErrBrokersUnavailable); got != c.want {
			t.Errorf("outage(%v): %v, want %v", c.err, got, c.want)
		}
	}
}
