package ml

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
)

// KServeOptions configures a remote model behind the Open Inference Protocol
// (KServe V2), as MLServer, KServe and Triton serve it.
type KServeOptions struct {
	// URL is the server: http://host:port or https://host:port for the REST
	// API (a path prefix is kept, for servers behind an ingress), and
	// grpc://host:port or grpcs://host:port for the gRPC API.
	URL string
	// Model is the model's name on the server.
	Model string
	// Version pins a model version; empty lets the server choose.
	Version string
	// Timeout bounds each request, on top of the caller's context.
	// Zero means 10s; a negative value means only the context bounds it.
	Timeout time.Duration
	// Features is the number of features a row holds, and Outputs the
	// number of scores per row. Either may be zero when the model's
	// metadata gives it (a fixed last dimension of its input or output
	// shape); when both are given they must agree.
	Features int
	Outputs  int
	// Input names the input tensor when the metadata declares none.
	// Default "input-0".
	Input string
	// Output names the output tensor to request and read. Default: the
	// first output the metadata declares, else the first the server
	// returns. An MLServer XGBoost or scikit-learn model also answers
	// "predict_proba".
	Output string
	// MaxIdleConns is how many idle HTTP connections to the server are
	// kept for reuse. Default 16; it should be at least the number of
	// requests in flight (a Batcher's InFlight), or connections churn.
	MaxIdleConns int
	// Token, when set, gives the bearer token sent with every request
	// (Authorization: Bearer over HTTP, the authorization metadata over
	// gRPC). It is called for each request, so that a rotated token (a
	// file a Kubernetes Secret mounts) is used at once. The token is
	// never logged nor part of an error.
	Token func() (string, error)
}

// KServe is a Model that a server scores over the Open Inference Protocol
// (KServe V2), over HTTP/JSON or gRPC. One client, and its connections, is
// shared by all callers.
//
// Over HTTP, rows travel as a JSON FP32 tensor, where a missing value (NaN)
// is sent as null: MLServer decodes null as NaN. JSON cannot carry ±Inf,
// so rows holding one fail without a request; use gRPC for them. Over gRPC,
// rows travel as raw little-endian floats (raw_input_contents), so every
// value, NaN and ±Inf included, arrives bit for bit, and encoding costs
// next to nothing.
//
// Errors are *KServeError when the server failed or could not be reached;
// their Retryable method (see IsRetryable) says whether trying again may
// help. KServe itself never retries.
type KServe struct {
	spec kserveSpec
	tr   kserveTransport
}

var (
	_ Model  = (*KServe)(nil)
	_ Remote = (*KServe)(nil)
)

// kserveSpec is what a transport needs to build requests and read answers,
// settled by NewKServe from the options and the model's metadata.
type kserveSpec struct {
	token     func() (string, error)
	url       *url.URL
	model     string
	version   string
	timeout   time.Duration
	features  int
	outputs   int
	input     string // the input tensor's name
	inputType string // FP32 or FP64
	output    string // the output tensor to request and read; empty: the first
}

// kserveTransport is one wire protocol of the Open Inference Protocol.
type kserveTransport interface {
	metadata(ctx context.Context) (*kserveMetadata, error)
	// infer scores n rows into out (n*spec.outputs values).
	infer(ctx context.Context, rows []float32, n int, out []float64) error
	close() error
}

// kserveMetadata is a model's metadata, as both protocols give it.
type kserveMetadata struct {
	Name     string             `json:"name"`
	Versions []string           `json:"versions"`
	Platform string             `json:"platform"`
	Inputs   []kserveTensorMeta `json:"inputs"`
	Outputs  []kserveTensorMeta `json:"outputs"`
}

type kserveTensorMeta struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

func (t kserveTensorMeta) String() string {
	return fmt.Sprintf("%s %s%v", t.Name, t.Datatype, t.Shape)
}

