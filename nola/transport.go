package nola

import (
	"context"
	"sync"

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

// LocalNetwork connects servers and clients in one process. By default a
// call runs the handler on the caller's goroutine (task): no copies, no
// allocation. With Async, each request runs as a task of the target's
// runtime and the answer travels back through a future — the shape the
// simulator uses, where a server's crash must kill its in-flight work.
type LocalNetwork struct {
	mu       sync.RWMutex
	handlers map[string]localEndpoint
	async    bool
}

type localEndpoint struct {
	h  Handler
	rt rt.Runtime
}

// NewLocalNetwork returns an empty network. async selects the task-per-
// request mode described on LocalNetwork.
func NewLocalNetwork(async bool) *LocalNetwork {
	return &LocalNetwork{handlers: map[string]localEndpoint{}, async: async}
}

// Listen attaches h at addr; r is the runtime of the process behind h.
func (n *LocalNetwork) Listen(addr string, h Handler, r rt.Runtime) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.handlers[addr] = localEndpoint{h: h, rt: r}
}

// Unlisten detaches addr: later calls fail as if the process were gone.
func (n *LocalNetwork) Unlisten(addr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	delete(n.handlers, addr)
}

// Transport returns a transport whose callers run on r.
func (n *LocalNetwork) Transport(r rt.Runtime) Transport { return &localTransport{n: n, rt: r} }

type localTransport struct {
	n  *LocalNetwork
	rt rt.Runtime
}

func (t *localTransport) Invoke(ctx context.Context, addr string, req Request) ([]byte, error) {
	t.n.mu.RLock()
	ep, ok := t.n.handlers[addr]
	t.n.mu.RUnlock()
	if !ok {
		return nil, &Error{Code: CodeUnavailable, Message: "no server listens at " + addr, Retryable: true}
	}
	if !t.n.async {
		return ep.h.HandleInvoke(ctx, req)
	}
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
