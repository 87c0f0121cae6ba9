package ml_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/streamerio/streamer/ml"
	pb "github.com/streamerio/streamer/ml/internal/inferencepb"
)

// fakeV2 is an Open Inference Protocol server for the client's error paths,
// over HTTP and gRPC. It scores a row as the sum of its features, NaN
// counted as 0, repeated over the output's width, so that answers depend
// on what was sent. The real server is MLServer, in integration/.
type fakeV2 struct {
	pb.UnimplementedGRPCInferenceServiceServer

	meta kserveMeta
	// failHTTP / failGRPC, when set, answer every inference with that error.
	failHTTP int
	failGRPC codes.Code
	// delay is how long an inference takes.
	delay time.Duration
	// shape, when set, replaces the answer's shape.
	shape []int64
	// calls counts inference requests.
	calls atomic.Int32
	// sawNaN records the positions of NaN features in the last request.
	mu     sync.Mutex
	sawNaN []int
}

type kserveTensor struct {
	Name     string  `json:"name"`
	Datatype string  `json:"datatype"`
	Shape    []int64 `json:"shape"`
}

type kserveMeta struct {
	Name    string         `json:"name"`
	Inputs  []kserveTensor `json:"inputs"`
	Outputs []kserveTensor `json:"outputs"`
}

func sixFeatures(width int64) kserveMeta {
	return kserveMeta{
		Name:    "m",
		Inputs:  []kserveTensor{{"features", "FP32", []int64{-1, 6}}},
		Outputs: []kserveTensor{{"predict", "FP32", []int64{-1, width}}},
	}
}

// score computes the fake's answer and notes where NaNs were.
func (f *fakeV2) score(vals []float64, n int) ([]float64, []int64) {
	feats := len(vals) / max(n, 1)
	width := int(f.meta.Outputs[0].Shape[1])
	var nan []int
	out := make([]float64, 0, n*width)
	for r := 0; r < n; r++ {
		s := 0.0
		for _, v := range vals[r*feats : (r+1)*feats] {
			if math.IsNaN(v) {
				continue
			}
			s += v
		}
		for k := 0; k < width; k++ {
			out = append(out, s+float64(k))
		}
	}
	for i, v := range vals {
		if math.IsNaN(v) {
			nan = append(nan, i)
		}
	}
	f.mu.Lock()
	f.sawNaN = nan
	f.mu.Unlock()
	shape := []int64{int64(n), int64(width)}
	if f.shape != nil {
		shape = f.shape
	}
	return out, shape
}

func (f *fakeV2) nans() []int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.sawNaN
}

func (f *fakeV2) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/v2/models/m":
		json.NewEncoder(w).Encode(f.meta)
	case r.Method == http.MethodPost && r.URL.Path == "/v2/models/m/infer":
		f.calls.Add(1)
		time.Sleep(f.delay)
		if f.failHTTP != 0 {
			w.WriteHeader(f.failHTTP)
			fmt.Fprintf(w, `{"error":"fake failure %d"}`, f.failHTTP)
			return
		}
		var req struct {
			Inputs []struct {
				Shape []int64    `json:"shape"`
				Data  []*float64 `json:"data"`
			} `json:"inputs"`
		}
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || len(req.Inputs) != 1 {
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, `{"error":"bad request: %v"}`, err)
			return
		}
		vals := make([]float64, len(req.Inputs[0].Data))
		for i, p := range req.Inputs[0].Data {
			vals[i] = math.NaN()
			if p != nil {
				vals[i] = float64(float32(*p)) // an FP32 tensor, as a server reads it
			}
		}
		out, shape := f.score(vals, int(req.Inputs[0].Shape[0]))
		data := make([]any, len(out))
		for i, v := range out {
			data[i] = v
		}
		if len(data) > 0 && f.meta.Outputs[0].Name == "nan" {
			data[0] = nil // the server's NaN
		}
		json.NewEncoder(w).Encode(map[string]any{"outputs": []map[string]any{{
			"name": f.meta.Outputs[0].Name, "datatype": "FP64", "shape": shape, "data": data,
		}}})
	default:
		w.WriteHeader(http.StatusNotFound)
		fmt.Fprintf(w, `{"error":"Model not found"}`)
	}
}

