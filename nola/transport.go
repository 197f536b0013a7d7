package nola

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"

	"github.com/nolaproject/nola/rt"
)

// Request is one invocation as it travels from a client to a server.
type Request struct {
	Namespace string
	ActorID   string
	// ActorType is the actor's type: a registered Go type or a WASM module.
	// It creates the actor on first use and must match afterwards; empty
	// means "whatever type the actor already has".
	ActorType string
	Operation string
	Payload   []byte
	// Chain lists the actors (IDs within Namespace) whose invocations are
	// waiting for this one, outermost first. A call into an actor on its
	// own chain would wait for itself; it fails at once instead.
	Chain []string
	// CreationArgs are stored with the actor if this call creates it (it
	// did not exist and ActorType names its type), and delivered to its
	// Creator hook; ignored if the actor exists. Only the calling client
	// uses them (placement creates the actor): transports do not carry
	// them. Bounded by Limits.MaxCreationArgsBytes.
	CreationArgs []byte
	// Delete asks the receiving server, the actor's owner, to delete the
	// actor (Client.Delete sends it); ActorType, Operation and Payload
	// are unused.
	Delete bool
	// Worker, if set, names a stateless worker type (ServerConfig.Workers):
	// the request calls that worker on the server it is sent to, which runs
	// it itself whatever the owners of actors; ActorID and ActorType are
	// then empty.
	Worker string
}

// Handler serves invocations; *Server is one.
type Handler interface {
	HandleInvoke(ctx context.Context, req Request) ([]byte, error)
}

// Transport carries invocations from clients (and servers calling other
// servers' actors) to the server at addr.
//
// Errors: a transport that could not deliver the request returns an *Error
// with CodeUnavailable and Retryable set; one that delivered it but lost the
// answer returns CodeTimeout (outcome unknown). A server's own *Error comes
// back unchanged.
type Transport interface {
	Invoke(ctx context.Context, addr string, req Request) ([]byte, error)
}

// CancelForker is a context that derives a cancelable child of itself
// more cheaply than context.WithCancel does. Each call the client sends
// to another server gets a child of its context that the owner watch
// can cancel (see ownerWatch); when ctx is a CancelForker, the client
// derives that child with ForkCancel instead of the runtime's
// WithCancel. httpapi's call context is one: it makes a real deadline
// context only when something waits on it, and WithCancel of it would
// make that context and a cancelable one on top of it, where ForkCancel
// makes one context with the call's parent and deadline (issue 16:
// ≈ 6 allocations per forwarded call).
//
// The child must end whenever ctx ends while the child is in use, carry
// ctx's deadline and values, and also end — ctx itself staying as it
// is — when its cancel is called, which must be safe to call more than
// once. The client uses the child only while ctx is in use. The
// simulator's contexts are no CancelForkers: their children still come
// from the runtime.
type CancelForker interface {
	context.Context
	ForkCancel() (context.Context, context.CancelFunc)
}

// LocalNetwork connects servers and clients in one process. By default a
// call runs the handler on the caller's goroutine (task): no copies, no
// allocation. With Async, each request runs as a task of the target's
// runtime and the answer travels back through a future — the shape the
// simulator uses, where a server's crash must kill its in-flight work.
type LocalNetwork struct {
	mu sync.Mutex // serializes Listen/Unlisten
	// handlers is replaced, never modified, so calls read it without a
	// lock (listening is rare, calls are not).
	handlers atomic.Pointer[map[string]localEndpoint]
	async    bool
}

type localEndpoint struct {
	h  Handler
	rt rt.Runtime
}

// NewLocalNetwork returns an empty network. async selects the task-per-
// request mode described on LocalNetwork.
func NewLocalNetwork(async bool) *LocalNetwork {
	n := &LocalNetwork{async: async}
	n.handlers.Store(&map[string]localEndpoint{})
	return n
}

// update replaces the handler map with a modified copy.
func (n *LocalNetwork) update(f func(map[string]localEndpoint)) {
	n.mu.Lock()
	defer n.mu.Unlock()
	m := maps.Clone(*n.handlers.Load())
	f(m)
	n.handlers.Store(&m)
}

// Listen attaches h at addr; r is the runtime of the process behind h.
func (n *LocalNetwork) Listen(addr string, h Handler, r rt.Runtime) {
	n.update(func(m map[string]localEndpoint) { m[addr] = localEndpoint{h: h, rt: r} })
}

// Unlisten detaches addr: later calls fail as if the process were gone.
func (n *LocalNetwork) Unlisten(addr string) {
	n.update(func(m map[string]localEndpoint) { delete(m, addr) })
}

// Transport returns a transport whose callers run on r.
func (n *LocalNetwork) Transport(r rt.Runtime) Transport { return &localTransport{n: n, rt: r} }

type localTransport struct {
	n  *LocalNetwork
	rt rt.Runtime
}

// Direct reports whether calls run on the caller's task (not Async): they
// cannot hang on a paused server.
func (t *localTransport) Direct(string) bool { return !t.n.async }

func (t *localTransport) Invoke(ctx context.Context, addr string, req Request) ([]byte, error) {
	ep, ok := (*t.n.handlers.Load())[addr]
	if !ok {
		return nil, &Error{Code: CodeUnavailable, Message: "no server listens at " + addr, Retryable: true}
	}
	if !t.n.async {
		if s, ok := ep.h.(*Server); ok {
			// In process, from a Client that validated the request.
			return s.handleChecked(ctx, req)
		}
		return ep.h.HandleInvoke(ctx, req)
	}
	return t.invokeAsync(ctx, addr, ep, req)
}

// invokeAsync runs req as a task of the target's runtime. It is a
// function of its own so that only this path copies the request to the
// heap for the task: were the closure in Invoke, req would escape there
// and every direct call would pay an allocation of ~144 bytes for it
// (garbage that a heap of a million live actors makes expensive).
func (t *localTransport) invokeAsync(ctx context.Context, addr string, ep localEndpoint, req Request) ([]byte, error) {
	type result struct {
		b   []byte
		err error
	}
	fut := rt.NewFuture[result](t.rt)
	ep.rt.Go("handle "+req.Operation, func() {
		b, err := ep.h.HandleInvoke(ctx, req)
		fut.Resolve(result{b, err}, nil)
	})
	r, err := fut.Wait(ctx)
	if err != nil {
		return nil, &Error{Code: CodeTimeout, Message: "no answer from " + addr + ": " + err.Error(), cause: err}
	}
	return r.b, r.err
}
