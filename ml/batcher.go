package ml

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// BatchOptions configures a Batcher. A zero field takes its default.
type BatchOptions struct {
	// MaxRows is the most rows one model call scores. Default 256.
	MaxRows int
	// Linger is how long a call that is not full yet waits for rows from
	// other partitions. Default 2ms.
	Linger time.Duration
	// InFlight is the most model calls running at once. When all are busy,
	// callers block, so the engine stops polling (backpressure) and memory
	// stays bounded. Default GOMAXPROCS for in-process models and 4 for
	// remote ones (see Remote).
	InFlight int
	// Timeout bounds one attempt of a model call. Default 2s.
	Timeout time.Duration
	// Retries is how many times a call that failed with a retryable error
	// (see IsRetryable) is tried again. Default 2; negative means none.
	// A call's worst case, (Retries+1)*Timeout plus backoffs, holds the
	// replica's open transaction, so it must stay well under the engine's
	// transaction timeout (10s): the defaults take about 6.2s.
	Retries int
	// Backoff is the wait before the first retry; it doubles per retry,
	// with jitter, up to MaxBackoff. Defaults 50ms and 1s.
	Backoff, MaxBackoff time.Duration
	// BreakerFailures is how many calls in a row must fail after their
	// retries for the circuit breaker to open. While it is open, calls fail
	// at once with ErrCircuitOpen, sparing a struggling server; after
	// BreakerCooldown one call probes it, and a success closes it.
	// Defaults 3 and 5s.
	BreakerFailures int
	BreakerCooldown time.Duration
	// Name labels the batcher in hooks (the model's name). Default "model".
	Name string
	// Hook, if set, is told about every model call and breaker change.
	Hook BatchHook
}

// Remote is implemented by models that call a server; their batchers
// default to 4 calls in flight rather than one per core.
type Remote interface {
	Remote() bool
}

// BatchHook observes a Batcher. It is called from the goroutine that made
// the model call, so it must be safe for concurrent use and quick.
type BatchHook interface {
	// OnModelCall is called after each model call, retries included.
	OnModelCall(ModelCall)
	// OnBreaker is called when the breaker opens (true) or closes (false).
	OnBreaker(model string, open bool)
}

// ModelCall describes one model call as a Batcher made it.
type ModelCall struct {
	Model    string
	Rows     int // rows scored in the call
	Callers  int // partitions whose rows shared it
	Attempts int // 1 plus retries
	Wait     time.Duration
	Duration time.Duration // from the first attempt to the result
	Err      error         // the final error, if the call failed
}

// ErrCircuitOpen is returned while the breaker is open.
var ErrCircuitOpen = errors.New("circuit breaker open")

// ErrUnavailable marks errors that are not the rows' fault: the model is
// unreachable, slow, or its breaker is open. Callers retry later rather than
// blaming records.
var ErrUnavailable = errors.New("model unavailable")

// retryable is implemented by errors that know whether to retry.
type retryable interface{ Retryable() bool }

// unavailable is implemented by errors that know whether they mean the
// model is unusable as deployed (credentials refused, no such model), not
// that the rows are at fault, such as *KServeError.
type unavailable interface{ Unavailable() bool }

var (
	_ retryable   = (*KServeError)(nil)
	_ unavailable = (*KServeError)(nil)
)

// isUnavailable reports whether err says by an Unavailable() bool method
// that no row caused it.
func isUnavailable(err error) bool {
	var u unavailable
	return errors.As(err, &u) && u.Unavailable()
}

// IsRetryable reports whether a model error may succeed if tried again: a
// timeout, or an error that says so by a Retryable() bool method, such as a
// remote model's connection failure or 5xx. In-process models fail the
// same way every time, so their errors are not retryable.
func IsRetryable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, ErrUnavailable) {
		return true
	}
	var r retryable
	return errors.As(err, &r) && r.Retryable()
}

// RowErrors is a Batcher.Predict error that blames particular rows: the
// model rejected them with a non-retryable error, and the other rows were
// scored. Rows maps a row's index in the call to its error.
type RowErrors struct {
	Rows map[int]error
}

func (e *RowErrors) Error() string {
	for i, err := range e.Rows {
		if len(e.Rows) == 1 {
			return fmt.Sprintf("row %d: %v", i, err)
		}
		return fmt.Sprintf("%d rows failed; row %d: %v", len(e.Rows), i, err)
	}
	return "no rows failed"
}

