package ml

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"
)

// kserveHTTP speaks the REST API of the Open Inference Protocol.
type kserveHTTP struct {
	spec   *kserveSpec
	client *http.Client
	bufs   sync.Pool // *bytes.Buffer, request and response bodies
}

func newKServeHTTP(spec *kserveSpec, maxIdle int) *kserveHTTP {
	if maxIdle <= 0 {
		maxIdle = 16
	}
	// One transport per model, so that its idle connections are kept for
	// this server alone and every request finds a warm one.
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{
			Timeout:   5 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          maxIdle,
		MaxIdleConnsPerHost:   maxIdle,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		// Scores are small and the server is usually close: gzip would
		// cost both ends CPU for little.
		DisableCompression: true,
		ForceAttemptHTTP2:  true,
	}
	return &kserveHTTP{spec: spec, client: &http.Client{Transport: tr}}
}

// path is the model's URL with a suffix ("" or "/infer").
func (h *kserveHTTP) path(suffix string) string {
	u := *h.spec.url
	p := strings.TrimSuffix(u.Path, "/") + "/v2/models/" + url.PathEscape(h.spec.model)
	if h.spec.version != "" {
		p += "/versions/" + url.PathEscape(h.spec.version)
	}
	u.Path, u.RawPath = "", ""
	return u.String() + p + suffix
}

func (h *kserveHTTP) getBuf() *bytes.Buffer {
	if b, ok := h.bufs.Get().(*bytes.Buffer); ok {
		b.Reset()
		return b
	}
	return new(bytes.Buffer)
}

// do sends a request and reads the whole answer into resp, so the
// connection goes back to the pool. A non-2xx status is a *KServeError.
func (h *kserveHTTP) do(ctx context.Context, op, method, target string, body []byte, resp *bytes.Buffer) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err == nil && h.spec.token != nil {
		var tok string
		if tok, err = h.spec.token(); err == nil {
			req.Header.Set("Authorization", "Bearer "+tok)
		} else {
			err = fmt.Errorf("token: %w", err)
		}
	}
	if err != nil {
		return &KServeError{Model: h.spec.model, Op: op, Err: err}
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	r, err := h.client.Do(req)
	if err != nil {
		return h.spec.transportError(ctx, op, err)
	}
	_, err = resp.ReadFrom(r.Body)
	r.Body.Close()
	if err != nil {
		return h.spec.transportError(ctx, op, fmt.Errorf("reading the answer: %w", err))
	}
	if r.StatusCode/100 != 2 {
		return &KServeError{
			Model:       h.spec.model,
			Op:          op,
			HTTPStatus:  r.StatusCode,
			Err:         errors.New(httpErrorMessage(resp.Bytes())),
			retry:       retryableHTTP(r.StatusCode),
			unavailable: !retryableHTTP(r.StatusCode) && !rowsHTTP(r.StatusCode),
		}
	}
	return nil
}

// httpErrorMessage is the server's message: the "error" of an Open
// Inference Protocol error body, else the start of the body.
func httpErrorMessage(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		return e.Error
	}
	const max = 300
	s := strings.TrimSpace(string(body))
	if len(s) > max {
		s = s[:max] + "..."
	}
	if s == "" {
		return "empty answer"
	}
	return s
}

func (h *kserveHTTP) metadata(ctx context.Context) (*kserveMetadata, error) {
	if h.spec.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, h.spec.timeout, errKServeTimeout)
		defer cancel()
	}
	buf := h.getBuf()
	defer h.bufs.Put(buf)
	if err := h.do(ctx, "metadata", http.MethodGet, h.path(""), nil, buf); err != nil {
		return nil, err
	}
	var md kserveMetadata
	if err := json.Unmarshal(buf.Bytes(), &md); err != nil {
		return nil, &KServeError{Model: h.spec.model, Op: "metadata", Err: fmt.Errorf("the answer is not model metadata (is %s an Open Inference Protocol server?): %v", h.spec.url.Redacted(), err)}
	}
	return &md, nil
}

// httpInferResponse is the part of an inference answer that is read. Data
// stays raw and is parsed by parseKServeData, which reads null as NaN.
type httpInferResponse struct {
	Outputs []struct {
		Name     string          `json:"name"`
		Datatype string          `json:"datatype"`
		Shape    []int64         `json:"shape"`
		Data     json.RawMessage `json:"data"`
	} `json:"outputs"`
}

