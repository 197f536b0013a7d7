package storeless

import (
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/httpapi"
	"github.com/nolaproject/nola/nola"
)

// Messages of the operations store-less mode does not offer: each says why
// and what to use instead.
const (
	// NoKVMessage is the server's nola.ServerConfig.NoKV.
	NoKVMessage = "this server runs store-less (--registry hash): actors have no durable KV, " +
		"because there is no store and an actor's state is lost whenever it moves; " +
		"run with the default registry (--registry store, on etcd) for KV, or keep state outside nola"
	msgKVRead = "store-less mode (--registry hash) has no actor KV to read; " +
		"run with the default registry (--registry store, on etcd) for KV"
	msgList = "store-less mode (--registry hash) keeps no actor records, so it cannot list actors; " +
		"run with the default registry (--registry store) for an actor list"
	msgDelete = "store-less mode (--registry hash) keeps no actor records, so there is nothing to delete: " +
		"an actor's activation is forgotten when it is idle or moves; run with the default registry (--registry store) for deletion"
)

// HeaderForwarded marks a call one server forwarded to the actor's owner
// in its view: the receiver runs it itself, whatever its own view says
// (views may differ; forwarding again could loop). Its value is the
// cluster's admin token, or "1" without one, so that a client cannot mark
// its own calls.
const HeaderForwarded = "Nola-Forwarded"

// RouterConfig configures a Router.
type RouterConfig struct {
	// Members is this server's view of the cluster.
	Members *Members
	// Transport carries calls to other servers' internal endpoints
	// (httpapi.Transport, without SetLocal).
	Transport nola.Transport
	// AdminToken is the cluster's admin token ("" if none): forwarded
	// calls and module copies carry it.
	AdminToken string
	// HTTP carries forwarded public calls and module copies (default: a
	// client of its own).
	HTTP http.RoundTripper
	// MaxModuleBytes bounds a module upload the router copies to the
	// other members (default 16 MiB; the API's own bound, normally).
	MaxModuleBytes int
	// Interval is the time between membership rounds in Run (default 1s).
	Interval time.Duration
	// PushTimeout bounds one module push to a member that joined
	// (default 10s); a failed push is retried PushRetries times (default
	// 3; negative: never), after PushBackoff (default 200ms), doubling.
	// Pushes run in the background, never in a round.
	PushTimeout time.Duration
	PushRetries int
	PushBackoff time.Duration
	Logger      *slog.Logger
}

// Router makes a server with a private in-process registry part of a
// store-less cluster. It is the server's nola.Transport (every call to an
// actor goes to the actor's owner on the hash ring of live members: the
// server itself or another), the handler of its internal endpoint (a call
// forwarded here is placed and run here), and a filter in front of its
// HTTP API (public calls are proxied to the owner; KV reads, actor lists
// and deletes answer 501; module uploads are copied to every member).
type Router struct {
	cfg    RouterConfig
	m      *Members
	srv    atomic.Pointer[nola.Server]
	marker string
	proxy  *httputil.ReverseProxy
	client *http.Client
	// dirty asks the next round to look for activations to move even if
	// the membership did not change (a release found its actor busy).
	dirty atomic.Bool
	// moved counts the activations Rebalance released.
	moved atomic.Int64

	modMu sync.Mutex
	// modules are the module uploads this server holds, to copy to
	// members that join later: path → bytes.
	modules map[string][]byte
	// deleted are the module paths deleted here (or by a copy), oldest
	// first, to delete on members that were down at the time.
	deleted []string

	push *pusher
}