// A Batcher is a Model that merges the rows of concurrent callers (a
// replica's partitions) into micro-batches of up to MaxRows, runs up to
// InFlight of them at once, and hands each caller its own scores back.
//
// Per-key order holds because a caller gets its scores only when all its
// rows are scored, and a partition's records wait for their Predict to
// return. Failed calls are retried with backoff when the error is
// retryable, a circuit breaker stops calls to a failing model, and a
// non-retryable error is narrowed down by bisection to the rows that cause
// it (a RowErrors), so one poison record does not fail its neighbours.
//
// A Batcher runs one goroutine, from the first Predict until Close.
type Batcher struct {
	model  Model
	opts   BatchOptions
	in     chan *chunk
	slots  chan struct{}
	start  sync.Once
	closed sync.Once
	stop   chan struct{}
	done   chan struct{}

	// submitting counts callers inside Predict that have not handed over
	// their last chunk: while it is 0, no rows are on their way and a call
	// need not linger.
	submitting atomic.Int64

	mu       sync.Mutex
	failures int       // calls in a row that failed after retries
	openTill time.Time // the breaker is open until then
	probing  bool      // a half-open probe is running
}

var _ Model = (*Batcher)(nil)

// chunk is one caller's rows, at most MaxRows of them.
type chunk struct {
	rows  []float32
	n     int
	out   []float64 // filled by the call that scores it
	err   error
	done  chan struct{}
	since time.Time
	last  bool // the caller's last chunk
}

