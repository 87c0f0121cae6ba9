package engine

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/twmb/franz-go/pkg/kerr"
)

// ErrBrokersUnavailable wraps the error Run returns when a transaction
// could not end because the brokers did not answer within its budget (an
// outage longer than the transaction timeout, such as a single broker
// restarting). The transaction did not commit, or its outcome is unknown;
// either way the broker aborts or has settled it, and local stores never
// moved past what committed. A caller may run a new Engine of the same
// topology and options after a pause: it restores what it needs and goes
// on from the committed offsets (streamer run does).
var ErrBrokersUnavailable = errors.New("engine: the brokers are unavailable")

// outage wraps err with ErrBrokersUnavailable when it says the brokers did
// not answer: the end's budget ran out (not a stop signal's cancel), the
// connection failed, or a retriable broker error outlasted the retries.
func outage(err error) error {
	if err == nil || errors.Is(err, ErrBrokersUnavailable) {
		return err
	}
	var ne net.Error
	var ke *kerr.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) || (errors.As(err, &ke) && ke.Retriable) {
		return fmt.Errorf("%w: %w", ErrBrokersUnavailable, err)
	}
	return err
}
