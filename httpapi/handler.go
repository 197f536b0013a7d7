package httpapi

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/pprof"
	"net/url"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/wasm/modules"
)

// ModuleStore is what the API needs of the WASM module store.
type ModuleStore interface {
	// Put stores a module; created is false when identical bytes were
	// already stored under id.
	Put(ctx context.Context, ns, id string, wasm []byte) (info ModuleInfo, created bool, err error)
	Get(ctx context.Context, ns, id string) ([]byte, ModuleInfo, error)
	List(ctx context.Context, ns string) ([]ModuleInfo, error)
}

// ModuleStreamer is a ModuleStore that can send a module's bytes as it
// reads them (Modules' store can): a download then holds about one chunk
// of the module rather than all of it. start is called with the module's
// description before the first byte; an error after it means w received
// bytes that must be discarded.
type ModuleStreamer interface {
	Stream(ctx context.Context, ns, id string, start func(ModuleInfo), w io.Writer) error
}

// ModuleDeleter is a ModuleStore that can delete modules (Modules' store
// can): DELETE /v1/ns/{ns}/modules/{id} answers 405 without it. A module
// whose type actors still have is refused (409, code conflict).
type ModuleDeleter interface {
	Delete(ctx context.Context, ns, id string) (ModuleInfo, error)
}

// ModuleInfo describes a stored module.
type ModuleInfo struct {
	Namespace string `json:"namespace"`
	ID        string `json:"id"`
	Size      int    `json:"size"`
	SHA256    string `json:"sha256"`
}

// Options configure a Handler.
type Options struct {
	// AdminToken, if set, is required (as "Authorization: Bearer …") on
	// every call; it grants every namespace, the cluster view and the
	// internal endpoint (servers send it to each other).
	AdminToken string
	// NamespaceTokens maps a token to the one namespace it grants. Any
	// namespace token turns authentication on, with or without AdminToken;
	// without one, the admin endpoints (and so forwarding between servers)
	// are closed to everyone.
	NamespaceTokens map[string]string
	// Modules serves the /modules endpoints (nil: 404).
	Modules ModuleStore
	// Metrics is the registry /metrics exposes (nil: no /metrics).
	Metrics *prometheus.Registry
	// Pprof mounts /debug/pprof/.
	Pprof bool
	// DefaultTimeout bounds a call without a timeout header (default 30s);
	// MaxTimeout caps the header (default 5m).
	DefaultTimeout, MaxTimeout time.Duration
	// MaxModuleBytes bounds module uploads (default 16 MiB).
	MaxModuleBytes int
	// WriteTimeout bounds the writing of one response, from its first
	// byte (default 60s): a client that stops reading is cut off then,
	// and releases what its response holds. /debug/pprof/ is exempt (a
	// trace streams for as long as asked).
	WriteTimeout time.Duration
	// MaxModuleDownloads bounds the module downloads served at once
	// (default 4): each holds its module's bytes until the client has
	// read them. Others wait, within their deadline.
	MaxModuleDownloads int
	// MaxScanBytes bounds the size of one KV scan page (default 4 MiB;
	// a page holds at least one entry, however large).
	MaxScanBytes int
	// Internal, if set, serves the internal (server-to-server) endpoint
	// in place of the server's HandleInvoke. A store-less server's router
	// (package storeless) is one: a call forwarded to it is placed and run
	// here, whatever this server's registry says.
	Internal nola.Handler
	Logger   *slog.Logger
}

// Handler serves the /v1 API of one nola server.
type Handler struct {
	srv  *nola.Server
	opts Options
	mux  *http.ServeMux
	met  *metrics
	log  *slog.Logger
	// downloads holds a token per module download in progress.
	downloads chan struct{}
}