// NewKServe connects to the server, reads the model's metadata and checks it
// against opts: one input of shape [-1, Features] and FP32 or FP64 values,
// and an output of Outputs scores per row. A server that cannot be reached
// gives a *KServeError, retryable; a model that does not fit gives an error
// that says what differs.
func NewKServe(ctx context.Context, opts KServeOptions) (*KServe, error) {
	if opts.Model == "" {
		return nil, errors.New("kserve: no model name: set KServeOptions.Model")
	}
	if opts.Features < 0 || opts.Outputs < 0 {
		return nil, fmt.Errorf("kserve model %q: features (%d) and outputs (%d) cannot be negative", opts.Model, opts.Features, opts.Outputs)
	}
	u, err := url.Parse(opts.URL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("kserve model %q: URL %q is not http://host:port or grpc://host:port", opts.Model, opts.URL)
	}
	spec := kserveSpec{
		token:    opts.Token,
		url:      u,
		model:    opts.Model,
		version:  opts.Version,
		timeout:  opts.Timeout,
		features: opts.Features,
		outputs:  opts.Outputs,
		input:    opts.Input,
		output:   opts.Output,
	}
	if spec.timeout == 0 {
		spec.timeout = 10 * time.Second
	}
	if spec.input == "" {
		spec.input = "input-0"
	}
	var tr kserveTransport
	switch u.Scheme {
	case "http", "https":
		tr = newKServeHTTP(&spec, opts.MaxIdleConns)
	case "grpc", "grpcs":
		if u.Path != "" && u.Path != "/" {
			return nil, fmt.Errorf("kserve model %q: a gRPC URL has no path, got %q", opts.Model, opts.URL)
		}
		if tr, err = newKServeGRPC(&spec); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("kserve model %q: URL scheme %q is not supported: use http, https, grpc or grpcs", opts.Model, u.Scheme)
	}
	md, err := tr.metadata(ctx)
	if err != nil {
		_ = tr.close()
		return nil, err
	}
	if err := spec.fit(md); err != nil {
		_ = tr.close()
		return nil, err
	}
	return &KServe{spec: spec, tr: tr}, nil
}

// fit checks the metadata against the options and fills what they left open.
func (s *kserveSpec) fit(md *kserveMetadata) error {
	where := fmt.Sprintf("kserve model %q at %s", s.model, s.url.Redacted())
	s.inputType = "FP32"
	switch len(md.Inputs) {
	case 0:
		// MLServer gives no inputs unless model-settings.json declares them;
		// the first request will tell.
	case 1:
		in := md.Inputs[0]
		if in.Name != "" {
			s.input = in.Name
		}
		switch in.Datatype {
		case "FP32", "FP64":
			s.inputType = in.Datatype
		case "":
		default:
			return fmt.Errorf("%s: input %s: streamer sends FP32 or FP64 features, not %s", where, in, in.Datatype)
		}
		if len(in.Shape) != 2 {
			return fmt.Errorf("%s: input %s: streamer sends a [rows, features] matrix; declare the input's shape as [-1, features]", where, in)
		}
		if f := in.Shape[1]; f > 0 {
			if s.features == 0 {
				s.features = int(f)
			} else if int64(s.features) != f {
				return fmt.Errorf("%s: input %s takes %d features, but the model is configured with %d", where, in, f, s.features)
			}
		}
	default:
		return fmt.Errorf("%s: the model has %d inputs (%v); streamer sends one [rows, features] tensor", where, len(md.Inputs), md.Inputs)
	}
	if s.features == 0 {
		return fmt.Errorf("%s: the number of features is unknown: the metadata does not fix it (inputs %v); set it", where, md.Inputs)
	}

	var out *kserveTensorMeta
	for i := range md.Outputs {
		if s.output == "" || md.Outputs[i].Name == s.output {
			out = &md.Outputs[i]
			break
		}
	}
	switch {
	case out != nil:
		s.output = out.Name
		if err := checkKServeDatatype(out.Datatype); out.Datatype != "" && err != nil {
			return fmt.Errorf("%s: output %s: %v", where, out, err)
		}
		k, err := kserveOutputWidth(out.Shape)
		if err != nil {
			return fmt.Errorf("%s: output %s: %v", where, out, err)
		}
		if k > 0 {
			if s.outputs == 0 {
				s.outputs = k
			} else if s.outputs != k {
				return fmt.Errorf("%s: output %s gives %d scores per row, but the model is configured with %d", where, out, k, s.outputs)
			}
		}
	case s.output != "" && len(md.Outputs) > 0:
		names := make([]string, len(md.Outputs))
		for i, o := range md.Outputs {
			names[i] = o.Name
		}
		return fmt.Errorf("%s: no output named %q; the model declares %s", where, s.output, strings.Join(names, ", "))
	}
	if s.outputs == 0 {
		return fmt.Errorf("%s: the number of outputs is unknown: the metadata does not fix it (outputs %v); set it", where, md.Outputs)
	}
	return nil
}