func (h *kserveHTTP) infer(ctx context.Context, rows []float32, n int, out []float64) error {
	s := h.spec
	if err := checkFinite(s.model, rows, s.features); err != nil {
		return err
	}
	req := h.getBuf()
	defer h.bufs.Put(req)
	h.encode(req, rows, n)
	resp := h.getBuf()
	defer h.bufs.Put(resp)
	if err := h.do(ctx, "infer", http.MethodPost, h.path("/infer"), req.Bytes(), resp); err != nil {
		return err
	}
	var ans httpInferResponse
	if err := json.Unmarshal(resp.Bytes(), &ans); err != nil {
		return s.answerError("the answer is not an inference response: %v", err)
	}
	if len(ans.Outputs) == 0 {
		return s.answerError("the answer holds no outputs")
	}
	o := &ans.Outputs[0]
	if s.output != "" {
		o = nil
		for i := range ans.Outputs {
			if ans.Outputs[i].Name == s.output {
				o = &ans.Outputs[i]
				break
			}
		}
		if o == nil {
			return s.answerError("the answer holds no output %q", s.output)
		}
	}
	if err := checkKServeDatatype(o.Datatype); err != nil {
		return s.answerError("output %q: %v", o.Name, err)
	}
	got, err := parseKServeData(o.Data, out)
	if err != nil {
		return s.answerError("output %q: %v", o.Name, err)
	}
	return s.checkOutputShape(o.Name, o.Shape, n, got)
}

// encode writes the request: one [n, features] tensor, NaN as null.
func (h *kserveHTTP) encode(b *bytes.Buffer, rows []float32, n int) {
	s := h.spec
	name, _ := json.Marshal(s.input)
	b.WriteString(`{"inputs":[{"name":`)
	b.Write(name)
	b.WriteString(`,"datatype":"`)
	b.WriteString(s.inputType)
	b.WriteString(`","shape":[`)
	b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(n), 10))
	b.WriteByte(',')
	b.Write(strconv.AppendInt(b.AvailableBuffer(), int64(s.features), 10))
	b.WriteString(`],"data":[`)
	bits := 32
	if s.inputType == "FP64" {
		bits = 64
	}
	for i, v := range rows {
		if i > 0 {
			b.WriteByte(',')
		}
		if v != v {
			b.WriteString("null")
			continue
		}
		// The shortest decimal that reads back as the same float32.
		b.Write(strconv.AppendFloat(b.AvailableBuffer(), float64(v), 'g', -1, bits))
	}
	b.WriteString(`]}]`)
	if s.output != "" {
		name, _ := json.Marshal(s.output)
		b.WriteString(`,"outputs":[{"name":`)
		b.Write(name)
		b.WriteString(`}]`)
	}
	b.WriteByte('}')
}

// parseKServeData reads a JSON tensor's data, flat or nested, into out:
// numbers, null as NaN, and returns how many values it holds. It reads no
// more than len(out) of them; the caller checks the count.
func parseKServeData(data []byte, out []float64) (int, error) {
	n := 0
	depth := 0
	for i := 0; i < len(data); {
		c := data[i]
		switch c {
		case ' ', '\t', '\n', '\r', ',':
			i++
			continue
		case '[':
			depth++
			i++
			continue
		case ']':
			depth--
			i++
			continue
		}
		if depth == 0 {
			return n, errors.New("data is not an array")
		}
		j := i
		for j < len(data) && data[j] != ',' && data[j] != ']' && data[j] != ' ' && data[j] != '\n' && data[j] != '\r' && data[j] != '\t' {
			j++
		}
		tok := data[i:j]
		var v float64
		switch string(tok) {
		case "null":
			v = math.NaN()
		default:
			var err error
			if v, err = strconv.ParseFloat(string(tok), 64); err != nil {
				return n, fmt.Errorf("value %q is not a number", tok)
			}
		}
		if n < len(out) {
			out[n] = v
		}
		n++
		i = j
	}
	if depth != 0 {
		return n, errors.New("data has unbalanced brackets")
	}
	return n, nil
}

func (h *kserveHTTP) close() error {
	h.client.CloseIdleConnections()
	return nil
}