// NewHandler returns the HTTP API of srv.
func NewHandler(srv *nola.Server, opts Options) *Handler {
	if opts.DefaultTimeout <= 0 {
		opts.DefaultTimeout = 30 * time.Second
	}
	if opts.MaxTimeout <= 0 {
		opts.MaxTimeout = 5 * time.Minute
	}
	if opts.MaxModuleBytes <= 0 {
		opts.MaxModuleBytes = 16 << 20
	}
	if opts.WriteTimeout <= 0 {
		opts.WriteTimeout = 60 * time.Second
	}
	if opts.MaxScanBytes <= 0 {
		opts.MaxScanBytes = 4 << 20
	}
	if opts.MaxModuleDownloads <= 0 {
		opts.MaxModuleDownloads = 4
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	h := &Handler{srv: srv, opts: opts, mux: http.NewServeMux(), log: opts.Logger,
		downloads: make(chan struct{}, opts.MaxModuleDownloads)}
	if opts.Metrics != nil {
		h.met = newMetrics(opts.Metrics, srv)
	}
	m := h.mux
	// ServeHTTP routes the two call endpoints itself (invokeRoute) when
	// their paths are in canonical form; the mux serves every other form.
	m.HandleFunc("POST /v1/internal/invoke", h.admin(func(w http.ResponseWriter, r *http.Request) { h.internalInvoke(w, r, nil) }))
	m.HandleFunc("POST /v1/ns/{ns}/actors/{id}/invoke/{op}", h.scoped(func(w http.ResponseWriter, r *http.Request) {
		h.invoke(w, r, nil, r.PathValue("ns"), r.PathValue("id"), r.PathValue("op"))
	}))
	m.HandleFunc("POST /v1/ns/{ns}/actors/{id}", h.scoped(h.createActor))
	m.HandleFunc("DELETE /v1/ns/{ns}/actors/{id}", h.scoped(h.deleteActor))
	m.HandleFunc("POST /v1/ns/{ns}/workers/{type}/{op}", h.scoped(h.callWorker))
	m.HandleFunc("GET /v1/ns/{ns}/actors", h.scoped(h.listActors))
	m.HandleFunc("GET /v1/ns/{ns}/actors/{id}/kv", h.scoped(h.scanKV))
	m.HandleFunc("GET /v1/ns/{ns}/actors/{id}/kv/{key...}", h.scoped(h.getKV))
	m.HandleFunc("PUT /v1/ns/{ns}/modules/{id}", h.scoped(h.putModule))
	m.HandleFunc("GET /v1/ns/{ns}/modules/{id}", h.scoped(h.getModule))
	if _, ok := opts.Modules.(ModuleDeleter); ok {
		m.HandleFunc("DELETE /v1/ns/{ns}/modules/{id}", h.scoped(h.deleteModule))
	}
	m.HandleFunc("GET /v1/ns/{ns}/modules", h.scoped(h.listModules))
	m.HandleFunc("GET /v1/cluster", h.admin(h.cluster))
	m.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	m.HandleFunc("GET /readyz", h.ready)
	// Metrics and profiles need the admin token when one is set (the
	// process's command line, in /debug/pprof/cmdline, may hold it);
	// /healthz and /readyz stay open for orchestrators.
	if opts.Metrics != nil {
		m.HandleFunc("GET /metrics", h.admin(promhttp.HandlerFor(opts.Metrics, promhttp.HandlerOpts{}).ServeHTTP))
	}
	if opts.Pprof {
		m.HandleFunc("/debug/pprof/", h.admin(pprof.Index))
		m.HandleFunc("/debug/pprof/cmdline", h.admin(pprof.Cmdline))
		m.HandleFunc("/debug/pprof/profile", h.admin(pprof.Profile))
		m.HandleFunc("/debug/pprof/symbol", h.admin(pprof.Symbol))
		m.HandleFunc("/debug/pprof/trace", h.admin(pprof.Trace))
	}
	m.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if allow := allowedMethods(m, r); len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeCodeError(w, codeMethodNotAllowed, r.Method+" is not allowed on "+r.URL.Path+"; allowed: "+strings.Join(allow, ", "))
			return
		}
		writeCodeError(w, codeNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h
}

// msgNoSuchKey is the message of a KV read of a missing key (the client
// tells it from other not_found answers by it).
const msgNoSuchKey = "no such key"

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost {
		// The call endpoints, without the mux (its match of the invoke
		// pattern allocates the three path values), their response
		// writer and context in one allocation (callState).
		p := r.URL.EscapedPath()
		if p == "/v1/internal/invoke" {
			cs := h.newCallState(w)
			if h.allowAdmin(&cs.bw, r) {
				h.internalInvoke(&cs.bw, r, cs)
			}
			return
		}
		if ns, id, op, ok := invokeRoute(p); ok {
			cs := h.newCallState(w)
			if h.allowNamespace(&cs.bw, r, ns) {
				h.invoke(&cs.bw, r, cs, ns, id, op)
			}
			return
		}
	}
	if !strings.HasPrefix(r.URL.Path, "/") {
		// "*" (or any target that is no path): the mux would answer a bare
		// 400 with no body; every error of the API is an ErrorBody.
		writeCodeError(w, nola.CodeBadRequest, "the request target must be a path")
		return
	}
	if what := emptyName(r.URL.EscapedPath()); what != "" {
		// The mux would redirect to the cleaned path ("//" → "/"), where
		// the request means something else or nothing.
		writeCodeError(w, nola.CodeBadRequest, "empty "+what)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/debug/pprof/") {
		w = &boundedWriter{ResponseWriter: w, rc: *http.NewResponseController(w), timeout: h.opts.WriteTimeout}
	}
	h.mux.ServeHTTP(w, r)
}

// callState is what one call through a call endpoint needs beside the
// request: its response writer and its context, allocated together.
type callState struct {
	bw boundedWriter
	cc callCtx
}

func (h *Handler) newCallState(w http.ResponseWriter) *callState {
	return &callState{bw: boundedWriter{ResponseWriter: w, rc: *http.NewResponseController(w), timeout: h.opts.WriteTimeout}}
}

// invokeRoute matches an escaped path against the public invoke pattern,
// POST /v1/ns/{ns}/actors/{id}/invoke/{op}, as the mux would, but only in
// the form the mux routes without a redirect and never the other way:
// literal segments spelled as in the pattern, no empty, "." or ".."
// segment (which the mux would clean away), no trailing slash (nor a
// segment that unescapes to one). ok is false for every other path, which
// then goes to the mux. The values are unescaped as the mux unescapes
// them (an invalid escape stays as it is).
func invokeRoute(p string) (ns, id, op string, ok bool) {
	rest, ok := strings.CutPrefix(p, "/v1/ns/")
	if !ok {
		return "", "", "", false
	}
	ns, rest, _ = strings.Cut(rest, "/")
	if rest, ok = strings.CutPrefix(rest, "actors/"); !ok {
		return "", "", "", false
	}
	id, rest, _ = strings.Cut(rest, "/")
	if op, ok = strings.CutPrefix(rest, "invoke/"); !ok || strings.IndexByte(op, '/') >= 0 {
		return "", "", "", false
	}
	for _, seg := range [3]string{ns, id, op} {
		if seg == "" || seg == "." || seg == ".." {
			return "", "", "", false
		}
	}
	ns, id, op = pathValue(ns), pathValue(id), pathValue(op)
	if ns == "/" || id == "/" || op == "/" {
		// "%2F": the mux takes a segment that unescapes to "/" for a
		// trailing slash, which no single wildcard matches.
		return "", "", "", false
	}
	return ns, id, op, true
}

// pathValue unescapes a path segment as the mux does for a wildcard's
// value: an invalid escape leaves the segment as it is.
func pathValue(seg string) string {
	if strings.IndexByte(seg, '%') < 0 {
		return seg
	}
	if v, err := url.PathUnescape(seg); err == nil {
		return v
	}
	return seg
}

