package nola

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// This file is the stateless-worker path: a worker type is a function that
// any server runs, any number of times at once, with no activation, no
// placement, no lease check and no KV. See WorkerFunc.

// WorkerFunc is a stateless worker's behaviour. Unlike an actor, a worker
// has no identity and no single activation: every server that registers
// the type (ServerConfig.Workers) runs any number of its invocations
// concurrently, on the goroutine of the call — preferably the server that
// received the call, which needs no registry round trip to route it. So a
// WorkerFunc must be safe for concurrent use, and whatever it keeps in
// memory is per server and unsynchronized with other servers.
//
// A worker has no KV (there is no actor whose KV it could be, and reading
// another actor's KV from outside that actor's activation would not be
// linearizable) and no timers (there is no activation to fire them on). It
// may call actors and other workers through its WorkerContext; those calls
// carry the usual guarantees of the callee.
type WorkerFunc func(ctx *WorkerContext, op string, payload []byte) ([]byte, error)

// WorkerRef names a worker type in a namespace.
type WorkerRef struct {
	Namespace string
	Type      string
}

// ErrNoState is what a worker's KV and timer calls fail with (wrapped in a
// bad_request *Error): errors.Is(err, ErrNoState).
var ErrNoState = errors.New("workers are stateless: no KV and no timers (keep state in an actor and call it)")

// DefaultMaxWorkerInFlight is the default of ServerConfig.MaxWorkerInFlight.
const DefaultMaxWorkerInFlight = 1024

// WorkerContext is what a worker sees during one invocation: a
// context.Context carrying the caller's deadline, calls to actors and to
// other workers, the clock and a logger. It is valid only during the call.
type WorkerContext struct {
	ctx context.Context
	// limited, while set (Limit), bounds ctx.
	limited atomic.Pointer[limitedCtx]
	srv     *Server
	ref     WorkerRef
	chain   []string
	// gate, if set, runs before each outgoing call: a worker called by an
	// actor sends on that actor's behalf, so its calls pass the actor's
	// lease gate exactly as the actor's own would.
	gate func(op string) error
	over atomic.Bool
}

var _ context.Context = (*WorkerContext)(nil)

// Deadline, Done, Err and Value make WorkerContext a context.Context.
func (w *WorkerContext) Deadline() (time.Time, bool) { return w.cur().Deadline() }
func (w *WorkerContext) Done() <-chan struct{}       { return w.cur().Done() }
func (w *WorkerContext) Err() error                  { return w.cur().Err() }
func (w *WorkerContext) Value(key any) any           { return w.cur().Value(key) }

func (w *WorkerContext) cur() context.Context {
	if l := w.limited.Load(); l != nil {
		return l.Context
	}
	return w.ctx
}

// Limit bounds what is left of the invocation — its outgoing calls and
// what Deadline and Done report — to d from now, until restore is called
// (before the invocation returns), as Context.Limit does for actors: for
// hosts of other runtimes with a timeout of their own (the WASM host).
func (w *WorkerContext) Limit(d time.Duration) (restore func()) {
	ctx, cancel := w.srv.rt.WithTimeout(w.cur(), d)
	prev := w.limited.Swap(&limitedCtx{ctx})
	return func() {
		w.limited.Store(prev)
		cancel()
	}
}

// Worker returns the worker's namespace and type.
func (w *WorkerContext) Worker() WorkerRef { return w.ref }

// Now returns the server's clock (the simulated one under simulation).
func (w *WorkerContext) Now() time.Time { return w.srv.rt.Now() }

// Logger returns a logger tagged with the worker.
func (w *WorkerContext) Logger() *slog.Logger {
	return w.srv.log.With("ns", w.ref.Namespace, "worker", w.ref.Type)
}

// Invoke calls an actor in the worker's namespace and waits for its
// result, exactly as a client would. A call into an actor whose invocation
// is waiting on this worker fails with CodeBadRequest instead of
// deadlocking.
func (w *WorkerContext) Invoke(actorID, actorType, op string, payload []byte) ([]byte, error) {
	if w.over.Load() {
		return nil, errWorkerOver()
	}
	var gate func() error
	if w.gate != nil {
		gate = func() error { return w.gate(op) }
	}
	return w.srv.client.invokeGated(w, Request{
		Namespace: w.ref.Namespace, ActorID: actorID, ActorType: actorType,
		Operation: op, Payload: payload, Chain: w.chain,
	}, gate)
}

