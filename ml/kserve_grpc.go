package ml

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/streamerio/streamer/ml/internal/inferencepb"
)

// kserveGRPC speaks inference.GRPCInferenceService over one connection,
// which gRPC multiplexes between concurrent requests.
type kserveGRPC struct {
	spec   *kserveSpec
	conn   *grpc.ClientConn
	client pb.GRPCInferenceServiceClient
	bufs   sync.Pool // *[]byte, raw input contents
}

func newKServeGRPC(spec *kserveSpec) (*kserveGRPC, error) {
	creds := insecure.NewCredentials()
	if spec.url.Scheme == "grpcs" {
		creds = credentials.NewClientTLSFromCert(nil, "")
	}
	// NewClient does not connect: the metadata request does, and reports
	// an unreachable server.
	conn, err := grpc.NewClient(spec.url.Host,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)),
		grpc.WithUnaryInterceptor(bearer(spec.token)),
	)
	if err != nil {
		return nil, fmt.Errorf("kserve model %q: gRPC client for %s: %w", spec.model, spec.url.Host, err)
	}
	return &kserveGRPC{spec: spec, conn: conn, client: pb.NewGRPCInferenceServiceClient(conn)}, nil
}

// callError classifies a failed call.
func (g *kserveGRPC) callError(ctx context.Context, op string, err error) error {
	if d, ok := ctx.Deadline(); ok && !d.After(time.Now()) {
		// gRPC reports DeadlineExceeded once the deadline has passed, which
		// can be a moment before the context's own timer marks it done;
		// wait for it (it is due) so the error names the right cause.
		<-ctx.Done()
	}
	if ctx.Err() != nil {
		return g.spec.transportError(ctx, op, err)
	}
	st, ok := status.FromError(err)
	if !ok {
		return g.spec.transportError(ctx, op, err)
	}
	return &KServeError{
		Model:       g.spec.model,
		Op:          op,
		GRPCCode:    st.Code(),
		Err:         fmt.Errorf("%s", st.Message()),
		retry:       retryableGRPC(st.Code()),
		unavailable: !retryableGRPC(st.Code()) && !rowsGRPC(st.Code()),
	}
}

func (g *kserveGRPC) metadata(ctx context.Context) (*kserveMetadata, error) {
	if g.spec.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, g.spec.timeout, errKServeTimeout)
		defer cancel()
	}
	r, err := g.client.ModelMetadata(ctx, &pb.ModelMetadataRequest{Name: g.spec.model, Version: g.spec.version})
	if err != nil {
		return nil, g.callError(ctx, "metadata", err)
	}
	md := &kserveMetadata{Name: r.GetName(), Versions: r.GetVersions(), Platform: r.GetPlatform()}
	for _, t := range r.GetInputs() {
		md.Inputs = append(md.Inputs, kserveTensorMeta{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	for _, t := range r.GetOutputs() {
		md.Outputs = append(md.Outputs, kserveTensorMeta{Name: t.GetName(), Datatype: t.GetDatatype(), Shape: t.GetShape()})
	}
	return md, nil
}

func (g *kserveGRPC) infer(ctx context.Context, rows []float32, n int, out []float64) error {
	s := g.spec
	bp, _ := g.bufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer g.bufs.Put(bp)
	raw := (*bp)[:0]
	if s.inputType == "FP64" {
		for _, v := range rows {
			raw = binary.LittleEndian.AppendUint64(raw, math.Float64bits(float64(v)))
		}
	} else {
		for _, v := range rows {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(v))
		}
	}
	*bp = raw
	req := &pb.ModelInferRequest{
		ModelName:    s.model,
		ModelVersion: s.version,
		Inputs: []*pb.ModelInferRequest_InferInputTensor{{
			Name:     s.input,
			Datatype: s.inputType,
			Shape:    []int64{int64(n), int64(s.features)},
		}},
		RawInputContents: [][]byte{raw},
	}
	if s.output != "" {
		req.Outputs = []*pb.ModelInferRequest_InferRequestedOutputTensor{{Name: s.output}}
	}
	resp, err := g.client.ModelInfer(ctx, req)
	if err != nil {
		return g.callError(ctx, "infer", err)
	}
	outs := resp.GetOutputs()
	if len(outs) == 0 {
		return s.answerError("the answer holds no outputs")
	}
	idx := 0
	if s.output != "" {
		idx = -1
		for i, o := range outs {
			if o.GetName() == s.output {
				idx = i
				break
			}
		}
		if idx < 0 {
			return s.answerError("the answer holds no output %q", s.output)
		}
	}
	o := outs[idx]
	if err := checkKServeDatatype(o.GetDatatype()); err != nil {
		return s.answerError("output %q: %v", o.GetName(), err)
	}
	var got int
	if rawOut := resp.GetRawOutputContents(); len(rawOut) > 0 {
		if idx >= len(rawOut) {
			return s.answerError("output %q has no raw contents (%d for %d outputs)", o.GetName(), len(rawOut), len(outs))
		}
		if got, err = readRawTensor(o.GetDatatype(), rawOut[idx], out); err != nil {
			return s.answerError("output %q: %v", o.GetName(), err)
		}
	} else {
		got = readTensorContents(o.GetDatatype(), o.GetContents(), out)
	}
	return s.checkOutputShape(o.GetName(), o.GetShape(), n, got)
}

// readRawTensor decodes little-endian raw contents into out (as much as
// fits) and returns how many values they hold.
func readRawTensor(datatype string, raw []byte, out []float64) (int, error) {
	size := 4
	if datatype == "FP64" || datatype == "INT64" {
		size = 8
	}
	if len(raw)%size != 0 {
		return 0, fmt.Errorf("%d bytes of raw %s contents", len(raw), datatype)
	}
	n := len(raw) / size
	for i := 0; i < n && i < len(out); i++ {
		b := raw[i*size:]
		switch datatype {
		case "FP32":
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		case "FP64":
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(b))
		case "INT32":
			out[i] = float64(int32(binary.LittleEndian.Uint32(b)))
		case "INT64":
			out[i] = float64(int64(binary.LittleEndian.Uint64(b)))
		}
	}
	return n, nil
}

// readTensorContents copies typed contents into out (as much as fits) and
// returns how many values they hold.
func readTensorContents(datatype string, c *pb.InferTensorContents, out []float64) int {
	switch datatype {
	case "FP32":
		v := c.GetFp32Contents()
		for i := 0; i < len(v) && i < len(out); i++ {
			out[i] = float64(v[i])
		}
		return len(v)
	case "FP64":
		v := c.GetFp64Contents()
		copy(out, v)
		return len(v)
	case "INT32":
		v := c.GetIntContents()
		for i := 0; i < len(v) && i < len(out); i++ {
			out[i] = float64(v[i])
		}
		return len(v)
	case "INT64":
		v := c.GetInt64Contents()
		for i := 0; i < len(v) && i < len(out); i++ {
			out[i] = float64(v[i])
		}
		return len(v)
	}
	return 0
}

func (g *kserveGRPC) close() error { return g.conn.Close() }

// bearer adds the token, if any, to every call's authorization metadata.
func bearer(token func() (string, error)) grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		if token != nil {
			tok, err := token()
			if err != nil {
				return status.Errorf(codes.Unauthenticated, "token: %v", err)
			}
			ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+tok)
		}
		return invoker(ctx, method, req, reply, cc, opts...)
	}
}