// emptyName names the empty element of a namespace path
// (/v1/ns/{ns}/actors/{id}/invoke/{op}, /v1/ns/{ns}/modules/{id}, …), or
// returns "" if there is none.
func emptyName(p string) string {
	rest, ok := strings.CutPrefix(p, "/v1/ns/")
	if !ok {
		return ""
	}
	// The first five segments are all that is compared: cut them into an
	// array rather than splitting the path (an allocation per request).
	var segs [5]string
	n := strings.Count(rest, "/") + 1
	for i, tail := 0, rest; i < min(n, len(segs)); i++ {
		segs[i], tail, _ = strings.Cut(tail, "/")
	}
	switch {
	case segs[0] == "":
		return "namespace"
	case n < 3:
		return ""
	case segs[1] == "actors" && segs[2] == "":
		return "actor ID"
	case segs[1] == "modules" && segs[2] == "" && n == 3:
		return "module ID"
	case segs[1] == "actors" && n == 5 && segs[3] == "invoke" && segs[4] == "":
		return "operation"
	case segs[1] == "workers" && segs[2] == "":
		return "worker type"
	case segs[1] == "workers" && n == 4 && segs[3] == "":
		return "operation"
	}
	return ""
}

// boundedWriter arms the connection's write deadline when its response
// starts: a client that does not read cannot hold the handler, and what
// its response pins, beyond WriteTimeout (issue 10, finding 5). net/http
// clears the deadline after each request.
type boundedWriter struct {
	http.ResponseWriter
	rc      http.ResponseController // a value: one allocation per request for both
	timeout time.Duration
	armed   bool
}

func (w *boundedWriter) arm() {
	if !w.armed {
		w.armAt(time.Now())
	}
}

// armAt arms the write deadline from now, a clock reading the caller has
// just taken (a call's end), unless it is armed.
func (w *boundedWriter) armAt(now time.Time) {
	if !w.armed {
		w.armed = true
		_ = w.rc.SetWriteDeadline(now.Add(w.timeout))
	}
}

func (w *boundedWriter) WriteHeader(code int) { w.arm(); w.ResponseWriter.WriteHeader(code) }

func (w *boundedWriter) Write(b []byte) (int, error) {
	w.arm()
	return w.ResponseWriter.Write(b)
}

// Flush keeps streaming responses streaming through the wrapper.
func (w *boundedWriter) Flush() { w.arm(); _ = w.rc.Flush() }

// Unwrap lets http.ResponseController reach the connection.
func (w *boundedWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// allowedMethods lists the methods for which the mux has a route at r's
// path other than the catch-all: the catch-all answers 405 with them, not
// 404, when only the method is wrong.
func allowedMethods(m *http.ServeMux, r *http.Request) []string {
	var allow []string
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		if method == r.Method {
			continue
		}
		probe := &http.Request{Method: method, URL: r.URL, Host: r.Host, Header: http.Header{}}
		if _, pattern := m.Handler(probe); pattern != "" && pattern != "/" {
			allow = append(allow, method)
		}
	}
	return allow
}

// bearer returns the request's bearer token. The scheme is
// case-insensitive (RFC 7235 §2.1): "bearer x" is the token x.
func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimLeft(tok, " ")
}

// knownToken reports whether tok is the admin token or any namespace's.
func (h *Handler) knownToken(tok string) bool {
	known := h.opts.AdminToken != "" && tokenEqual(tok, h.opts.AdminToken)
	for t := range h.opts.NamespaceTokens {
		if tokenEqual(tok, t) {
			known = true
		}
	}
	return known
}

func tokenEqual(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// isAdmin reports whether the request carries the admin token.
func (h *Handler) isAdmin(r *http.Request) bool {
	return h.opts.AdminToken != "" && tokenEqual(bearer(r), h.opts.AdminToken)
}

func (h *Handler) authRequired() bool {
	return h.opts.AdminToken != "" || len(h.opts.NamespaceTokens) > 0
}

// admin guards endpoints that need the admin token.
func (h *Handler) admin(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.allowAdmin(w, r) {
			f(w, r)
		}
	}
}

// allowAdmin reports whether r may use an admin endpoint; if not, it has
// answered the error.
func (h *Handler) allowAdmin(w http.ResponseWriter, r *http.Request) bool {
	if !h.authRequired() || h.isAdmin(r) {
		return true
	}
	if tok := bearer(r); tok == "" {
		writeCodeError(w, codeUnauthorized, "missing bearer token")
	} else if !h.knownToken(tok) {
		writeCodeError(w, codeUnauthorized, "unknown token")
	} else {
		writeCodeError(w, codeForbidden, "this token may not use this endpoint")
	}
	return false
}

// scoped guards namespace endpoints: the admin token, or a token of the
// namespace in the path.
func (h *Handler) scoped(f http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if h.allowNamespace(w, r, r.PathValue("ns")) {
			f(w, r)
		}
	}
}

// allowNamespace reports whether r may use namespace ns (the admin token,
// or a token of ns); if not, it has answered the error.
func (h *Handler) allowNamespace(w http.ResponseWriter, r *http.Request, ns string) bool {
	if !h.authRequired() || h.isAdmin(r) {
		return true
	}
	tok := bearer(r)
	if tok == "" {
		writeCodeError(w, codeUnauthorized, "missing bearer token")
		return false
	}
	if !h.knownToken(tok) {
		writeCodeError(w, codeUnauthorized, "unknown token")
		return false
	}
	allowed := false
	for t, tns := range h.opts.NamespaceTokens {
		if tokenEqual(tok, t) && tns == ns {
			allowed = true
		}
	}
	if !allowed {
		writeCodeError(w, codeForbidden, "this token does not grant namespace "+strconv.Quote(ns))
	}
	return allowed
}