// CallWorker calls another worker (or this one) in the same namespace, on
// this server.
func (w *WorkerContext) CallWorker(workerType, op string, payload []byte) ([]byte, error) {
	if w.over.Load() {
		return nil, errWorkerOver()
	}
	req := Request{Namespace: w.ref.Namespace, Worker: workerType, Operation: op, Payload: payload, Chain: w.chain}
	if err := checkRequest(&req, w.srv.cfg.Limits); err != nil {
		return nil, err
	}
	if w.gate != nil {
		if err := w.gate(op); err != nil {
			return nil, err
		}
	}
	return w.srv.runWorker(w, &req, w.gate)
}

func errWorkerOver() error {
	return ownErr(CodeBadRequest, "nola.WorkerContext used after its invocation returned")
}

func errNoState(what string) *Error {
	return &Error{Code: CodeBadRequest, own: true, cause: ErrNoState,
		Message: what + " from a worker: " + ErrNoState.Error()}
}

// Get, Put, Delete, Scan, ScanPrefix, SetTimer and CancelTimer always fail
// (CancelTimer reports false): a worker has neither KV nor timers. They
// exist so that runtimes hosting guest code on both actors and workers
// (the WASM host) can hand a guest's KV or timer call to either context and
// get a typed error, errors.Is(err, ErrNoState), rather than a crash; Go
// workers should simply not call them.
func (w *WorkerContext) Get(key []byte) ([]byte, bool, error) {
	return nil, false, errNoState("KV read")
}
func (w *WorkerContext) Put(key, value []byte) error { return errNoState("KV write") }
func (w *WorkerContext) Delete(key []byte) error     { return errNoState("KV delete") }
func (w *WorkerContext) Scan(start, end []byte, limit int) ([]KV, error) {
	return nil, errNoState("KV scan")
}
func (w *WorkerContext) ScanPrefix(prefix []byte, limit int) ([]KV, error) {
	return nil, errNoState("KV scan")
}
func (w *WorkerContext) SetTimer(name string, delay, period time.Duration, op string, payload []byte) error {
	return errNoState("a timer")
}
func (w *WorkerContext) CancelTimer(name string) bool { return false }

// workerType is one registered worker type on a server, with its counters.
type workerType struct {
	name string
	ns   string // set for a resolved type: it belongs to one namespace
	fn   WorkerFunc
	max  int64
	inFlight,
	calls, errors, rejected atomic.Int64
}

// WorkerStats counts one worker type's invocations on one server.
type WorkerStats struct {
	Type string
	// Namespace is set for a type a WorkerResolver supplied (a WASM
	// module of that namespace); registered Go types serve every
	// namespace.
	Namespace string
	// Calls counts invocations that ran (successful or not); Errors those
	// of them that failed; Rejected those refused at the concurrency limit
	// (CodeOverloaded), which did not run.
	Calls, Errors, Rejected int64
	// InFlight is the number running now; MaxInFlight the server's limit.
	InFlight, MaxInFlight int64
}

// WorkerStats returns the counters of every worker type of the server,
// sorted by namespace and type.
func (s *Server) WorkerStats() []WorkerStats {
	out := make([]WorkerStats, 0, len(s.workers))
	add := func(w *workerType) {
		out = append(out, WorkerStats{
			Type: w.name, Namespace: w.ns, Calls: w.calls.Load(), Errors: w.errors.Load(), Rejected: w.rejected.Load(),
			InFlight: w.inFlight.Load(), MaxInFlight: w.max,
		})
	}
	for _, w := range s.workers {
		add(w)
	}
	s.resolved.mu.Lock()
	for _, w := range s.resolved.m {
		add(w)
	}
	s.resolved.mu.Unlock()
	slices.SortFunc(out, func(a, b WorkerStats) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Type, b.Type))
	})
	return out
}

// maxResolvedWorkerTypes bounds the worker types a WorkerResolver may add
// to one server (namespaces × modules); past it, new ones are refused.
const maxResolvedWorkerTypes = 1 << 14

// resolvedWorkers holds the worker types a WorkerResolver supplied, by
// namespace and type: their functions and counters live as long as the
// server.
type resolvedWorkers struct {
	mu sync.Mutex
	m  map[actorKey]*workerType
}