// NewRouter returns a router; Attach gives it its server before use.
func NewRouter(cfg RouterConfig) *Router {
	if cfg.MaxModuleBytes <= 0 {
		cfg.MaxModuleBytes = 16 << 20
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PushTimeout <= 0 {
		cfg.PushTimeout = defaultPushTimeout
	}
	switch {
	case cfg.PushRetries == 0:
		cfg.PushRetries = defaultPushRetries
	case cfg.PushRetries < 0:
		cfg.PushRetries = 0
	}
	if cfg.PushBackoff <= 0 {
		cfg.PushBackoff = defaultPushBackoff
	}
	if cfg.HTTP == nil {
		cfg.HTTP = &http.Transport{
			Proxy:               nil,
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, DisableCompression: true,
		}
	}
	r := &Router{cfg: cfg, m: cfg.Members, marker: cfg.AdminToken, modules: map[string][]byte{},
		client: &http.Client{Transport: cfg.HTTP, Timeout: 30 * time.Second,
			// A copy carries the admin token twice (mark and bearer):
			// never follow a member's redirect to another host with it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
	if r.marker == "" {
		r.marker = "1"
	}
	r.proxy = &httputil.ReverseProxy{
		Rewrite:      func(*httputil.ProxyRequest) {}, // set per call in proxyTo
		Transport:    cfg.HTTP,
		ErrorHandler: r.proxyError,
	}
	r.push = newPusher(r, cfg.PushTimeout, cfg.PushRetries, cfg.PushBackoff)
	return r
}

// Close stops the background module pushes (waiting for their
// goroutines) and closes idle connections. The router must not be used
// after.
func (r *Router) Close() {
	r.push.close()
	r.CloseIdleConnections()
}

// WaitPushes returns once no module push to a member is in progress (or
// ctx ends): tests wait on it instead of sleeping.
func (r *Router) WaitPushes(ctx context.Context) error { return r.push.wait(ctx) }

// CloseIdleConnections closes the idle keep-alive connections of the
// router's forwarding client and of its members' probes: each holds two
// goroutines until the peer closes it, so a node that stops calls this.
func (r *Router) CloseIdleConnections() {
	r.client.CloseIdleConnections()
	r.m.cfg.HTTPClient.CloseIdleConnections()
}

// Attach gives the router the server it routes for.
func (r *Router) Attach(s *nola.Server) { r.srv.Store(s) }

// Members is the router's membership view.
func (r *Router) Members() *Members { return r.m }

var _ nola.Transport = (*Router)(nil)
var _ nola.Handler = (*Router)(nil)

type pinKey struct{ ns, id string }

// pin marks ctx so that the router runs the call to (ns, id) on this
// server: it was forwarded here by a server that thinks this one owns it.
// The mark names the actor, so calls that actor makes to others are
// routed as usual.
func pin(ctx context.Context, ns, id string) context.Context {
	return context.WithValue(ctx, pinKey{}, pinKey{ns, id})
}

func pinned(ctx context.Context, req *nola.Request) bool {
	p, ok := ctx.Value(pinKey{}).(pinKey)
	return ok && p.ns == req.Namespace && p.id == req.ActorID
}

func unsupported(msg string) *nola.Error {
	return &nola.Error{Code: nola.CodeUnsupported, Message: msg}
}

// Invoke implements nola.Transport. The server's private registry always
// names the server itself, so addr is ignored: the ring decides.
func (r *Router) Invoke(ctx context.Context, _ string, req nola.Request) ([]byte, error) {
	srv := r.srv.Load()
	switch {
	case req.Delete:
		return nil, unsupported(msgDelete)
	case req.Worker != "":
		return srv.HandleInvoke(ctx, req)
	case pinned(ctx, &req):
		return srv.HandleInvoke(ctx, req)
	}
	owner := r.m.Owner(req.Namespace, req.ActorID)
	if owner == r.m.Self() {
		return srv.HandleInvoke(ctx, req)
	}
	return r.cfg.Transport.Invoke(ctx, owner, req)
}

// Direct reports true: the client must not watch the owner's lease in the
// private registry (it is always this server's own); a call to a peer is
// bounded by its deadline.
func (r *Router) Direct(string) bool { return true }

// HandleInvoke serves the internal endpoint: a call another server sent
// here because this one owns the actor in its view. It is placed here (in
// the private registry) and run here.
func (r *Router) HandleInvoke(ctx context.Context, req nola.Request) ([]byte, error) {
	srv := r.srv.Load()
	switch {
	case req.Delete:
		return nil, unsupported(msgDelete)
	case req.Worker != "":
		return srv.HandleInvoke(ctx, req)
	}
	return srv.Client().Do(pin(ctx, req.Namespace, req.ActorID), req)
}

// Round runs one membership round, then moves the activations whose
// owner changed (Rebalance). Tests call it to drive membership; Run calls
// it every Interval.
func (r *Router) Round(ctx context.Context) (changed bool) {
	joined, changed := r.m.Round(ctx)
	if changed || r.dirty.Swap(false) {
		r.Rebalance(ctx)
	}
	for _, u := range joined {
		r.push.kick(u) // in the background: a hung member must not stall the rounds
	}
	return changed
}

// Run runs Round every Interval until ctx ends.
func (r *Router) Run(ctx context.Context) {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.Round(ctx)
		}
	}
}

// Rebalance releases every activation of this server whose owner in the
// current view is another member, so that its next call activates it
// there (its in-memory state is lost, as in any move). A busy activation
// is left for the next round. It returns how many it released.
func (r *Router) Rebalance(ctx context.Context) int {
	srv := r.srv.Load()
	if srv == nil { // not attached yet: it hosts nothing
		return 0
	}
	self, moved := r.m.Self(), 0
	for _, ref := range srv.HostedActors() {
		if r.m.Owner(ref.Namespace, ref.ID) == self {
			continue
		}
		ok, err := srv.Release(ctx, ref.Namespace, ref.ID)
		switch {
		case errors.Is(err, nola.ErrBusy):
			r.dirty.Store(true)
		case err != nil:
			r.cfg.Logger.Warn("store-less: releasing a moved actor", "ns", ref.Namespace, "actor", ref.ID, "err", err)
		case ok:
			moved++
		}
	}
	r.moved.Add(int64(moved))
	if moved > 0 {
		r.cfg.Logger.Info("store-less: released actors whose owner moved", "released", moved, "members", len(r.m.Live()))
	}
	return moved
}

// Moved is how many activations Rebalance has released so far.
func (r *Router) Moved() int64 { return r.moved.Load() }

// Wrap puts the router in front of a server's HTTP API (next).
func (r *Router) Wrap(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /v1/ns/{ns}/actors/{id}/invoke/{op}", r.toOwner(next))
	mux.Handle("POST /v1/ns/{ns}/actors/{id}", r.toOwner(next))
	mux.Handle("GET /v1/ns/{ns}/actors/{id}/kv", refuse(msgKVRead))
	mux.Handle("GET /v1/ns/{ns}/actors/{id}/kv/{key...}", refuse(msgKVRead))
	mux.Handle("GET /v1/ns/{ns}/actors", refuse(msgList))
	mux.Handle("DELETE /v1/ns/{ns}/actors/{id}", refuse(msgDelete))
	mux.Handle("PUT /v1/ns/{ns}/modules/{id}", r.copyModule(next))
	mux.Handle("DELETE /v1/ns/{ns}/modules/{id}", r.copyModule(next))
	mux.Handle("/", next)
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p := req.URL.EscapedPath()
		if p == "/v1/cluster" && req.Method == http.MethodGet {
			r.cluster(w, req, next)
			return
		}
		if !strings.HasPrefix(p, "/v1/ns/") || strings.Contains(p, "//") || strings.Contains(p, "/./") || strings.Contains(p, "/../") {
			// Not ours, or not a clean path: the API answers it (its
			// own checks refuse what the mux would redirect).
			next.ServeHTTP(w, req)
			return
		}
		mux.ServeHTTP(w, req)
	})
}