// callContext derives the call's context from the timeout header.
func (h *Handler) callContext(r *http.Request) (context.Context, context.CancelFunc, error) {
	d, err := h.callTimeout(r)
	if err != nil {
		return nil, nil, err
	}
	cc := newCallCtx(r.Context(), d)
	return cc, cc.release, nil
}

// callTimeout is the call's time: the timeout header's (capped at
// MaxTimeout), or DefaultTimeout without one.
func (h *Handler) callTimeout(r *http.Request) (time.Duration, error) {
	d := h.opts.DefaultTimeout
	if v := r.Header.Get(HeaderTimeout); v != "" {
		ms, err := strconv.ParseInt(v, 10, 64)
		if errors.Is(err, strconv.ErrRange) && v[0] != '-' {
			ms, err = math.MaxInt64, nil // capped below, as documented
		}
		if err != nil || ms <= 0 {
			return 0, &nola.Error{Code: nola.CodeBadRequest, Message: HeaderTimeout + " must be a positive integer (milliseconds)"}
		}
		// Compare in milliseconds first: a huge value would overflow.
		d = h.opts.MaxTimeout
		if ms < h.opts.MaxTimeout.Milliseconds() {
			d = time.Duration(ms) * time.Millisecond
		}
	}
	return d, nil
}

// readPayload reads the request body, at most limit bytes, within the
// call's deadline: a client that stalls mid-body does not hold the
// connection beyond it.
//
// The read deadline is the connection's, not the request's: it must be
// disarmed as soon as the body is read. Once the body is read, net/http
// reads on in the background to notice the client going away; if that
// read fails on our deadline (a call that runs past it), net/http cancels
// the connection's context, which every later request on the keep-alive
// connection inherits: they would all answer 504 at once (issue 10,
// finding 2).
func (h *Handler) readPayload(ctx context.Context, w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	d, armed := ctx.Deadline()
	// 0: nothing to read, nothing to bound. Not every ResponseWriter
	// supports the deadline (then the server's own timeouts apply).
	rc := http.NewResponseController(w)
	armed = armed && r.ContentLength != 0 && rc.SetReadDeadline(d) == nil
	b, err := readRequestBody(w, r, limit)
	if armed && !(err == nil && clearsOnEOF(r)) {
		_ = rc.SetReadDeadline(time.Time{})
		if !time.Now().Before(d) {
			// The deadline may have fired in the background read before
			// it was disarmed: do not keep a connection whose context may
			// be cancelled.
			w.Header().Set("Connection", "close")
		}
	}
	if err == nil {
		return b, nil
	}
	if mbe := (*http.MaxBytesError)(nil); errors.As(err, &mbe) {
		return nil, &nola.Error{Code: nola.CodeTooLarge, Message: fmt.Sprintf("request body exceeds %d bytes", limit)}
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return nil, &nola.Error{Code: nola.CodeTimeout, Message: "the request body did not arrive within the call's deadline"}
	}
	return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "reading the request body: " + err.Error()}
}

// clearsOnEOF reports whether net/http itself cleared the connection's
// read deadline when r's body, now read to its end without error, reached
// it: for HTTP/1 its server body (*http.body, of the type
// http.ReadRequest makes) starts the background read there, and clears
// the deadline first (net/http's connReader.startBackgroundRead), so the
// read cannot fail on it. Clearing it again would cost a second deadline
// update per call. Any other body — HTTP/2's, one behind
// "Expect: 100-continue", one a middleware replaced — is cleared here.
// TestOverrunDoesNotPoisonKeepAlive fails if net/http stops clearing it.
func clearsOnEOF(r *http.Request) bool {
	return r.ProtoMajor == 1 && serverBody != nil && reflect.TypeOf(r.Body) == serverBody
}

// serverBody is the type of net/http's HTTP/1 request bodies.
var serverBody = func() reflect.Type {
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx")))
	if err != nil {
		return nil
	}
	return reflect.TypeOf(r.Body)
}()

// maxSizedBody is the largest declared body readRequestBody allocates whole
// before it arrives: a client that announces a large body and sends
// nothing must not make the server hold that much for it.
const maxSizedBody = 64 << 10

// readRequestBody reads r's body, at most limit bytes. A body of declared length
// within the limit (and maxSizedBody) is read into a buffer of exactly
// that size — one allocation, where io.ReadAll starts at 512 bytes and
// grows; any other goes through http.MaxBytesReader, which also has the
// connection closed after a body over the limit. A body declared over the
// limit is refused before any of it is read: waiting for it would hold the
// connection until the call's deadline only to answer 504.
func readRequestBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, error) {
	if r.ContentLength > int64(limit) {
		// Its bytes stay unread: the connection cannot carry another
		// request.
		w.Header().Set("Connection", "close")
		return nil, &http.MaxBytesError{Limit: int64(limit)}
	}
	if n := r.ContentLength; n >= 0 && n <= int64(min(limit, maxSizedBody)) {
		b := make([]byte, n)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, err
		}
		// net/http's body ends at its Content-Length: nothing is left.
		return b, nil
	}
	return io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
}

