// Package unavailable owns the error value that marks a dependency as
// unavailable (pipes.ErrUnavailable, serde.ErrUnavailable, the same value),
// so that serde can return it without importing pipes. It imports nothing.
package unavailable

import "errors"

// Err marks a failure that is not the records' fault: a model server or
// schema registry that cannot be reached, even after retries. The engine
// aborts the transaction, waits with backoff and processes the same records
// again, so nothing is lost or dead-lettered because a dependency is down.
var Err = errors.New("unavailable")