// NewBatcher returns a Batcher over m.
func NewBatcher(m Model, opts BatchOptions) *Batcher {
	if opts.MaxRows <= 0 {
		opts.MaxRows = 256
	}
	if opts.Linger <= 0 {
		opts.Linger = 2 * time.Millisecond
	}
	if opts.InFlight <= 0 {
		opts.InFlight = runtime.GOMAXPROCS(0)
		if r, ok := m.(Remote); ok && r.Remote() {
			opts.InFlight = 4
		}
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Retries == 0 {
		opts.Retries = 2
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 50 * time.Millisecond
	}
	if opts.MaxBackoff <= 0 {
		opts.MaxBackoff = time.Second
	}
	if opts.BreakerFailures <= 0 {
		opts.BreakerFailures = 3
	}
	if opts.BreakerCooldown <= 0 {
		opts.BreakerCooldown = 5 * time.Second
	}
	if opts.Name == "" {
		opts.Name = "model"
	}
	return &Batcher{
		model: m,
		opts:  opts,
		in:    make(chan *chunk),
		slots: make(chan struct{}, opts.InFlight),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// Options returns the options with defaults applied.
func (b *Batcher) Options() BatchOptions { return b.opts }

// NumFeatures is the model's.
func (b *Batcher) NumFeatures() int { return b.model.NumFeatures() }

// NumOutputs is the model's.
func (b *Batcher) NumOutputs() int { return b.model.NumOutputs() }

// Predict scores rows as part of micro-batches shared with other callers.
// It returns when all rows are scored, or with the first error: a
// *RowErrors when particular rows were rejected (the others are scored), an
// error wrapping ErrUnavailable when the model could not be reached within
// the retries or the breaker is open, or ctx's error.
func (b *Batcher) Predict(ctx context.Context, rows []float32, out []float64) error {
	nf, no := b.model.NumFeatures(), b.model.NumOutputs()
	n := len(out) / no
	if len(rows) != n*nf || len(out) != n*no {
		return fmt.Errorf("ml: %d values for %d rows of %d features", len(rows), n, nf)
	}
	if n == 0 {
		return nil
	}
	b.start.Do(func() { go b.loop() })
	chunks := make([]chunk, 0, (n+b.opts.MaxRows-1)/b.opts.MaxRows)
	now := time.Now()
	for lo := 0; lo < n; lo += b.opts.MaxRows {
		hi := min(n, lo+b.opts.MaxRows)
		chunks = append(chunks, chunk{rows: rows[lo*nf : hi*nf], n: hi - lo, out: out[lo*no : hi*no], done: make(chan struct{}), since: now})
	}
	chunks[len(chunks)-1].last = true
	b.submitting.Add(1)
	for i := range chunks {
		select {
		case b.in <- &chunks[i]:
		case <-ctx.Done():
			b.submitting.Add(-1)
			b.abandon(chunks[:i])
			return ctx.Err()
		case <-b.stop:
			b.submitting.Add(-1)
			b.abandon(chunks[:i])
			return errors.New("ml: batcher closed")
		}
	}
	var rowErrs map[int]error
	var first error
	for i := range chunks {
		select {
		case <-chunks[i].done:
		case <-ctx.Done():
			b.abandon(chunks[i:])
			return ctx.Err()
		}
		var re *RowErrors
		switch err := chunks[i].err; {
		case err == nil:
		case errors.As(err, &re):
			if rowErrs == nil {
				rowErrs = map[int]error{}
			}
			for r, e := range re.Rows {
				rowErrs[i*b.opts.MaxRows+r] = e
			}
		case first == nil:
			first = err
		}
	}
	if first != nil {
		return first
	}
	if rowErrs != nil {
		return &RowErrors{Rows: rowErrs}
	}
	return nil
}

// abandon waits for chunks already handed over, so that no model call
// writes into out after Predict returned. Calls are bounded by the
// attempt timeout and retries.
func (b *Batcher) abandon(sent []chunk) {
	for i := range sent {
		<-sent[i].done
	}
}

// Close stops the batcher's goroutine and waits for the calls in flight.
// Predict fails afterwards.
func (b *Batcher) Close() error {
	b.closed.Do(func() {
		close(b.stop)
		b.start.Do(func() { close(b.done) }) // never started: nothing to stop
		<-b.done
		for range cap(b.slots) {
			b.slots <- struct{}{}
		}
	})
	return nil
}

// loop gathers chunks into calls. A call goes as soon as it is full, or
// when no caller is about to add rows (every caller inside Predict has
// handed over all its chunks), or when Linger has passed since its first
// chunk. While every call slot is busy it keeps taking chunks that fit, so
// batches grow exactly when the model is the bottleneck.
func (b *Batcher) loop() {
	defer close(b.done)
	var next *chunk // a chunk that did not fit in the previous call
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		var call []*chunk
		rows := 0
		add := func(c *chunk) bool {
			if rows > 0 && rows+c.n > b.opts.MaxRows {
				next = c
				return false
			}
			if c.last {
				b.submitting.Add(-1)
			}
			call, rows = append(call, c), rows+c.n
			return true
		}
		if c := next; c != nil {
			next = nil
			add(c)
		} else {
			select {
			case c := <-b.in:
				add(c)
			case <-b.stop:
				return
			}
		}
		timer.Reset(b.opts.Linger)
	gather:
		for rows < b.opts.MaxRows && next == nil && b.submitting.Load() > 0 {
			select {
			case c := <-b.in:
				add(c)
			case <-timer.C:
				break gather
			case <-b.stop:
				break gather
			}
		}
		timer.Stop()
		for {
			in := b.in
			if rows >= b.opts.MaxRows || next != nil {
				in = nil // full: wait for a slot only
			}
			select {
			case b.slots <- struct{}{}:
			case c := <-in:
				add(c)
				continue
			case <-b.stop:
				for _, c := range call {
					c.err = errors.New("ml: batcher closed")
					close(c.done)
				}
				return
			}
			break
		}
		go func() {
			defer func() { <-b.slots }()
			b.run(call, rows)
		}()
	}
}

// run scores one call's chunks and hands each its scores.
func (b *Batcher) run(call []*chunk, rows int) {
	nf, no := b.model.NumFeatures(), b.model.NumOutputs()
	in, out := call[0].rows, call[0].out
	if len(call) > 1 {
		in = make([]float32, 0, rows*nf)
		for _, c := range call {
			in = append(in, c.rows...)
		}
		out = make([]float64, rows*no)
	}
	start := time.Now()
	attempts, err := b.attempt(in, out)
	if b.opts.Hook != nil {
		b.opts.Hook.OnModelCall(ModelCall{Model: b.opts.Name, Rows: rows, Callers: len(call), Attempts: attempts,
			Wait: start.Sub(call[0].since), Duration: time.Since(start), Err: err})
	}
	switch {
	case err != nil && !errors.Is(err, ErrUnavailable):
		// The model rejects something in these rows: find what, so the
		// others are scored and only the culprits are blamed.
		for _, c := range call {
			known := error(nil)
			if len(call) == 1 {
				known = err
			}
			c.err = b.isolate(c.rows, c.out, c.n, 0, known)
		}
	case err != nil:
		for _, c := range call {
			c.err = err
		}
	case len(call) > 1:
		off := 0
		for _, c := range call {
			copy(c.out, out[off*no:(off+c.n)*no])
			off += c.n
		}
	}
	for _, c := range call {
		close(c.done)
	}
}

// isolate scores rows on their own (unless their error is known) and, on
// a non-retryable error, halves them until the failing rows are found. It
// returns nil, a *RowErrors (indexes offset by base), or an error wrapping
// ErrUnavailable.
func (b *Batcher) isolate(rows []float32, out []float64, n, base int, err error) error {
	if err == nil {
		_, err = b.attempt(rows, out)
	}
	switch {
	case err == nil:
		return nil
	case errors.Is(err, ErrUnavailable):
		return err
	case n == 1:
		return &RowErrors{Rows: map[int]error{base: err}}
	}
	nf, no := b.model.NumFeatures(), b.model.NumOutputs()
	h := n / 2
	errs := map[int]error{}
	for _, part := range []struct{ lo, hi int }{{0, h}, {h, n}} {
		err := b.isolate(rows[part.lo*nf:part.hi*nf], out[part.lo*no:part.hi*no], part.hi-part.lo, base+part.lo, nil)
		var re *RowErrors
		switch {
		case err == nil:
		case errors.As(err, &re):
			for i, e := range re.Rows {
				errs[i] = e
			}
		default:
			return err
		}
	}
	if len(errs) == 0 {
		return nil // the halves succeed on their own
	}
	return &RowErrors{Rows: errs}
}

// attempt calls the model through the breaker, retrying retryable errors
// with backoff. Errors that exhaust the retries, and calls refused by the
// open breaker, wrap ErrUnavailable.
func (b *Batcher) attempt(rows []float32, out []float64) (int, error) {
	if err := b.admit(); err != nil {
		return 0, err
	}
	wait := b.opts.Backoff
	var err error
	attempts := 0
	for {
		attempts++
		ctx, cancel := context.WithTimeout(context.Background(), b.opts.Timeout)
		err = b.model.Predict(ctx, rows, out)
		cancel()
		if err == nil {
			b.settle(true)
			return attempts, nil
		}
		if !IsRetryable(err) && isUnavailable(err) {
			// The server answered, but refuses any call as deployed
			// (credentials, model name): retrying or bisecting cannot
			// help; the caller pauses until someone fixes it.
			b.settle(false)
			return attempts, fmt.Errorf("%w: %s: %w", ErrUnavailable, b.opts.Name, err)
		}
		if !IsRetryable(err) {
			// The model answered: it is up, the rows are at fault.
			b.settle(true)
			return attempts, err
		}
		if attempts > b.opts.Retries {
			break
		}
		select {
		case <-time.After(wait/2 + rand.N(wait/2+1)):
		case <-b.stop:
			attempts = b.opts.Retries + 1
		}
		wait = min(2*wait, b.opts.MaxBackoff)
	}
	b.settle(false)
	return attempts, fmt.Errorf("%w: %s: %v (after %d attempts)", ErrUnavailable, b.opts.Name, err, attempts)
}

// admit lets a call through the breaker: always when closed, one probe at
// a time when the cooldown has passed, none otherwise.
func (b *Batcher) admit() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openTill.IsZero() {
		return nil
	}
	if time.Now().Before(b.openTill) || b.probing {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, b.opts.Name, ErrCircuitOpen)
	}
	b.probing = true
	return nil
}

// settle records a call's outcome in the breaker.
func (b *Batcher) settle(ok bool) {
	b.mu.Lock()
	wasOpen := !b.openTill.IsZero()
	b.probing = false
	if ok {
		b.failures, b.openTill = 0, time.Time{}
	} else {
		b.failures++
		if b.failures >= b.opts.BreakerFailures {
			b.openTill = time.Now().Add(b.opts.BreakerCooldown)
		}
	}
	open := !b.openTill.IsZero()
	b.mu.Unlock()
	if b.opts.Hook != nil && open != wasOpen {
		b.opts.Hook.OnBreaker(b.opts.Name, open)
	}
}