func (h *Handler) writeResult(w http.ResponseWriter, b []byte, err error) {
	if err != nil {
		if nola.IsRetryable(err) {
			w.Header().Set(HeaderRetryable, "true")
		}
		writeError(w, err)
		return
	}
	hdr := w.Header()
	hdr["Content-Type"] = octetStream
	hdr["Content-Length"] = contentLength(len(b))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// octetStream is the Content-Type of every result, set without
// canonicalizing the key or allocating the value per response (net/http
// only reads header values; Set and Add replace or copy them).
var octetStream = []string{"application/octet-stream"}

// smallLengths holds the Content-Length values of results under 256
// bytes, made once: most results are small.
var smallLengths = func() (v [256][]string) {
	for i := range v {
		v[i] = []string{strconv.Itoa(i)}
	}
	return v
}()

func contentLength(n int) []string {
	if n < len(smallLengths) {
		return smallLengths[n]
	}
	return []string{strconv.Itoa(n)}
}

// internalInvoke runs an invocation on this server if it owns the actor:
// the server-to-server path. A non-owner answers not_owner and the calling
// client re-resolves. cs is the call's state if ServeHTTP made it (w is
// then &cs.bw), or nil.
func (h *Handler) internalInvoke(w http.ResponseWriter, r *http.Request, cs *callState) {
	req := internalRequest(r.URL)
	h.serveCall(w, r, cs, pathInternal, func(ctx context.Context, payload []byte) ([]byte, error) {
		req.Payload = payload
		if h.opts.Internal != nil {
			return h.opts.Internal.HandleInvoke(ctx, req)
		}
		return h.srv.HandleInvoke(ctx, req)
	})
}

// invoke is the public endpoint: any server accepts any call and routes it
// to the actor's owner (itself or another server), placing the actor first
// if needed. cs is as for internalInvoke.
func (h *Handler) invoke(w http.ResponseWriter, r *http.Request, cs *callState, ns, id, op string) {
	h.serveCall(w, r, cs, pathPublic, func(ctx context.Context, payload []byte) ([]byte, error) {
		args, err := h.creationArgsHeader(r)
		if err != nil {
			return nil, err
		}
		typ := queryValue(r.URL, "type")
		b, err := h.srv.Client().Do(ctx, nola.Request{
			Namespace: ns, ActorID: id, ActorType: typ, Operation: op,
			Payload: payload, CreationArgs: args,
		})
		if typ == "" && errors.Is(err, registry.ErrActorNotFound) {
			// The registry's wording says nothing of what to do.
			err = &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf(
				"actor %s/%s not found: to create it, name its type (?type=TYPE)", ns, id)}
		}
		return b, err
	})
}

// serveCall runs a call endpoint: the call's deadline from the timeout
// header, the payload read within it, then call; its result or error is
// written and counted under path (rejected calls count too). cs holds
// the call's context (a new one if nil).
//
// The clock is read twice: at the start (the deadline and the latency
// metric's start) and at the end (the context's release, the latency,
// and the start of the response's write deadline).
func (h *Handler) serveCall(w http.ResponseWriter, r *http.Request, cs *callState, path callPath, call func(ctx context.Context, payload []byte) ([]byte, error)) {
	start := time.Now()
	var (
		b   []byte
		end time.Time
	)
	d, err := h.callTimeout(r)
	if err == nil {
		var cc *callCtx
		if cs != nil {
			cc = &cs.cc
		} else {
			cc = new(callCtx)
		}
		cc.init(r.Context(), start, d)
		b, err = h.runCall(cc, w, r, call)
		end = time.Now()
		cc.releaseAt(end)
	} else {
		end = time.Now()
	}
	h.met.observe(path, start, end, err)
	if bw, ok := w.(*boundedWriter); ok {
		bw.armAt(end)
	}
	if path == pathInternal && err == nil && len(b) <= maxBareResult {
		writeBareResult(w, b)
		return
	}
	h.writeResult(w, b, err)
}

// maxBareResult is the largest internal result writeBareResult writes:
// net/http's server buffers that much of a response before it chunks it,
// so it can still set the Content-Length itself.
const maxBareResult = 2048

// writeBareResult writes a small internal result without touching the
// response's headers: once a handler has called Header, net/http clones
// the header map when the header is written (3 allocations), and the
// handler's first insert allocates the map's storage (issue 16). net/http
// sets Content-Length itself (the result fits its buffer and the handler
// has returned before it is sent) and a sniffed Content-Type, which the
// caller — this package's Transport, the internal endpoint's client for
// servers and standalone clients alike — ignores: it reads a 200's body
// as bytes, whatever its type.
// Public results keep application/octet-stream (writeResult).
func writeBareResult(w http.ResponseWriter, b []byte) {
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// runCall reads the payload within cc's deadline and runs call. A call
// that panics leaves cc unreleased: the request's context, its parent,
// ends with the handler (net/http cancels it), and cc with it.
func (h *Handler) runCall(cc *callCtx, w http.ResponseWriter, r *http.Request, call func(ctx context.Context, payload []byte) ([]byte, error)) ([]byte, error) {
	payload, err := h.readPayload(cc, w, r, h.srv.Limits().MaxPayloadBytes)
	if err != nil {
		return nil, err
	}
	return call(cc, payload)
}

// internalRequest reads an internal invoke's query (InternalInvokeURL)
// in one pass over it, by url.ParseQuery's rules, without building its
// map: a pair with a semicolon or a bad escape is skipped, a key given
// twice counts by its first value (chain by all of them). A query of many
// pairs goes to url.ParseQuery itself, which also bounds their number.
func internalRequest(u *url.URL) nola.Request {
	raw := u.RawQuery
	if strings.Count(raw, "&") >= 100 {
		q := u.Query()
		return nola.Request{
			Namespace: q.Get("ns"), ActorID: q.Get("id"), ActorType: q.Get("type"),
			Operation: q.Get("op"), Chain: q["chain"], Delete: q.Get("delete") == "1", Worker: q.Get("worker"),
		}
	}
	var req nola.Request
	var seen [6]bool // ns, id, type, op, delete, worker
	first := func(i int, dst *string, v string) {
		if !seen[i] {
			seen[i], *dst = true, v
		}
	}
	var del string
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil {
			continue
		}
		if v, err = url.QueryUnescape(v); err != nil {
			continue
		}
		switch k {
		case "ns":
			first(0, &req.Namespace, v)
		case "id":
			first(1, &req.ActorID, v)
		case "type":
			first(2, &req.ActorType, v)
		case "op":
			first(3, &req.Operation, v)
		case "delete":
			first(4, &del, v)
		case "worker":
			first(5, &req.Worker, v)
		case "chain":
			req.Chain = append(req.Chain, v)
		}
	}
	req.Delete = del == "1"
	return req
}