// workerType returns the worker type typ of namespace ns: a registered Go
// one, else one the WorkerResolver supplies.
func (s *Server) workerType(ctx context.Context, ns, typ string) (*workerType, error) {
	if wt := s.workers[typ]; wt != nil {
		return wt, nil
	}
	if s.cfg.WorkerResolver == nil {
		return nil, newErr(CodeBadRequest, false, nil,
			"unknown worker type %q on server %s: register it in ServerConfig.Workers on every server", clip(typ), s.cfg.ID)
	}
	k := actorKey{ns, typ}
	r := &s.resolved
	r.mu.Lock()
	wt := r.m[k]
	r.mu.Unlock()
	if wt != nil {
		return wt, nil
	}
	fn, err := s.cfg.WorkerResolver.ResolveWorker(ctx, ns, typ)
	if err != nil {
		return nil, wrapBefore(err, "resolve worker type %q", clip(typ))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if wt := r.m[k]; wt != nil {
		return wt, nil // resolved concurrently: share its counters
	}
	if len(r.m) >= maxResolvedWorkerTypes {
		return nil, newErr(CodeUnavailable, false, nil, "server %s holds its limit of %d resolved worker types", s.cfg.ID, maxResolvedWorkerTypes)
	}
	if r.m == nil {
		r.m = map[actorKey]*workerType{}
	}
	// Kept as long as the server: a copy of the names, which may be
	// slices of a request line or an activation's inline key (CallWorker).
	k = k.owned()
	wt = &workerType{name: k.id, ns: k.ns, fn: fn, max: int64(s.cfg.MaxWorkerInFlight)}
	r.m[k] = wt
	return wt, nil
}

// newWorkerTypes builds the server's immutable worker table.
func newWorkerTypes(cfg *ServerConfig) map[string]*workerType {
	m := make(map[string]*workerType, len(cfg.Workers))
	for name, fn := range cfg.Workers {
		m[name] = &workerType{name: name, fn: fn, max: int64(cfg.MaxWorkerInFlight)}
	}
	return m
}

// checkWorkers validates ServerConfig.Workers.
func checkWorkers(c *ServerConfig) error {
	if c.MaxWorkerInFlight < 0 {
		return fmt.Errorf("nola: server config: negative MaxWorkerInFlight %d", c.MaxWorkerInFlight)
	}
	for name, fn := range c.Workers {
		if err := checkName("worker type", name, c.Limits.withDefaults(), false); err != nil {
			return fmt.Errorf("nola: server config: Workers: %s", err.Message)
		}
		if fn == nil {
			return fmt.Errorf("nola: server config: Workers: nil function for %q", name)
		}
	}
	return nil
}

// handleWorker serves a worker request that arrived through the transport:
// it runs here, never forwarded.
func (s *Server) handleWorker(ctx context.Context, req *Request) ([]byte, error) {
	return s.runWorker(ctx, req, nil)
}

// runWorker runs one invocation of req.Worker on this server, on the
// caller's goroutine. A worker needs no lease: it has no state that another
// server could also hold, and each call it makes is fenced by its callee's
// own owner. It is refused only while the server is stopping, at the
// concurrency limit, or for a type this server does not know.
func (s *Server) runWorker(ctx context.Context, req *Request, gate func(op string) error) ([]byte, error) {
	if s.stopped.Load() {
		return nil, s.notServing()
	}
	wt, err := s.workerType(ctx, req.Namespace, req.Worker)
	if err != nil {
		return nil, err
	}
	if n := wt.inFlight.Add(1); n > wt.max {
		wt.inFlight.Add(-1)
		wt.rejected.Add(1)
		return nil, newErr(CodeOverloaded, true, nil,
			"worker %s on server %s is running its limit of %d invocations; retry later or raise MaxWorkerInFlight",
			wt.name, s.cfg.ID, wt.max)
	}
	defer wt.inFlight.Add(-1)
	wt.calls.Add(1)
	wx := &WorkerContext{ctx: ctx, srv: s, ref: WorkerRef{req.Namespace, wt.name}, chain: req.Chain, gate: gate}
	res, err := wt.call(wx, req.Operation, req.Payload)
	wx.over.Store(true)
	if err == nil && len(res) > s.cfg.Limits.MaxResultBytes {
		err = ownErr(CodeTooLarge, "result of %d bytes exceeds the limit of %d", len(res), s.cfg.Limits.MaxResultBytes)
	}
	if err != nil {
		wt.errors.Add(1)
		return nil, s.workerFailed(wt, err)
	}
	return res, nil
}

func (w *workerType) call(wx *WorkerContext, op string, payload []byte) (res []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = &panicError{val: r, stack: debug.Stack()}
		}
	}()
	return w.fn(wx, op, payload)
}

// workerFailed classifies a failed worker invocation as invocationFailed
// does an actor's, minus the activation: there is none to drop.
func (s *Server) workerFailed(w *workerType, err error) error {
	var (
		pe *panicError
		ne *Error
	)
	name := "worker " + w.name
	switch {
	case errors.As(err, &pe):
		s.log.Error("worker panicked", "worker", w.name, "panic", fmt.Sprint(pe.val), "stack", string(pe.stack))
		return actorError(name, err)
	case errors.As(err, &ne) && ne.own:
		return &Error{Code: ne.Code, Message: name + ": " + ne.Message, cause: ne.cause}
	default:
		return actorError(name, err)
	}
}