// cluster answers GET /v1/cluster with the ring's view added: the API's
// answer (its own checks, and its servers: the private registry, where
// this server is alone) gets one more server per other live member (addr
// and id its URL, no counters: they are not known here) and "members",
// every candidate's probe state. Fields are only added, so clients of
// the default mode's shape still read it.
func (r *Router) cluster(w http.ResponseWriter, req *http.Request, next http.Handler) {
	rec := &recorder{ResponseWriter: w, header: http.Header{}}
	next.ServeHTTP(rec, req)
	var body map[string]json.RawMessage
	if rec.status != http.StatusOK || json.Unmarshal(rec.body.Bytes(), &body) != nil {
		rec.flush()
		return
	}
	var servers []map[string]any
	_ = json.Unmarshal(body["servers"], &servers)
	status := r.m.Status()
	for _, st := range status {
		if st.Self || !st.Live {
			continue
		}
		servers = append(servers, map[string]any{"id": st.URL, "addr": st.URL, "member": true})
	}
	for _, s := range servers {
		if s["addr"] == r.m.Self() {
			s["member"] = true
		}
	}
	sb, err1 := json.Marshal(servers)
	mb, err2 := json.Marshal(status)
	if err1 != nil || err2 != nil {
		rec.flush()
		return
	}
	body["servers"], body["members"] = sb, mb
	out, err := json.Marshal(body)
	if err != nil {
		rec.flush()
		return
	}
	rec.body.Reset()
	rec.body.Write(out)
	rec.header.Del("Content-Length")
	rec.flush()
}