// kserveOutputWidth is the number of scores per row an output shape gives:
// [-1] or [-1, 1] is one, [-1, K] is K, and 0 means the shape leaves it open.
func kserveOutputWidth(shape []int64) (int, error) {
	switch len(shape) {
	case 0:
		return 0, nil
	case 1:
		return 1, nil
	case 2:
		if shape[1] < 0 {
			return 0, nil
		}
		return int(shape[1]), nil
	}
	return 0, errors.New("streamer reads [rows] or [rows, scores] outputs")
}

func checkKServeDatatype(dt string) error {
	switch dt {
	case "FP32", "FP64", "INT32", "INT64":
		return nil
	}
	return fmt.Errorf("streamer reads FP32, FP64, INT32 or INT64 outputs, not %q", dt)
}

// NumFeatures is the number of features a row holds.
func (k *KServe) NumFeatures() int { return k.spec.features }

// NumOutputs is the number of scores per row.
func (k *KServe) NumOutputs() int { return k.spec.outputs }

// Remote reports that the model runs on a server.
func (k *KServe) Remote() bool { return true }

// Predict sends the rows to the server in one request and writes its scores
// to out.
func (k *KServe) Predict(ctx context.Context, rows []float32, out []float64) error {
	if len(out)%k.spec.outputs != 0 {
		return fmt.Errorf("kserve model %q: out holds %d values, not a multiple of %d outputs", k.spec.model, len(out), k.spec.outputs)
	}
	n := len(out) / k.spec.outputs
	if len(rows) != n*k.spec.features {
		return fmt.Errorf("kserve model %q: %d feature values for %d rows of %d features", k.spec.model, len(rows), n, k.spec.features)
	}
	if n == 0 {
		return nil
	}
	if k.spec.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, k.spec.timeout, errKServeTimeout)
		defer cancel()
	}
	return k.tr.infer(ctx, rows, n, out)
}

// Close releases the connections.
func (k *KServe) Close() error { return k.tr.close() }

// errKServeTimeout is the cause of a request context that KServeOptions.Timeout
// ended, which tells it from the caller's own deadline.
var errKServeTimeout = errors.New("request timeout")

// KServeError is a request to an inference server that failed: the server
// answered with an error, or could not be reached.
type KServeError struct {
	Model string
	// Op is "metadata" or "infer".
	Op string
	// HTTPStatus is the server's HTTP status, 0 when there was none.
	HTTPStatus int
	// GRPCCode is the server's gRPC status code, codes.OK when there was
	// none.
	GRPCCode codes.Code
	// Err says what failed: the server's message, or the transport's error.
	Err error

	retry       bool
	unavailable bool
}