func (f *fakeV2) ModelMetadata(_ context.Context, r *pb.ModelMetadataRequest) (*pb.ModelMetadataResponse, error) {
	if r.GetName() != "m" {
		return nil, status.Errorf(codes.NotFound, "Model %s not found", r.GetName())
	}
	resp := &pb.ModelMetadataResponse{Name: f.meta.Name}
	for _, t := range f.meta.Inputs {
		resp.Inputs = append(resp.Inputs, &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	for _, t := range f.meta.Outputs {
		resp.Outputs = append(resp.Outputs, &pb.ModelMetadataResponse_TensorMetadata{Name: t.Name, Datatype: t.Datatype, Shape: t.Shape})
	}
	return resp, nil
}

func (f *fakeV2) ModelInfer(ctx context.Context, r *pb.ModelInferRequest) (*pb.ModelInferResponse, error) {
	f.calls.Add(1)
	select {
	case <-time.After(f.delay):
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	if f.failGRPC != codes.OK {
		return nil, status.Errorf(f.failGRPC, "fake failure %s", f.failGRPC)
	}
	if len(r.GetInputs()) != 1 || len(r.GetRawInputContents()) != 1 || r.GetInputs()[0].GetDatatype() != "FP32" {
		return nil, status.Error(codes.InvalidArgument, "want one FP32 input in raw_input_contents")
	}
	raw := r.GetRawInputContents()[0]
	vals := make([]float64, len(raw)/4)
	for i := range vals {
		vals[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
	}
	out, shape := f.score(vals, int(r.GetInputs()[0].GetShape()[0]))
	rawOut := make([]byte, 0, 8*len(out))
	for _, v := range out {
		rawOut = binary.LittleEndian.AppendUint64(rawOut, math.Float64bits(v))
	}
	return &pb.ModelInferResponse{
		ModelName:         "m",
		Outputs:           []*pb.ModelInferResponse_InferOutputTensor{{Name: f.meta.Outputs[0].Name, Datatype: "FP64", Shape: shape}},
		RawOutputContents: [][]byte{rawOut},
	}, nil
}

// serveHTTP starts f over HTTP and returns its URL and a count of the TCP
// connections clients opened.
func serveHTTP(t *testing.T, f *fakeV2) (string, *atomic.Int64) {
	t.Helper()
	var conns atomic.Int64
	s := httptest.NewUnstartedServer(f)
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s.URL, &conns
}

// serveGRPC starts f over gRPC on a loopback port and returns its URL.
func serveGRPC(t *testing.T, f *fakeV2) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	pb.RegisterGRPCInferenceServiceServer(s, f)
	go s.Serve(lis)
	t.Cleanup(s.Stop)
	return "grpc://" + lis.Addr().String()
}

func newKServe(t *testing.T, url string, opts ml.KServeOptions) *ml.KServe {
	t.Helper()
	opts.URL = url
	if opts.Model == "" {
		opts.Model = "m"
	}
	m, err := ml.NewKServe(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// TestKServeClassifiesErrors: a status a row can cause (HTTP 400, 413, 422;
// gRPC InvalidArgument, OutOfRange) blames rows; a transient one is
// retried; one that says the server is misconfigured or refuses us (401,
// 403, 404, 501; Unauthenticated, PermissionDenied, NotFound,
// Unimplemented, FailedPrecondition) means the model is unavailable, with
// the status named, and no row is blamed.
func TestKServeClassifiesErrors(t *testing.T) {
	row := []float32{1, 2, 3, 4, 5, 6}
	const (
		rows        = "rows"
		retry       = "retry"
		unavailable = "unavailable"
	)
	for _, tt := range []struct {
		httpCode int
		grpcCode codes.Code
		want     string
		status   string // what the error must name
	}{
		{httpCode: http.StatusBadRequest, want: rows, status: "HTTP 400"},
		{httpCode: http.StatusRequestEntityTooLarge, want: rows, status: "HTTP 413"},
		{httpCode: http.StatusUnprocessableEntity, want: rows, status: "HTTP 422"},
		{grpcCode: codes.InvalidArgument, want: rows, status: "gRPC InvalidArgument"},
		{grpcCode: codes.OutOfRange, want: rows, status: "gRPC OutOfRange"},
		{httpCode: http.StatusUnauthorized, want: unavailable, status: "HTTP 401 Unauthorized"},
		{httpCode: http.StatusForbidden, want: unavailable, status: "HTTP 403 Forbidden"},
		{httpCode: http.StatusNotFound, want: unavailable, status: "HTTP 404 Not Found"},
		{httpCode: http.StatusNotImplemented, want: unavailable, status: "HTTP 501"},
		{grpcCode: codes.Unauthenticated, want: unavailable, status: "gRPC Unauthenticated"},
		{grpcCode: codes.PermissionDenied, want: unavailable, status: "gRPC PermissionDenied"},
		{grpcCode: codes.NotFound, want: unavailable, status: "gRPC NotFound"},
		{grpcCode: codes.Unimplemented, want: unavailable, status: "gRPC Unimplemented"},
		{grpcCode: codes.FailedPrecondition, want: unavailable, status: "gRPC FailedPrecondition"},
		{httpCode: http.StatusTooManyRequests, want: retry, status: "HTTP 429"},
		{httpCode: http.StatusInternalServerError, want: retry, status: "HTTP 500"},
		{httpCode: http.StatusServiceUnavailable, want: retry, status: "HTTP 503"},
		{grpcCode: codes.ResourceExhausted, want: retry, status: "gRPC ResourceExhausted"},
		{grpcCode: codes.Internal, want: retry, status: "gRPC Internal"},
		{grpcCode: codes.Unavailable, want: retry, status: "gRPC Unavailable"},
		{grpcCode: codes.DeadlineExceeded, want: retry, status: "gRPC DeadlineExceeded"},
	} {
		t.Run(tt.status, func(t *testing.T) {
			f := &fakeV2{meta: sixFeatures(1), failHTTP: tt.httpCode, failGRPC: tt.grpcCode}
			var url string
			if tt.httpCode != 0 {
				url, _ = serveHTTP(t, f)
			} else {
				url = serveGRPC(t, f)
			}
			m := newKServe(t, url, ml.KServeOptions{Features: 6, Outputs: 1})
			err := m.Predict(context.Background(), row, make([]float64, 1))
			var ke *ml.KServeError
			if !errors.As(err, &ke) {
				t.Fatalf("error %v (%T), want a *KServeError", err, err)
			}
			if got := ke.Retryable(); got != (tt.want == retry) || ml.IsRetryable(err) != got {
				t.Errorf("%v: Retryable() = %v, IsRetryable = %v, want %v", err, got, ml.IsRetryable(err), tt.want == retry)
			}
			if got := ke.Unavailable(); got != (tt.want == unavailable) {
				t.Errorf("%v: Unavailable() = %v, want %v", err, got, tt.want == unavailable)
			}
			if !strings.Contains(err.Error(), "fake failure") || !strings.Contains(err.Error(), tt.status) {
				t.Errorf("error %q does not carry the server's message and %q", err, tt.status)
			}

			// Through a batcher: rows are blamed only for a row's error;
			// a misconfigured server is unavailable (the replica pauses),
			// and is not asked again row by row.
			b := ml.NewBatcher(m, ml.BatchOptions{MaxRows: 8, Retries: 1, Backoff: time.Millisecond, BreakerFailures: 100})
			defer b.Close()
			f.calls.Store(0)
			err = b.Predict(context.Background(), append(append([]float32{}, row...), row...), make([]float64, 2))
			var re *ml.RowErrors
			switch tt.want {
			case rows:
				if !errors.As(err, &re) || len(re.Rows) != 2 {
					t.Errorf("batcher: %v, want both rows blamed", err)
				}
			case unavailable, retry:
				if !errors.Is(err, ml.ErrUnavailable) || errors.As(err, &re) || !strings.Contains(err.Error(), tt.status) {
					t.Errorf("batcher: %v, want ErrUnavailable naming %s and no row blamed", err, tt.status)
				}
			}
			if tt.want == unavailable && f.calls.Load() != 1 {
				t.Errorf("batcher: %d calls to a misconfigured server, want 1 (no retries, no bisection)", f.calls.Load())
			}
		})
	}
}

func TestKServeClassifiesTransportFailures(t *testing.T) {
	row := []float32{1, 2, 3, 4, 5, 6}
	slow := &fakeV2{meta: sixFeatures(1), delay: 300 * time.Millisecond}
	slowHTTP, _ := serveHTTP(t, slow)
	slowGRPC := serveGRPC(t, slow)
	for _, url := range []string{slowHTTP, slowGRPC} {
		t.Run("timeout "+url[:4], func(t *testing.T) {
			m := newKServe(t, url, ml.KServeOptions{Features: 6, Outputs: 1, Timeout: 50 * time.Millisecond})
			err := m.Predict(context.Background(), row, make([]float64, 1))
			if !ml.IsRetryable(err) || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("error %v: want a retryable deadline error", err)
			}
		})
		t.Run("caller cancels "+url[:4], func(t *testing.T) {
			m := newKServe(t, url, ml.KServeOptions{Features: 6, Outputs: 1})
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(30*time.Millisecond, cancel)
			err := m.Predict(ctx, row, make([]float64, 1))
			if ml.IsRetryable(err) || !errors.Is(err, context.Canceled) {
				t.Fatalf("error %v: want context.Canceled, not retryable", err)
			}
		})
	}
	t.Run("server gone", func(t *testing.T) {
		f := &fakeV2{meta: sixFeatures(1)}
		s := httptest.NewServer(f)
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		gs := grpc.NewServer()
		pb.RegisterGRPCInferenceServiceServer(gs, f)
		go gs.Serve(lis)
		mh := newKServe(t, s.URL, ml.KServeOptions{Features: 6, Outputs: 1})
		mg := newKServe(t, "grpc://"+lis.Addr().String(), ml.KServeOptions{Features: 6, Outputs: 1, Timeout: time.Second})
		s.Close()
		gs.Stop()
		for _, m := range []*ml.KServe{mh, mg} {
			err := m.Predict(context.Background(), row, make([]float64, 1))
			if err == nil || !ml.IsRetryable(err) {
				t.Errorf("error %v: want a retryable error", err)
			}
		}
	})
	t.Run("nothing listening at construction", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close()
		for _, url := range []string{"http://" + addr, "grpc://" + addr} {
			_, err := ml.NewKServe(context.Background(), ml.KServeOptions{URL: url, Model: "m", Features: 6, Timeout: time.Second})
			if err == nil || !ml.IsRetryable(err) {
				t.Errorf("%s: error %v: want a retryable error", url, err)
			}
		}
	})
}

func TestKServeChecksMetadata(t *testing.T) {
	meta := func(in []kserveTensor, out ...kserveTensor) kserveMeta {
		return kserveMeta{Name: "m", Inputs: in, Outputs: out}
	}
	six := []kserveTensor{{"x", "FP32", []int64{-1, 6}}}
	for _, tt := range []struct {
		name     string
		meta     kserveMeta
		opts     ml.KServeOptions
		features int
		outputs  int
		err      string // "" = no error
	}{
		{"fits", sixFeatures(3), ml.KServeOptions{Features: 6, Outputs: 3}, 6, 3, ""},
		{"learns the sizes", sixFeatures(3), ml.KServeOptions{}, 6, 3, ""},
		{"[-1] output is one score", meta(six, kserveTensor{"y", "FP32", []int64{-1}}), ml.KServeOptions{}, 6, 1, ""},
		{"open shapes take the options", meta([]kserveTensor{{"x", "FP64", []int64{-1, -1}}}, kserveTensor{"y", "FP32", []int64{-1, -1}}), ml.KServeOptions{Features: 4, Outputs: 2}, 4, 2, ""},
		{"no metadata takes the options", meta(nil), ml.KServeOptions{Features: 4, Outputs: 2}, 4, 2, ""},
		{"picks the named output", meta(six, kserveTensor{"label", "INT64", []int64{-1}}, kserveTensor{"proba", "FP32", []int64{-1, 2}}), ml.KServeOptions{Output: "proba"}, 6, 2, ""},
		{"wrong features", sixFeatures(1), ml.KServeOptions{Features: 7, Outputs: 1}, 0, 0, "takes 6 features, but the model is configured with 7"},
		{"wrong outputs", sixFeatures(3), ml.KServeOptions{Features: 6, Outputs: 1}, 0, 0, "gives 3 scores per row, but the model is configured with 1"},
		{"two inputs", meta(append(six, kserveTensor{"z", "FP32", []int64{-1, 2}})), ml.KServeOptions{Features: 6, Outputs: 1}, 0, 0, "has 2 inputs"},
		{"string input", meta([]kserveTensor{{"x", "BYTES", []int64{-1, 6}}}), ml.KServeOptions{Features: 6, Outputs: 1}, 0, 0, "FP32 or FP64 features, not BYTES"},
		{"image input", meta([]kserveTensor{{"x", "FP32", []int64{-1, 6, 6}}}), ml.KServeOptions{Features: 6, Outputs: 1}, 0, 0, "declare the input's shape as [-1, features]"},
		{"unknown output", sixFeatures(1), ml.KServeOptions{Output: "proba"}, 0, 0, `no output named "proba"; the model declares predict`},
		{"string output", meta(six, kserveTensor{"y", "BYTES", []int64{-1}}), ml.KServeOptions{}, 0, 0, "not \"BYTES\""},
		{"features unknown", meta(nil), ml.KServeOptions{Outputs: 1}, 0, 0, "number of features is unknown"},
		{"outputs unknown", meta(six), ml.KServeOptions{}, 0, 0, "number of outputs is unknown"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeV2{meta: tt.meta}
			httpURL, _ := serveHTTP(t, f)
			for _, url := range []string{httpURL, serveGRPC(t, f)} {
				opts := tt.opts
				opts.URL, opts.Model = url, "m"
				m, err := ml.NewKServe(context.Background(), opts)
				if tt.err != "" {
					if err == nil || !strings.Contains(err.Error(), tt.err) {
						t.Fatalf("%s: error %v, want one saying %q", url, err, tt.err)
					}
					if ml.IsRetryable(err) {
						t.Errorf("%s: a metadata mismatch is retryable: %v", url, err)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", url, err)
				}
				if m.NumFeatures() != tt.features || m.NumOutputs() != tt.outputs {
					t.Errorf("%s: %d features, %d outputs; want %d, %d", url, m.NumFeatures(), m.NumOutputs(), tt.features, tt.outputs)
				}
				m.Close()
			}
		})
	}
	t.Run("unknown model", func(t *testing.T) {
		f := &fakeV2{meta: sixFeatures(1)}
		httpURL, _ := serveHTTP(t, f)
		for _, url := range []string{httpURL, serveGRPC(t, f)} {
			_, err := ml.NewKServe(context.Background(), ml.KServeOptions{URL: url, Model: "nope"})
			var ke *ml.KServeError
			if !errors.As(err, &ke) || ke.Retryable() || !strings.Contains(err.Error(), "not found") {
				t.Errorf("%s: error %v, want a non-retryable not found", url, err)
			}
		}
	})
	for _, url := range []string{"", "localhost:8080", "ftp://h:1", "grpc://h:1/path"} {
		if _, err := ml.NewKServe(context.Background(), ml.KServeOptions{URL: url, Model: "m"}); err == nil {
			t.Errorf("URL %q accepted", url)
		}
	}
}

// TestKServeReusesHTTPConnections checks that concurrent callers share a few
// kept-alive connections rather than opening one per request.
func TestKServeReusesHTTPConnections(t *testing.T) {
	f := &fakeV2{meta: sixFeatures(1)}
	url, conns := serveHTTP(t, f)
	m := newKServe(t, url, ml.KServeOptions{MaxIdleConns: 4})
	const callers, calls = 4, 50
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for c := 0; c < callers; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			row := []float32{float32(c), 1, 1, 1, 1, 1}
			out := make([]float64, 1)
			for i := 0; i < calls; i++ {
				if err := m.Predict(context.Background(), row, out); err != nil {
					errs <- err
					return
				}
				if out[0] != float64(c+5) {
					errs <- fmt.Errorf("caller %d got %v, want %d", c, out[0], c+5)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	// One per caller would do, the metadata's being reused. The transport
	// may dial a spare when a request starts just before another's
	// connection goes back to the pool, so allow for a few; without reuse
	// every request would open one.
	if n := conns.Load(); n > 2*callers {
		t.Fatalf("%d requests opened %d connections, want at most %d", callers*calls+1, n, 2*callers)
	} else {
		t.Logf("%d requests over %d connections", callers*calls+1, n)
	}
}

// TestKServeCarriesNaN checks that a missing value reaches the server as
// one (JSON null over HTTP, the float's bits over gRPC), and that a null
// score comes back as NaN.
func TestKServeCarriesNaN(t *testing.T) {
	nan := float32(math.NaN())
	rows := []float32{
		1, nan, 3, 4, 5, 6,
		nan, nan, 0.1, 0, -2.5, 1e-7,
	}
	f := &fakeV2{meta: sixFeatures(2)}
	httpURL, _ := serveHTTP(t, f)
	for _, url := range []string{httpURL, serveGRPC(t, f)} {
		m := newKServe(t, url, ml.KServeOptions{})
		out := make([]float64, 4)
		if err := m.Predict(context.Background(), rows, out); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if got := f.nans(); fmt.Sprint(got) != "[1 6 7]" {
			t.Errorf("%s: the server saw NaN at %v, want [1 6 7]", url, got)
		}
		// Features travel as float32, so the sums are of float32 values.
		want := []float64{19, 20, float64(float32(0.1)) - 2.5 + float64(float32(1e-7)), float64(float32(0.1)) - 2.5 + float64(float32(1e-7)) + 1}
		for i := range want {
			if math.Abs(out[i]-want[i]) > 1e-12 {
				t.Errorf("%s: score %d = %v, want %v", url, i, out[i], want[i])
			}
		}
	}

	f = &fakeV2{meta: kserveMeta{Name: "m", Inputs: sixFeatures(1).Inputs, Outputs: []kserveTensor{{"nan", "FP64", []int64{-1, 1}}}}}
	url, _ := serveHTTP(t, f)
	m := newKServe(t, url, ml.KServeOptions{})
	out := make([]float64, 1)
	if err := m.Predict(context.Background(), rows[:6], out); err != nil {
		t.Fatal(err)
	}
	if !math.IsNaN(out[0]) {
		t.Fatalf("a null score read as %v, want NaN", out[0])
	}
}

func TestKServeRejectsWhatItCannotSendOrRead(t *testing.T) {
	f := &fakeV2{meta: sixFeatures(1)}
	httpURL, _ := serveHTTP(t, f)
	grpcURL := serveGRPC(t, f)
	mh := newKServe(t, httpURL, ml.KServeOptions{})
	mg := newKServe(t, grpcURL, ml.KServeOptions{})
	inf := []float32{1, 2, float32(math.Inf(1)), 4, 5, 6}
	if err := mh.Predict(context.Background(), inf, make([]float64, 1)); err == nil || ml.IsRetryable(err) || !strings.Contains(err.Error(), "JSON cannot carry") {
		t.Errorf("+Inf over JSON: error %v, want a non-retryable one naming the problem", err)
	}
	if err := mg.Predict(context.Background(), inf, make([]float64, 1)); err != nil {
		t.Errorf("+Inf over gRPC: %v", err)
	}
	for _, m := range []*ml.KServe{mh, mg} {
		if err := m.Predict(context.Background(), make([]float32, 5), make([]float64, 1)); err == nil {
			t.Error("5 features for one row of 6 accepted")
		}
		if err := m.Predict(context.Background(), nil, nil); err != nil {
			t.Errorf("no rows: %v", err)
		}
	}
	f.shape = []int64{2, 1} // the answer claims two rows
	for _, m := range []*ml.KServe{mh, mg} {
		err := m.Predict(context.Background(), make([]float32, 6), make([]float64, 1))
		if err == nil || ml.IsRetryable(err) || !strings.Contains(err.Error(), "has shape [2 1] for 1 rows") {
			t.Errorf("misshapen answer: error %v, want a non-retryable one about the shape", err)
		}
	}
}

// BenchmarkKServe scores the held-out rows of the binary XGBoost model on the
// real MLServer that scripts/with-mlserver.sh starts, one row per request
// and in batches, over HTTP and gRPC, with one request at a time and with
// four in flight (a Batcher's default for remote models):
//
//	scripts/with-mlserver.sh go test ./ml -run '^$' -bench KServe -benchtime 3s
func BenchmarkKServe(b *testing.B) {
	urls := map[string]string{"http": os.Getenv("STREAMER_MLSERVER_HTTP"), "grpc": os.Getenv("STREAMER_MLSERVER_GRPC")}
	if urls["http"] == "" || urls["grpc"] == "" {
		b.Skip("set STREAMER_MLSERVER_HTTP and STREAMER_MLSERVER_GRPC (scripts/with-mlserver.sh does)")
	}
	rows := expectedRows(b, "testdata/xgb-binary-expected.json")
	total := len(rows) / 6
	for _, proto := range []string{"http", "grpc"} {
		m, err := ml.NewKServe(context.Background(), ml.KServeOptions{URL: urls[proto], Model: "xgb-binary", Features: 6, Outputs: 1, MaxIdleConns: 8})
		if err != nil {
			b.Fatal(err)
		}
		for _, batch := range []int{1, 64, 256} {
			for _, inflight := range []int{1, 4} {
				b.Run(fmt.Sprintf("%s/batch=%d/inflight=%d", proto, batch, inflight), func(b *testing.B) {
					var next atomic.Int64
					var wg sync.WaitGroup
					b.ResetTimer()
					for w := 0; w < inflight; w++ {
						wg.Add(1)
						go func() {
							defer wg.Done()
							out := make([]float64, batch)
							for {
								i := int(next.Add(1)) - 1
								if i >= b.N {
									return
								}
								start := (i * batch) % (total - batch + 1)
								if err := m.Predict(context.Background(), rows[start*6:(start+batch)*6], out); err != nil {
									b.Error(err)
									return
								}
							}
						}()
					}
					wg.Wait()
					b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "records/s")
					b.ReportMetric(float64(b.Elapsed().Microseconds())*float64(inflight)/float64(b.N), "us/request")
				})
			}
		}
		m.Close()
	}
}

// expectedRows reads the held-out features of an *-expected.json file,
// row-major, null as NaN.
func expectedRows(tb testing.TB, path string) []float32 {
	tb.Helper()
	var want struct {
		Features [][]*float64 `json:"features"`
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	if err := json.Unmarshal(b, &want); err != nil {
		tb.Fatal(err)
	}
	var rows []float32
	for _, r := range want.Features {
		for _, v := range r {
			if v == nil {
				rows = append(rows, float32(math.NaN()))
			} else {
				rows = append(rows, float32(*v))
			}
		}
	}
	return rows
}

// TestKServeToken: the bearer token goes with every request, over HTTP and
// gRPC, and is asked for each time (a rotated token is used at once); a
// server that refuses it is unavailable (retryable), not the records' fault.
func TestKServeToken(t *testing.T) {
	row := []float32{1, 2, 3, 4, 5, 6}
	var want atomic.Value
	want.Store("Bearer t1")
	f := &fakeV2{meta: sixFeatures(1)}
	check := func(got string) bool { return got == want.Load().(string) }
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !check(r.Header.Get("Authorization")) {
			http.Error(w, "fake failure: bad token", http.StatusUnauthorized)
			return
		}
		f.ServeHTTP(w, r)
	}))
	t.Cleanup(hs.Close)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		md, _ := metadata.FromIncomingContext(ctx)
		if a := md.Get("authorization"); len(a) != 1 || !check(a[0]) {
			return nil, status.Error(codes.Unauthenticated, "fake failure: bad token")
		}
		return h(ctx, req)
	}))
	pb.RegisterGRPCInferenceServiceServer(gs, f)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	tok := "t1"
	src := func() (string, error) { return tok, nil }
	for _, url := range []string{hs.URL, "grpc://" + lis.Addr().String()} {
		tok = "t1"
		want.Store("Bearer t1")
		m := newKServe(t, url, ml.KServeOptions{Features: 6, Outputs: 1, Token: src})
		if err := m.Predict(context.Background(), row, make([]float64, 1)); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		tok = "t2" // rotated on both sides
		want.Store("Bearer t2")
		if err := m.Predict(context.Background(), row, make([]float64, 1)); err != nil {
			t.Errorf("%s after rotation: %v", url, err)
		}
		want.Store("Bearer t3") // the server wants another: refused, the replica pauses
		err := m.Predict(context.Background(), row, make([]float64, 1))
		var ke *ml.KServeError
		if err == nil || !errors.As(err, &ke) || !ke.Unavailable() || strings.Contains(err.Error(), "t2") {
			t.Errorf("%s: refused token: %v, want an unavailable server, never the token in the error", url, err)
		}
	}
}