func refuse(msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { writeErr(w, unsupported(msg)) })
}

func writeErr(w http.ResponseWriter, e *nola.Error) {
	status := http.StatusInternalServerError
	switch e.Code {
	case nola.CodeUnsupported:
		status = http.StatusNotImplemented
	case nola.CodeUnavailable:
		status = http.StatusServiceUnavailable
	case nola.CodeTimeout:
		status = http.StatusGatewayTimeout
	case nola.CodeTooLarge:
		status = http.StatusRequestEntityTooLarge
	case nola.CodeBadRequest:
		status = http.StatusBadRequest
	case "forbidden":
		status = http.StatusForbidden
	}
	if e.Retryable {
		w.Header().Set(httpapi.HeaderRetryable, "true")
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(httpapi.ErrorBody{Code: e.Code, Message: e.Message, Retryable: e.Retryable})
}

// forwarded reports whether req carries a valid forwarding mark; bad is a
// mark that does not match.
func (r *Router) forwarded(req *http.Request) (ok, bad bool) {
	v, present := req.Header[HeaderForwarded]
	if !present {
		return false, false
	}
	if len(v) == 1 && subtle.ConstantTimeCompare([]byte(v[0]), []byte(r.marker)) == 1 {
		return true, false
	}
	return false, true
}

// toOwner runs a public call here if this server owns the actor (or the
// call was forwarded here), and proxies it to the owner otherwise.
func (r *Router) toOwner(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ns, id := req.PathValue("ns"), req.PathValue("id")
		switch ok, bad := r.forwarded(req); {
		case bad:
			writeErr(w, &nola.Error{Code: "forbidden", Message: HeaderForwarded + " is for servers of the cluster"})
			return
		case ok:
			next.ServeHTTP(w, req.WithContext(pin(req.Context(), ns, id)))
			return
		}
		owner := r.m.Owner(ns, id)
		if owner == r.m.Self() {
			next.ServeHTTP(w, req)
			return
		}
		r.proxyTo(w, req, owner)
	})
}

type ownerKey struct{}

func (r *Router) proxyTo(w http.ResponseWriter, req *http.Request, owner string) {
	u, err := url.Parse(owner)
	if err != nil {
		writeErr(w, &nola.Error{Code: nola.CodeInternal, Message: "bad member URL"})
		return
	}
	p := *r.proxy
	p.Rewrite = func(pr *httputil.ProxyRequest) {
		pr.SetURL(u)
		pr.Out.Host = u.Host
		pr.Out.Header.Set(HeaderForwarded, r.marker)
	}
	p.ServeHTTP(w, req.WithContext(context.WithValue(req.Context(), ownerKey{}, owner)))
}

// proxyError answers a proxied call that failed: retryable if the owner
// could not be reached at all (the call did not run), of unknown outcome
// otherwise.
func (r *Router) proxyError(w http.ResponseWriter, req *http.Request, err error) {
	owner, _ := req.Context().Value(ownerKey{}).(string)
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		writeErr(w, &nola.Error{Code: nola.CodeUnavailable, Retryable: true,
			Message: "cannot connect to " + owner + ", the actor's owner in this server's view; retry (the view changes once it is found down)"})
		return
	}
	writeErr(w, &nola.Error{Code: nola.CodeTimeout, Message: "forwarding to " + owner + " failed mid-call; outcome unknown"})
}

