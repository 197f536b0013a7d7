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
	"net/netip"
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
	auth []string
	// noTimeout is the header of a call without a deadline, and
	// lastHeader that of the last call with one: see headers.
	noTimeout  http.Header
	lastHeader atomic.Pointer[timeoutHeader]
	maxResult  int
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
	t.noTimeout = t.newHeader(nil)
	return t
}

// timeoutHeader is the request header of internal invokes whose timeout
// header says ms.
type timeoutHeader struct {
	ms int64
	h  http.Header
}

// headers returns the request header of an internal invoke whose timeout
// header says ms (none if hasTimeout is false). Only what the internal
// endpoint reads is sent: no Content-Type (it takes the body as bytes,
// whatever its type) and no User-Agent (an empty one keeps net/http from
// sending its default): each header costs the receiving server a string
// (two for a name it does not know) and its parsing, per call (issue 16).
//
// The map is shared by every call with the same timeout, and so never
// modified once made: net/http's Transport only reads a request's header
// (a RoundTripper must not modify the request), and Invoke hands the
// request to nothing else. Calls forwarded in the same millisecond with
// the same time left share the last call's map instead of making one (a
// map, its storage and the value's string per forwarded call, issue 16):
// under load most single-hop forwards of calls with one timeout do, since
// the left time is the entry's deadline (its timeout header or
// DefaultTimeout) less a few microseconds of routing. Calls whose time
// left differs — several timeouts in use, or actor-to-actor calls made
// partway through an invocation — take turns with the one cached map and
// miss; a miss costs two allocations more than building the header per
// call did.
func (t *Transport) headers(ms int64, hasTimeout bool) http.Header {
	if !hasTimeout {
		return t.noTimeout
	}
	if last := t.lastHeader.Load(); last != nil && last.ms == ms {
		return last.h
	}
	h := t.newHeader([]string{strconv.FormatInt(ms, 10)})
	t.lastHeader.Store(&timeoutHeader{ms: ms, h: h})
	return h
}

// newHeader makes an internal invoke's header, with timeout as the
// timeout header's value unless it is nil.
func (t *Transport) newHeader(timeout []string) http.Header {
	h := make(http.Header, 3)
	h["User-Agent"] = noUserAgent
	if t.auth != nil {
		h["Authorization"] = t.auth
	}
	if timeout != nil {
		h[HeaderTimeout] = timeout
	}
	return h
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
	b.Grow(len(addr) + internalTargetLen(req))
	b.WriteString(addr)
	writeInternalTarget(&b, req)
	return b.String()
}

// internalTarget is the request target (path and query) of
// InternalInvokeURL: the URL less the address.
func internalTarget(req nola.Request) string {
	var b strings.Builder
	b.Grow(internalTargetLen(req))
	writeInternalTarget(&b, req)
	return b.String()
}

// internalTargetLen is about the length of req's internal target (exact
// when nothing needs escaping).
func internalTargetLen(req nola.Request) int {
	return len("/v1/internal/invoke?ns=&id=&type=&op=") + len(req.Namespace) + len(req.ActorID) +
		len(req.ActorType) + len(req.Operation) + len(req.Worker) + 16*len(req.Chain)
}

func writeInternalTarget(b *strings.Builder, req nola.Request) {
	b.WriteString(internalInvokePath + "?")
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
}

const internalInvokePath = "/v1/internal/invoke"

// splitAddr splits a server address of the plain form "http://host:port"
// or "https://…" (a trailing slash allowed) into its scheme and host,
// exactly as url.Parse would; ok is false for any other form (a path,
// user info, an escape, an empty port…), which Invoke then parses — and
// for any address url.Parse rejects (a port that is no number, colons in
// a host outside brackets, brackets around no IPv6 address), so that it
// is a bad request there, not a dial that fails and is retried.
func splitAddr(addr string) (scheme, host string, ok bool) {
	scheme, host, ok = strings.Cut(strings.TrimRight(addr, "/"), "://")
	if !ok || (scheme != "http" && scheme != "https") || host == "" || host[len(host)-1] == ':' {
		return "", "", false
	}
	name, port := host, ""
	if host[0] == '[' {
		// An IPv6 literal, as url.Parse reads one (without a zone,
		// which would be escaped): "[addr]" and an optional port.
		end := strings.LastIndexByte(host, ']')
		if end < 0 {
			return "", "", false
		}
		a, err := netip.ParseAddr(host[1:end])
		if err != nil || a.Is4() || a.Zone() != "" {
			return "", "", false
		}
		name, port = "", host[end+1:]
		if port != "" && port[0] != ':' {
			return "", "", false
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 {
		name, port = host[:i], host[i:]
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-':
		default:
			return "", "", false
		}
	}
	for i := 1; i < len(port); i++ {
		if c := port[i]; c < '0' || c > '9' {
			return "", "", false
		}
	}
	return scheme, host, true
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
	st := &sendState{}
	st.trace.GotConn = st.gotConn
	ms, hasTimeout := timeoutMillis(ctx)
	hreq, err := st.request(httptrace.WithClientTrace(ctx, &st.trace), addr, req, t.headers(ms, hasTimeout))
	if err != nil {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "bad server address " + addr}
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

// noUserAgent is the User-Agent value that has net/http send none.
var noUserAgent = []string{""}

// sendState is what one internal invoke needs beside its request, in
// one allocation: whether the request got a connection (the trace's
// GotConn), the request's body and its URL.
type sendState struct {
	sent    atomic.Bool
	trace   httptrace.ClientTrace
	body    bytes.Reader
	url     url.URL
	payload []byte
}

func (s *sendState) gotConn(httptrace.GotConnInfo) { s.sent.Store(true) }

// request builds req's internal invoke to addr under ctx, with header
// hdr (which it does not modify). For an address
// of the plain form (splitAddr) it is what http.NewRequestWithContext
// would build, less its allocations: the URL is st's, and its request
// target, path and query, is the URL's Opaque, which net/http writes as
// it is (with the query in RawQuery, URL.RequestURI would join the two
// into a new string per request); the body is st's, with a GetBody, as
// NewRequestWithContext gives a bytes.Reader, so that net/http can send
// the request again on another connection when a reused one turns out to
// be closed before anything was written.
func (s *sendState) request(ctx context.Context, addr string, req nola.Request, hdr http.Header) (*http.Request, error) {
	scheme, host, ok := splitAddr(addr)
	if !ok {
		s.body.Reset(req.Payload)
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, InternalInvokeURL(addr, req), &s.body)
		if err == nil {
			hreq.Header = hdr
		}
		return hreq, err
	}
	s.url = url.URL{Scheme: scheme, Host: host, Opaque: internalTarget(req)}
	hreq := &http.Request{
		Method: http.MethodPost, URL: &s.url, Host: host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: hdr,
	}
	if len(req.Payload) > 0 {
		// A bytes.Reader behind io.NopCloser, as NewRequestWithContext
		// makes it: net/http knows it is in memory and writes the
		// headers and the body in one write (any other body type has the
		// headers flushed first: one more syscall per call).
		s.payload = req.Payload
		s.body.Reset(req.Payload)
		hreq.Body, hreq.GetBody, hreq.ContentLength = io.NopCloser(&s.body), s.getBody, int64(len(req.Payload))
	}
	return hreq.WithContext(ctx), nil
}

// getBody is the request's GetBody: the payload from its start.
func (s *sendState) getBody() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(s.payload)), nil
}

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
