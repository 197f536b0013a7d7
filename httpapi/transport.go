package httpapi

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/nola"
)

// Header names shared by both sides.
const (
	// HeaderTimeout carries the time the callee has, in milliseconds:
	// the caller's remaining time less an answer margin (an eighth, at
	// most 250ms; see setTimeout).
	HeaderTimeout = "Nola-Timeout-Ms"
	// HeaderRetryable mirrors the error body's retryable flag.
	HeaderRetryable = "Nola-Retryable"
	// HeaderCreationArgs carries, base64 (standard, padded), the creation
	// arguments of a public invoke that may create its actor.
	HeaderCreationArgs = "Nola-Creation-Args"
)

// TransportOptions configure the HTTP transport.
type TransportOptions struct {
	// Token is sent as a bearer token (the cluster's internal token).
	Token string
	// MaxResultBytes bounds response bodies (default 4 MiB + 1).
	MaxResultBytes int
	// TLS configures HTTPS between servers; nil for plain HTTP.
	TLS *tls.Config
}

// Transport is a nola.Transport over HTTP: it sends an invocation to the
// internal endpoint of the server at addr ("http://host:port"), which runs it
// only if it owns the actor.
type Transport struct {
	// rt sends the requests. It is the http.Transport itself rather than
	// an http.Client over it: an internal invoke never redirects, and
	// Client.Do would copy every request's headers and URL (for
	// redirects) and arm its own cancellation on top of the context's
	// (issue 16: ≈5 allocations per forwarded call).
	rt *http.Transport
	// auth is the Authorization header's value (nil without a token),
	// made once rather than per call.
	auth      []string
	maxResult int
	// local short-circuits calls to this process's own server.
	localAddr string
	local     nola.Handler
}

// SetLocal makes calls to addr run h directly, without HTTP: the server
// owning this transport routes calls for its own actors in-process. Call it
// before the transport is used.
func (t *Transport) SetLocal(addr string, h nola.Handler) {
	t.localAddr, t.local = strings.TrimRight(addr, "/"), h
}

var _ nola.Transport = (*Transport)(nil)

// Direct reports whether calls to addr run in process (SetLocal): they
// cannot hang on a paused peer, so the client does not watch their owner.
func (t *Transport) Direct(addr string) bool {
	return t.local != nil && strings.TrimRight(addr, "/") == t.localAddr
}

// NewTransport returns an HTTP transport with connection pooling sized for
// many concurrent calls to few servers.
func NewTransport(opts TransportOptions) *Transport {
	if opts.MaxResultBytes <= 0 {
		opts.MaxResultBytes = 4 << 20
	}
	tr := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
		TLSClientConfig:     opts.TLS,
		ForceAttemptHTTP2:   false,
	}
	t := &Transport{rt: tr, maxResult: opts.MaxResultBytes}
	if opts.Token != "" {
		t.auth = []string{"Bearer " + opts.Token}
	}
	return t
}

// Close releases idle connections.
func (t *Transport) Close() { t.rt.CloseIdleConnections() }

// InternalInvokeURL builds the internal invoke URL for req at addr.
//
// It writes what url.Values.Encode would (keys sorted: chain, delete,
// id, ns, op, type, worker) into one buffer, without the map, the sort
// and a string per pair.
func InternalInvokeURL(addr string, req nola.Request) string {
	var b strings.Builder
	addr = strings.TrimRight(addr, "/")
	b.Grow(len(addr) + len("/v1/internal/invoke?ns=&id=&type=&op=") + len(req.Namespace) + len(req.ActorID) +
		len(req.ActorType) + len(req.Operation) + len(req.Worker) + 16*len(req.Chain))
	b.WriteString(addr)
	b.WriteString("/v1/internal/invoke?")
	sep := false
	param := func(k, v string) {
		if sep {
			b.WriteByte('&')
		}
		sep = true
		b.WriteString(k)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(v))
	}
	for _, c := range req.Chain {
		param("chain", c)
	}
	if req.Delete {
		param("delete", "1")
	}
	if req.Worker == "" {
		param("id", req.ActorID)
	}
	param("ns", req.Namespace)
	param("op", req.Operation)
	if req.Worker != "" {
		param("worker", req.Worker)
	} else {
		param("type", req.ActorType)
	}
	return b.String()
}