// copyModule stores a module upload (or deletion) here, then copies it to
// every other live member, and keeps uploads to copy to members that
// join later. A copy (marked as forwarded) is only stored.
func (r *Router) copyModule(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		ok, bad := r.forwarded(req)
		if bad {
			writeErr(w, &nola.Error{Code: "forbidden", Message: HeaderForwarded + " is for servers of the cluster"})
			return
		}
		// The API reads the body (after its own checks: a refused caller
		// makes it read nothing) and bounds it; a copy is kept as it reads.
		keep := &capped{max: r.cfg.MaxModuleBytes}
		req.Body = struct {
			io.Reader
			io.Closer
		}{io.TeeReader(req.Body, keep), req.Body}
		rec := &recorder{ResponseWriter: w, header: http.Header{}}
		next.ServeHTTP(rec, req)
		body := keep.buf.Bytes()
		if keep.over {
			r.cfg.Logger.Warn("store-less: module over the copy bound; not copied", "path", req.URL.Path, "bound", r.cfg.MaxModuleBytes)
			rec.flush()
			return
		}
		if rec.status/100 == 2 {
			r.rememberModule(req.Method, req.URL.Path, body)
			if !ok {
				copied, total := r.copyToMembers(req, body)
				rec.header.Set("Nola-Copied-To", fmt.Sprintf("%d/%d", copied, total))
			}
		}
		rec.flush()
	})
}

func (r *Router) rememberModule(method, path string, body []byte) {
	r.modMu.Lock()
	defer r.modMu.Unlock()
	if method == http.MethodDelete {
		delete(r.modules, path)
		if !slices.Contains(r.deleted, path) {
			if len(r.deleted) == maxTombstones {
				r.cfg.Logger.Warn("store-less: too many module deletions to remember; the oldest is no longer pushed to rejoining members",
					"path", r.deleted[0], "limit", maxTombstones)
				r.deleted = r.deleted[1:]
			}
			r.deleted = append(r.deleted, path)
		}
		return
	}
	r.modules[path] = body
}

// moduleSet is a copy of the modules this server holds and of the
// deletions it remembers.
func (r *Router) moduleSet() (mods map[string][]byte, deleted []string) {
	r.modMu.Lock()
	defer r.modMu.Unlock()
	mods = make(map[string][]byte, len(r.modules))
	for p, b := range r.modules {
		mods[p] = b
	}
	return mods, slices.Clone(r.deleted)
}

// copyToMembers sends req's method, path and body to every other live
// member, marked as forwarded; it returns how many stored it.
func (r *Router) copyToMembers(req *http.Request, body []byte) (copied, total int) {
	for _, u := range r.m.Live() {
		if u == r.m.Self() {
			continue
		}
		total++
		if err := r.send(req.Context(), req.Method, u, req.URL.RequestURI(), body); err != nil {
			r.cfg.Logger.Warn("store-less: copying a module to a member failed", "member", u, "path", req.URL.Path, "err", err)
			continue
		}
		copied++
	}
	return copied, total
}

func (r *Router) send(ctx context.Context, method, member, uri string, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	out, err := http.NewRequestWithContext(ctx, method, member+uri, bytes.NewReader(body))
	if err != nil {
		return err
	}
	out.Header.Set(HeaderForwarded, r.marker)
	if r.cfg.AdminToken != "" {
		out.Header.Set("Authorization", "Bearer "+r.cfg.AdminToken)
	}
	resp, err := r.client.Do(out)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return &statusError{code: resp.StatusCode}
	}
	return nil
}

// statusError is a member's non-2xx answer to a copy.
type statusError struct{ code int }

func (e *statusError) Error() string { return fmt.Sprintf("HTTP %d", e.code) }

// capped keeps at most max bytes of what is written to it.
type capped struct {
	buf  bytes.Buffer
	max  int
	over bool
}

func (c *capped) Write(b []byte) (int, error) {
	if c.over || c.buf.Len()+len(b) > c.max {
		c.over = true
		c.buf.Reset()
		return len(b), nil
	}
	return c.buf.Write(b)
}

// recorder holds a response back until the copies are made, so that it
// can say how many were (Nola-Copied-To). Unwrap lets the API's
// ResponseController reach the connection (read and write deadlines).
type recorder struct {
	http.ResponseWriter
	header http.Header
	status int
	body   bytes.Buffer
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	return r.body.Write(b)
}
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) flush() {
	for k, v := range r.header {
		r.ResponseWriter.Header()[k] = v
	}
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.ResponseWriter.WriteHeader(r.status)
	_, _ = r.ResponseWriter.Write(r.body.Bytes())
}
