package builtin

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/streamerio/streamer/internal/secret"
	"github.com/streamerio/streamer/ml"
	"github.com/streamerio/streamer/pipes"
)

// remoteModel is a model on an inference server (KServe V2) that connects
// on first use, so that a replica starts, and a topology validates, while
// the server is down: until it answers, calls fail as unavailable, which
// the batcher retries and the engine turns into pauses.
type remoteModel struct {
	opts ml.KServeOptions

	mu sync.Mutex // serialises connecting
	k  atomic.Pointer[ml.KServe]
}

var (
	_ ml.Model  = (*remoteModel)(nil)
	_ ml.Remote = (*remoteModel)(nil)
)

func (r *remoteModel) NumFeatures() int { return r.opts.Features }
func (r *remoteModel) NumOutputs() int  { return r.opts.Outputs }
func (r *remoteModel) Remote() bool     { return true }

// connect reads the model's metadata, once it succeeds.
func (r *remoteModel) connect(ctx context.Context) (*ml.KServe, error) {
	if k := r.k.Load(); k != nil {
		return k, nil // every call after the first: no lock
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := r.k.Load(); k != nil {
		return k, nil
	}
	k, err := ml.NewKServe(ctx, r.opts)
	if err != nil {
		return nil, err
	}
	r.k.Store(k)
	return k, nil
}

func (r *remoteModel) Predict(ctx context.Context, rows []float32, out []float64) error {
	k, err := r.connect(ctx)
	if err != nil {
		// The server is down, or serves another model than the topology
		// declares: neither is the records' fault.
		return fmt.Errorf("%w: %v", ml.ErrUnavailable, err)
	}
	return k.Predict(ctx, rows, out)
}

// newRemoteModel builds the model c names, with the feature and score
// counts the topology declares. It tries the server's metadata once, with
// a short timeout: a model that answers and disagrees with the topology is
// an error now; one that does not answer is checked on first use.
func newRemoteModel(c ModelConfig, features, outputs int) (ml.Model, error) {
	if c.URL == "" || c.Name == "" {
		return nil, pipes.Errorf(c.Pos, "model: a kserve model needs url and name")
	}
	if c.Token != "" && !isSecretRef(c.Token) {
		return nil, pipes.Errorf(c.Pos, "model: token: give a reference, ${env:NAME} or ${file:/path}, not the token itself: topology files are not secret")
	}
	r := &remoteModel{opts: ml.KServeOptions{URL: c.URL, Model: c.Name, Version: c.Version, Output: c.Output,
		Features: features, Outputs: outputs}}
	if ref := c.Token; ref != "" {
		// Resolved at every request: a rotated Secret is used at once.
		r.opts.Token = func() (string, error) { return secret.Resolve(ref) }
		if _, err := secret.Resolve(ref); err != nil {
			return r, nil // not here (validate, plan): checked on first use
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := r.connect(ctx); err != nil {
		var ke *ml.KServeError
		if errors.As(err, &ke) && ke.Retryable() || errors.Is(err, context.DeadlineExceeded) {
			return r, nil
		}
		return nil, pipes.Errorf(c.Pos, "%v", err)
	}
	return r, nil
}

// isSecretRef reports whether v is one ${env:NAME} or ${file:/path}
// reference and nothing else.
func isSecretRef(v string) bool {
	return strings.HasSuffix(v, "}") && strings.Count(v, "${") == 1 &&
		(strings.HasPrefix(v, "${env:") || strings.HasPrefix(v, "${file:/"))
}