// Invoke implements nola.Transport.
func (t *Transport) Invoke(ctx context.Context, addr string, req nola.Request) ([]byte, error) {
	if t.local != nil && strings.TrimRight(addr, "/") == t.localAddr {
		return t.local.HandleInvoke(ctx, req)
	}
	// Whether the request reached a connection: before that, a failure
	// (even the deadline) certainly left it unsent. The trace is in the
	// request's context from the start (WithContext would copy the
	// request).
	st := &sendTrace{}
	st.trace.GotConn = st.gotConn
	st.body.Reset(req.Payload)
	hreq, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, &st.trace), http.MethodPost,
		InternalInvokeURL(addr, req), &st.body)
	if err != nil {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "bad server address " + addr}
	}
	hreq.Header["Content-Type"] = octetStream
	if t.auth != nil {
		hreq.Header["Authorization"] = t.auth
	}
	if ms, ok := timeoutMillis(ctx); ok {
		st.timeout[0] = strconv.FormatInt(ms, 10)
		hreq.Header[HeaderTimeout] = st.timeout[:]
	}
	resp, err := t.rt.RoundTrip(hreq)
	if err != nil {
		return nil, forwardError(ctx, addr, err, st.sent.Load())
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, readError(resp)
	}
	return readSized(resp.Body, resp.ContentLength, t.maxResult)
}

// sendTrace records whether a request got a connection. It also holds
// the request's body reader and timeout header value: one allocation for
// the three.
type sendTrace struct {
	sent    atomic.Bool
	trace   httptrace.ClientTrace
	body    bytes.Reader
	timeout [1]string
}

func (s *sendTrace) gotConn(httptrace.GotConnInfo) { s.sent.Store(true) }

// setTimeout tells the server how long it has: the caller's remaining time
// less an answer margin (forwardMargin), so that a server that cannot
// finish — because the owner it forwarded to is paused, say — answers
// with what it knows before its caller gives up on it. Without the margin
// both deadlines fall together, and the caller reports only that the
// server it called did not answer, never which server further on did not.
func setTimeout(ctx context.Context, r *http.Request) {
	if ms, ok := timeoutMillis(ctx); ok {
		r.Header.Set(HeaderTimeout, strconv.FormatInt(ms, 10))
	}
}

// timeoutMillis is the value of the timeout header for ctx (setTimeout);
// ok is false if ctx has no deadline.
func timeoutMillis(ctx context.Context) (ms int64, ok bool) {
	d, ok := ctx.Deadline()
	if !ok {
		return 0, false
	}
	left := time.Until(d)
	return max((left - forwardMargin(left)).Milliseconds(), 1), true
}

// forwardMargin is the part of a caller's remaining time it keeps for the
// answer to travel back: an eighth, at most 250ms.
func forwardMargin(left time.Duration) time.Duration {
	return min(left/8, 250*time.Millisecond)
}

// readSized is readBody for a body that declares its length (n ≥ 0): one
// buffer of that size if it is within the limit (and maxSizedBody),
// where io.ReadAll starts at 512 bytes and grows.
func readSized(r io.Reader, n int64, limit int) ([]byte, error) {
	if n < 0 || n > int64(min(limit, maxSizedBody)) {
		return readBody(r, limit)
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r, b); err != nil {
		return nil, &nola.Error{Code: nola.CodeTimeout, Message: "reading the result: " + err.Error()}
	}
	return b, nil
}

func readBody(r io.Reader, limit int) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, int64(limit)+1))
	if err != nil {
		return nil, &nola.Error{Code: nola.CodeTimeout, Message: "reading the result: " + err.Error()}
	}
	if len(b) > limit {
		return nil, &nola.Error{Code: nola.CodeTooLarge, Message: fmt.Sprintf("result exceeds %d bytes", limit)}
	}
	return b, nil
}

// transportError classifies a failed HTTP exchange. A request that never
// left (the connection could not be made, or the deadline passed before it
// had one) certainly did not run: it is retryable. Anything later has an
// unknown outcome.
func transportError(ctx context.Context, addr string, err error) error {
	return forwardError(ctx, addr, err, true)
}

// forwardError is transportError knowing whether the request got a
// connection (sent=false: it certainly did not leave).
func forwardError(ctx context.Context, addr string, err error, sent bool) error {
	if ctx.Err() != nil {
		if !sent {
			return &nola.Error{Code: nola.CodeTimeout, Retryable: true,
				Message: "deadline passed before the request to " + addr + " was sent; it did not run"}
		}
		return &nola.Error{Code: nola.CodeTimeout, Message: "no answer from " + addr + " before the deadline"}
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return &nola.Error{Code: nola.CodeUnavailable, Retryable: true, Message: "cannot connect to " + addr}
	}
	return &nola.Error{Code: nola.CodeTimeout, Message: "connection to " + addr + " failed mid-request; outcome unknown"}
}