// queryValue is u.Query().Get(key) without building the query's map (an
// allocation or three per call): the first value of key among the
// query's pairs, by url.ParseQuery's rules — a pair with a semicolon or a
// bad escape is skipped. A query of many pairs goes to url.ParseQuery
// itself, which also bounds their number.
func queryValue(u *url.URL, key string) string {
	raw := u.RawQuery
	if strings.Count(raw, "&") >= 100 {
		return u.Query().Get(key)
	}
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(k); err != nil || k != key {
			continue
		}
		if v, err := url.QueryUnescape(v); err == nil {
			return v
		}
	}
	return ""
}

// creationArgsHeader decodes the Nola-Creation-Args header, refusing one
// longer than the encoding of Limits.MaxCreationArgsBytes before decoding
// it.
func (h *Handler) creationArgsHeader(r *http.Request) ([]byte, error) {
	v, ok := r.Header[HeaderCreationArgs]
	if !ok {
		return nil, nil
	}
	if len(v) != 1 {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: HeaderCreationArgs + " given more than once"}
	}
	limit := h.srv.Limits().MaxCreationArgsBytes
	if len(v[0]) > base64.StdEncoding.EncodedLen(limit) {
		return nil, &nola.Error{Code: nola.CodeTooLarge, Message: fmt.Sprintf(
			"%s: creation arguments over the limit of %d bytes (%d base64 characters)", HeaderCreationArgs, limit, base64.StdEncoding.EncodedLen(limit))}
	}
	b, err := base64.StdEncoding.DecodeString(v[0])
	if err != nil {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: HeaderCreationArgs + " must be standard, padded base64"}
	}
	return b, nil
}

// CreateResult is the body of POST /v1/ns/{ns}/actors/{id}.
type CreateResult struct {
	// Created is false if the actor existed: nothing changed, and its
	// creation arguments are those of the call that created it.
	Created bool `json:"created"`
}