func (e *KServeError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "kserve model %q: %s", e.Model, e.Op)
	switch {
	case e.HTTPStatus != 0:
		fmt.Fprintf(&b, ": HTTP %d", e.HTTPStatus)
		if t := http.StatusText(e.HTTPStatus); t != "" {
			fmt.Fprintf(&b, " %s", t)
		}
	case e.GRPCCode != codes.OK:
		fmt.Fprintf(&b, ": gRPC %s", e.GRPCCode)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

func (e *KServeError) Unwrap() error { return e.Err }

// Retryable reports whether the request may succeed if sent again: the
// server was unreachable, timed out, overloaded or failed on its side
// (HTTP 408, 429 and 5xx but 501 and 505; gRPC Unavailable,
// DeadlineExceeded, ResourceExhausted, Aborted, Internal and Unknown). A
// request the server refused (other 4xx, gRPC InvalidArgument, NotFound...)
// or an answer that does not fit the model is not retryable, and neither is
// a request whose caller gave up.
func (e *KServeError) Retryable() bool { return e.retry }

// Unavailable reports whether the server refused the request for a reason
// no row can cause, so sending it again unchanged fails the same way until
// someone fixes the deployment: credentials refused (HTTP 401, 403; gRPC
// Unauthenticated, PermissionDenied), no such model or version (HTTP 404;
// gRPC NotFound), or a server that cannot serve the call (any other 4xx or
// 5xx neither retryable nor a row's fault; gRPC Unimplemented,
// FailedPrecondition...). The Batcher reports these as ErrUnavailable: the
// replica pauses rather than dead-lettering the stream. Only HTTP 400, 413
// and 422 and gRPC InvalidArgument and OutOfRange blame the rows.
func (e *KServeError) Unavailable() bool { return e.unavailable }

// retryableHTTP classifies an HTTP status.
func retryableHTTP(status int) bool {
	switch status {
	// 401 and 403 are not retried here but make the replica pause
	// (Unavailable): a rotated token is read again for the request after
	// the pause.
	case 408, 429:
		return true
	case 501, 505:
		return false
	}
	return status >= 500
}

// rowsHTTP reports whether an HTTP status can be the rows' fault: a
// malformed, too large or unprocessable request.
func rowsHTTP(status int) bool {
	switch status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// retryableGRPC classifies a gRPC status code.
func retryableGRPC(c codes.Code) bool {
	switch c {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted,
		codes.Aborted, codes.Internal, codes.Unknown:
		return true
	}
	return false
}

// rowsGRPC reports whether a gRPC code can be the rows' fault.
func rowsGRPC(c codes.Code) bool {
	return c == codes.InvalidArgument || c == codes.OutOfRange
}

// transportError wraps an error that came with no answer from the server
// (connection refused or reset, a timeout, the caller's cancellation).
func (s *kserveSpec) transportError(ctx context.Context, op string, err error) *KServeError {
	e := &KServeError{Model: s.model, Op: op, Err: err, retry: true}
	if context.Cause(ctx) == errKServeTimeout {
		e.Err = fmt.Errorf("no answer within %v: %w", s.timeout, context.DeadlineExceeded)
	} else if ctxErr := ctx.Err(); ctxErr != nil {
		// The caller gave up (or its own deadline passed): not the server's
		// failure, and nobody waits for a retry.
		e.Err = ctxErr
		e.retry = false
	}
	return e
}

// answerError is an answer that does not fit the model: not retryable.
func (s *kserveSpec) answerError(format string, args ...any) *KServeError {
	return &KServeError{Model: s.model, Op: "infer", Err: fmt.Errorf(format, args...)}
}

// checkOutputShape checks an output tensor's shape against n rows.
func (s *kserveSpec) checkOutputShape(name string, shape []int64, n, values int) error {
	ok := false
	switch len(shape) {
	case 1:
		ok = s.outputs == 1 && shape[0] == int64(n)
	case 2:
		ok = shape[0] == int64(n) && shape[1] == int64(s.outputs)
	}
	if !ok {
		return s.answerError("output %q has shape %v for %d rows; the model is configured with %d outputs, so it must be [%d, %d]", name, shape, n, s.outputs, n, s.outputs)
	}
	if values != n*s.outputs {
		return s.answerError("output %q has shape %v but %d values", name, shape, values)
	}
	return nil
}

// checkFinite rejects ±Inf, which JSON cannot carry.
func checkFinite(model string, rows []float32, features int) error {
	for i, v := range rows {
		if math.IsInf(float64(v), 0) {
			return fmt.Errorf("kserve model %q: row %d feature %d is %v, which JSON cannot carry: use a grpc:// URL, or clamp the feature", model, i/features, i%features, v)
		}
	}
	return nil
}