// createActor creates an actor of ?type= with the body as its creation
// arguments, without invoking it: 201 if this call created it, 200 if it
// existed.
func (h *Handler) createActor(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	created, err := func() (bool, error) {
		ctx, cancel, err := h.callContext(r)
		if err != nil {
			return false, err
		}
		defer cancel()
		typ := r.URL.Query().Get("type")
		if typ == "" {
			return false, &nola.Error{Code: nola.CodeBadRequest, Message: "the actor's type is required to create it (?type=TYPE)"}
		}
		args, err := h.readPayload(ctx, w, r, h.srv.Limits().MaxCreationArgsBytes)
		if err != nil {
			return false, err
		}
		return h.srv.Client().Create(ctx, r.PathValue("ns"), r.PathValue("id"), typ, args)
	}()
	h.met.observe(pathCreate, start, time.Now(), err)
	if err != nil {
		h.writeResult(w, nil, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, CreateResult{Created: created})
}

// deleteActor deletes an actor (docs/deletion.md): 204 once no invocation
// can observe it any more, 404 (not_found) if it does not exist.
func (h *Handler) deleteActor(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	err := func() error {
		ctx, cancel, err := h.callContext(r)
		if err != nil {
			return err
		}
		defer cancel()
		return h.srv.Client().Delete(ctx, r.PathValue("ns"), r.PathValue("id"))
	}()
	h.met.observe(pathDelete, start, time.Now(), err)
	if err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// callWorker is the public endpoint of stateless workers: the server that
// receives the call runs it (no placement, no forwarding).
func (h *Handler) callWorker(w http.ResponseWriter, r *http.Request) {
	h.serveCall(w, r, nil, pathWorker, func(ctx context.Context, payload []byte) ([]byte, error) {
		return h.srv.Client().CallWorker(ctx, r.PathValue("ns"), r.PathValue("type"), r.PathValue("op"), payload)
	})
}

func intParam(r *http.Request, name string, def, maxV int) (int, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, &nola.Error{Code: nola.CodeBadRequest, Message: name + " must be a non-negative integer"}
	}
	return min(n, maxV), nil
}

// ActorEntry is one actor in a listing.
type ActorEntry struct {
	ID          string `json:"id"`
	Type        string `json:"type"`
	Owner       string `json:"owner,omitempty"`
	Incarnation int64  `json:"owner_incarnation,omitempty"`
	CreatedRev  int64  `json:"created_revision"`
}

// ActorList is the body of GET /v1/ns/{ns}/actors.
type ActorList struct {
	Actors []ActorEntry `json:"actors"`
	More   bool         `json:"more"`
}

// listCall prepares a listing endpoint: its limit (default 100, at most
// maxLimit) and its context. ok is false if it already answered an error.
func (h *Handler) listCall(w http.ResponseWriter, r *http.Request, maxLimit int) (ctx context.Context, cancel context.CancelFunc, limit int, ok bool) {
	limit, err := intParam(r, "limit", 100, maxLimit)
	if err == nil && limit == 0 {
		limit = 100
	}
	if err == nil {
		ctx, cancel, err = h.callContext(r)
	}
	if err != nil {
		writeError(w, err)
		return nil, nil, 0, false
	}
	return ctx, cancel, limit, true
}

func (h *Handler) listActors(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, limit, ok := h.listCall(w, r, 1000)
	if !ok {
		return
	}
	defer cancel()
	infos, more, err := h.srv.Inspector().ListActors(ctx, r.PathValue("ns"), r.URL.Query().Get("after"), limit)
	if err != nil {
		writeError(w, err)
		return
	}
	out := ActorList{Actors: make([]ActorEntry, 0, len(infos)), More: more}
	for _, a := range infos {
		out.Actors = append(out.Actors, ActorEntry{
			ID: a.ID, Type: a.Record.Type, Owner: a.Record.Owner,
			Incarnation: a.Record.OwnerIncarnation, CreatedRev: a.CreateRev,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) getKV(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := h.callContext(r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	snap, err := h.srv.Inspector().SnapshotKV(ctx, r.PathValue("ns"), r.PathValue("id"))
	var (
		v     []byte
		found bool
	)
	if err == nil {
		v, found, err = snap.Get(ctx, []byte(r.PathValue("key")))
	} else if errors.Is(err, registry.ErrActorNotFound) {
		err = nil // a missing (or deleted) actor has no keys
	}
	if err != nil {
		writeError(w, err)
		return
	}
	if !found {
		writeCodeError(w, codeNotFound, msgNoSuchKey)
		return
	}
	h.writeResult(w, v, nil)
}

// moduleCall starts a module request: its context, or an error written to w
// (no module store, bad timeout header) and ok false.
func (h *Handler) moduleCall(w http.ResponseWriter, r *http.Request) (context.Context, context.CancelFunc, bool) {
	if h.opts.Modules == nil {
		writeCodeError(w, codeNotFound, "this server has no module store")
		return nil, nil, false
	}
	ctx, cancel, err := h.callContext(r)
	if err != nil {
		writeError(w, err)
		return nil, nil, false
	}
	return ctx, cancel, true
}

// deleteModule deletes a module no actor uses (docs/deletion.md).
func (h *Handler) deleteModule(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := h.moduleCall(w, r)
	if !ok {
		return
	}
	defer cancel()
	if _, err := h.opts.Modules.(ModuleDeleter).Delete(ctx, r.PathValue("ns"), r.PathValue("id")); err != nil {
		writeError(w, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) putModule(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := h.moduleCall(w, r)
	if !ok {
		return
	}
	defer cancel()
	b, err := h.readPayload(ctx, w, r, h.opts.MaxModuleBytes)
	if err != nil {
		writeError(w, err)
		return
	}
	info, created, err := h.opts.Modules.Put(ctx, r.PathValue("ns"), r.PathValue("id"), b)
	if err != nil {
		writeError(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, info)
}

// getModule sends a module's bytes: streamed, a chunk at a time, if the
// store can (ModuleStreamer); otherwise the store hands them over whole.
// Either way the downloads in progress are bounded (MaxModuleDownloads),
// and each by the write timeout: slow readers cannot pin more than that
// many chunks (or modules).
func (h *Handler) getModule(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := h.moduleCall(w, r)
	if !ok {
		return
	}
	defer cancel()
	select {
	case h.downloads <- struct{}{}:
		defer func() { <-h.downloads }()
	case <-ctx.Done():
		h.writeResult(w, nil, &nola.Error{Code: nola.CodeTimeout, Retryable: true,
			Message: fmt.Sprintf("%d module downloads in progress until the deadline; try again later", cap(h.downloads))})
		return
	}
	ns, id := r.PathValue("ns"), r.PathValue("id")
	ms, ok := h.opts.Modules.(ModuleStreamer)
	if !ok {
		b, _, err := h.opts.Modules.Get(ctx, ns, id)
		h.writeResult(w, b, err)
		return
	}
	started := false
	err := ms.Stream(ctx, ns, id, func(info ModuleInfo) {
		started = true
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(info.Size))
		w.WriteHeader(http.StatusOK)
	}, w)
	switch {
	case err == nil:
	case !started:
		h.writeResult(w, nil, err)
	default:
		// Part of the body is sent: only cutting the connection short of
		// its Content-Length tells the client that it is not the module.
		// Corrupt bytes are worth a warning; a client gone or too slow
		// (the write timeout) is not.
		level := slog.LevelDebug
		if errors.Is(err, modules.ErrCorrupt) {
			level = slog.LevelWarn
		}
		h.log.Log(ctx, level, "module download cut short", "ns", ns, "id", id, "err", err)
		panic(http.ErrAbortHandler)
	}
}

func (h *Handler) listModules(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, ok := h.moduleCall(w, r)
	if !ok {
		return
	}
	defer cancel()
	list, err := h.opts.Modules.List(ctx, r.PathValue("ns"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"modules": list})
}

// ServerStatus is one server in GET /v1/cluster.
type ServerStatus struct {
	ID           string    `json:"id"`
	Incarnation  int64     `json:"incarnation"`
	Addr         string    `json:"addr"`
	RegisteredAt time.Time `json:"registered_at"`
	Activations  int64     `json:"activations"`
	MemoryBytes  int64     `json:"memory_bytes"`
	Limit        int64     `json:"activation_limit"`
	// From the load record's optional fields (zero from older servers).
	HeapBytes    int64   `json:"heap_bytes"`
	BusyRatio    float64 `json:"busy_ratio"`
	Rate         float64 `json:"invocations_per_second"`
	MemoryBudget int64   `json:"memory_budget"`
}

// ClusterStatus is the body of GET /v1/cluster.
type ClusterStatus struct {
	Servers []ServerStatus `json:"servers"`
	// Self is the answering server's own view.
	Self SelfStatus `json:"self"`
}

// SelfStatus is the answering server's view of itself.
type SelfStatus struct {
	ID          string `json:"id"`
	Incarnation int64  `json:"incarnation"`
	// LeaseAgeMs is the time since its last successful keep-alive was sent.
	LeaseAgeMs int64          `json:"lease_age_ms"`
	Ready      bool           `json:"ready"`
	Stats      ServerCounters `json:"stats"`
	// Workers counts each worker type's invocations on this server.
	Workers []WorkerCounters `json:"workers"`
}

// WorkerCounters are one worker type's counters (nola.WorkerStats).
type WorkerCounters struct {
	Type string `json:"type"`
	// Namespace is set for a namespace's WASM module.
	Namespace   string `json:"namespace,omitempty"`
	Calls       int64  `json:"calls"`
	Errors      int64  `json:"errors"`
	Rejected    int64  `json:"rejected"`
	InFlight    int64  `json:"in_flight"`
	MaxInFlight int64  `json:"max_in_flight"`
}

// ServerCounters are a server's counters (nola.Stats) as the API names
// them: snake_case like the rest of the JSON, whatever the Go names.
type ServerCounters struct {
	Invocations   int64 `json:"invocations"`
	Activated     int64 `json:"activated"`
	Evicted       int64 `json:"evicted"`
	Fences        int64 `json:"fences"`
	FailedCommits int64 `json:"failed_commits"`
	Activations   int64 `json:"activations"`
	MemoryBytes   int64 `json:"memory_bytes"`
	HeapBytes     int64 `json:"heap_bytes"`
	BusyNanos     int64 `json:"busy_nanos"`
	Shed          int64 `json:"shed"`
	ShedBytes     int64 `json:"shed_bytes"`
	LocalityMoves int64 `json:"locality_moves"`
	Incarnation   int64 `json:"incarnation"`
	// KeepAlive describes the lease keep-alives.
	KeepAlive KeepAliveCounters `json:"keep_alive"`
}

// KeepAliveCounters describe the lease keep-alives: a latency histogram
// (LatencyCounts[i] counts the round trips in bucket i, at most
// LatencyBoundsMs[i]; the last count is those above every bound), failed
// and slow attempts, and fences by cause.
type KeepAliveCounters struct {
	LatencyBoundsMs []float64        `json:"latency_bounds_ms"`
	LatencyCounts   []int64          `json:"latency_counts"`
	LatencyCount    int64            `json:"latency_count"`
	LatencySumMs    float64          `json:"latency_sum_ms"`
	Failures        int64            `json:"failures"`
	Slow            int64            `json:"slow"`
	FencesByCause   map[string]int64 `json:"fences_by_cause"`
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func counters(st nola.Stats) ServerCounters {
	ka := st.KeepAlive
	out := ServerCounters{
		Invocations: st.Invocations, Activated: st.Activated, Evicted: st.Evicted,
		Fences: st.Fences, FailedCommits: st.FailedCommits, Activations: st.Activations,
		MemoryBytes: st.MemoryBytes, HeapBytes: st.HeapBytes, BusyNanos: st.BusyNanos,
		Shed: st.Shed, ShedBytes: st.ShedBytes, LocalityMoves: st.LocalityMoves, Incarnation: st.Incarnation,
		KeepAlive: KeepAliveCounters{
			LatencyBoundsMs: make([]float64, 0, len(ka.Latency.Bounds)),
			LatencyCounts:   append([]int64{}, ka.Latency.Counts...),
			LatencyCount:    ka.Latency.Count, LatencySumMs: ms(ka.Latency.Sum),
			Failures: ka.Failures, Slow: ka.Slow,
			FencesByCause: make(map[string]int64, len(ka.Fences)),
		},
	}
	for _, b := range ka.Latency.Bounds {
		out.KeepAlive.LatencyBoundsMs = append(out.KeepAlive.LatencyBoundsMs, ms(b))
	}
	for c, n := range ka.Fences {
		out.KeepAlive.FencesByCause[string(c)] = n
	}
	return out
}

func (h *Handler) cluster(w http.ResponseWriter, r *http.Request) {
	ctx, cancel, err := h.callContext(r)
	if err != nil {
		writeError(w, err)
		return
	}
	defer cancel()
	members, err := h.srv.Inspector().Servers(ctx)
	if err != nil {
		writeError(w, err)
		return
	}
	out := ClusterStatus{Servers: make([]ServerStatus, 0, len(members)), Self: h.self()}
	for _, m := range members {
		st := ServerStatus{
			ID: m.Record.ID, Incarnation: m.Record.Incarnation, Addr: m.Record.Addr,
			RegisteredAt: time.Unix(0, m.Record.RegisteredAt).UTC(),
			Activations:  m.Load.Activations, MemoryBytes: m.Load.Bytes, Limit: m.Load.Limit,
			HeapBytes: m.Load.HeapBytes, BusyRatio: float64(m.Load.BusyPPM) / 1e6,
			Rate: float64(m.Load.RateMilli) / 1e3, MemoryBudget: m.Load.Budget,
		}
		if m.Record.ID == out.Self.ID && m.Record.Incarnation == out.Self.Incarnation {
			// Our own row: live figures rather than the last load report.
			st.Activations, st.MemoryBytes = out.Self.Stats.Activations, out.Self.Stats.MemoryBytes
		}
		out.Servers = append(out.Servers, st)
	}
	writeJSON(w, http.StatusOK, out)
}

func (h *Handler) self() SelfStatus {
	li := h.srv.Lease()
	return SelfStatus{
		ID: h.srv.ID(), Incarnation: li.Incarnation, LeaseAgeMs: li.Age.Milliseconds(),
		Ready: li.Valid, Stats: counters(h.srv.Stats()), Workers: workerCounters(h.srv.WorkerStats()),
	}
}

func workerCounters(ws []nola.WorkerStats) []WorkerCounters {
	out := make([]WorkerCounters, len(ws))
	for i, w := range ws {
		out[i] = WorkerCounters{Type: w.Type, Namespace: w.Namespace, Calls: w.Calls, Errors: w.Errors,
			Rejected: w.Rejected, InFlight: w.InFlight, MaxInFlight: w.MaxInFlight}
	}
	return out
}

// ready answers 200 only while the server holds a valid lease.
func (h *Handler) ready(w http.ResponseWriter, _ *http.Request) {
	if li := h.srv.Lease(); li.Valid {
		_, _ = io.WriteString(w, "ready\n")
		return
	}
	writeCodeError(w, nola.CodeUnavailable, "no valid lease")
}
