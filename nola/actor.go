package nola

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/internal/mutation"
)

// Actor is a Go actor's behaviour. nola calls Invoke for every operation sent
// to the actor, one at a time per activation: an actor never needs locks for
// its own state.
//
// The Context is valid only during the call; do not keep it. The returned
// slice must not be modified after Invoke returns.
type Actor interface {
	Invoke(ctx *Context, op string, payload []byte) ([]byte, error)
}

// Activator is implemented by actors that prepare themselves when activated
// (for example by loading state from KV). An error fails the activation and
// the invocation that caused it.
type Activator interface {
	Activate(ctx *Context) error
}

// Creator is implemented by actors with a creation hook. nola calls Create
// once in the actor's life: at its first activation (after Activate), with
// the creation arguments the creating call carried (Request.CreationArgs,
// Client.Create; nil if none), before any invocation runs on it.
//
// Create runs like an invocation: its KV writes commit when it returns, and
// the same fenced commit records that the actor has been created. So the
// hook runs to a commit exactly once: if it fails, or its server crashes or
// loses its lease before that commit, nothing of it stands and the next
// activation runs it again; once the commit landed, no activation runs it
// again. A hook that calls another actor commits that record before the
// call leaves (an output gate, as for KV), so a call is never repeated; a
// hook that fails after such a call is not run again either.
//
// An error fails the activation and the invocation that caused it; one
// that Create returns every time leaves the actor unusable. Actors created
// before they implemented Creator (or by a version of nola without creation
// records) never see Create. The arguments stay readable for the actor's
// life through Context.CreationArgs.
type Creator interface {
	Create(ctx *Context, args []byte) error
}

// Deactivator is implemented by actors that want to know when they are
// evicted (idle) or released (rebalancing, graceful shutdown). It is not
// called when the server crashes or fences itself: code that must survive
// those writes to KV during invocations.
type Deactivator interface {
	Deactivate(ctx *Context) error
}

// Sizer is implemented by actors that know how much memory they hold
// (caches, buffers, loaded models). The server samples SizeBytes after the
// activation's Activate hook and after each of its invocations, under the
// same serialization as Invoke (so it may read the actor's state without
// locks), and charges it to the activation: it counts in the server's
// memory (Stats.MemoryBytes, the load report placement scores by) and in
// which activations a server over its memory budget sheds first
// (docs/placement.md). It must be cheap; a negative figure counts as 0 and
// one above 1 TiB as 1 TiB. WASM actors implement it with their linear
// memory.
type Sizer interface {
	SizeBytes() int64
}

// Factory creates the in-memory instance of an activation.
type Factory func(ref Ref) (Actor, error)

// Ref names an actor.
type Ref struct {
	Namespace string
	ID        string
	Type      string
}

// FuncActor adapts a function to Actor, for actors without state.
type FuncActor func(ctx *Context, op string, payload []byte) ([]byte, error)

// Invoke calls f.
func (f FuncActor) Invoke(ctx *Context, op string, payload []byte) ([]byte, error) {
	return f(ctx, op, payload)
}

// Context is what an actor sees during one invocation: a context.Context
// carrying the caller's deadline, plus the actor's identity, its KV, calls to
// other actors and timers. Every effect is fenced: after the server's lease
// deadline none of them takes effect.
type Context struct {
	ctx   context.Context
	act   *activation
	chain []string // callers waiting on this invocation
	// rare is what few invocations need, made on first need (rareOf): a
	// Context is allocated per invocation, and without these fields it
	// fits a 64-byte size class instead of 96 — a third less garbage per
	// call, which at a million live actors is a third fewer collections
	// that scan them all.
	rare atomic.Pointer[contextRare]
	// effects is set once the invocation committed KV writes or sent a
	// call: its failure can no longer mean "nothing happened".
	effects bool
	// wrote is set by the invocation's first KV write: only then has its
	// activation's kvTxn (a cold line, see activation) anything to flush.
	wrote bool
	// over is set when the invocation returned.
	over bool
}

// contextRare holds the fields of a Context that most invocations never
// set.
type contextRare struct {
	// limited, while set (Limit), bounds the invocation's context.
	limited atomic.Pointer[limitedCtx]
	// broken is set when a commit of this invocation failed: the
	// invocation fails even if the actor ignored the error.
	broken *commitError
	// chainOut is chain plus this actor, built on the first outgoing call.
	chainOut []string
}

// rareOf returns c's rare fields, made if it has none.
func (c *Context) rareOf() *contextRare {
	if r := c.rare.Load(); r != nil {
		return r
	}
	c.rare.CompareAndSwap(nil, &contextRare{})
	return c.rare.Load()
}

// brokenErr returns the failed commit of this invocation, if any.
func (c *Context) brokenErr() *commitError {
	if r := c.rare.Load(); r != nil {
		return r.broken
	}
	return nil
}

// setBroken records a failed commit of this invocation and returns it.
func (c *Context) setBroken(err error) *commitError {
	ce := &commitError{err: err}
	c.rareOf().broken = ce
	return ce
}

// outChain returns the chain of an outgoing call: chain plus this actor,
// built once per invocation.
func (c *Context) outChain() []string {
	r := c.rareOf()
	if r.chainOut == nil {
		r.chainOut = append(append(make([]string, 0, len(c.chain)+1), c.chain...), c.act.actorID())
	}
	return r.chainOut
}

// limitedCtx boxes a context for Context.limited.
type limitedCtx struct{ context.Context }

// errOver is returned by a Context used after its invocation returned.
func errOver() error {
	return ownErr(CodeBadRequest, "nola.Context used after its invocation returned")
}

var _ context.Context = (*Context)(nil)

// Deadline, Done, Err and Value make Context a context.Context.
func (c *Context) Deadline() (time.Time, bool) { return c.cur().Deadline() }
func (c *Context) Done() <-chan struct{}       { return c.cur().Done() }
func (c *Context) Err() error                  { return c.cur().Err() }
func (c *Context) Value(key any) any           { return c.cur().Value(key) }

// cur is the invocation's context, bounded by Limit while one is in force.
func (c *Context) cur() context.Context {
	if r := c.rare.Load(); r != nil {
		if l := r.limited.Load(); l != nil {
			return l.Context
		}
	}
	return c.ctx
}

// Limit bounds what is left of the invocation — its outgoing calls and
// reads, and what Deadline and Done report — to d from now, until restore
// is called (before the invocation returns). For hosts of other runtimes
// that enforce a timeout of their own (the WASM host's InvokeTimeout).
// Commits are not bounded by it: they never inherit cancellation.
func (c *Context) Limit(d time.Duration) (restore func()) {
	ctx, cancel := c.act.srv.rt.WithTimeout(c.cur(), d)
	// Atomically: code may have handed the Context to other goroutines
	// (net/http's dialer reads it), which must see one or the other.
	r := c.rareOf()
	prev := r.limited.Swap(&limitedCtx{ctx})
	return func() {
		r.limited.Store(prev)
		cancel()
	}
}

// Ref returns the actor's name. Its strings share the activation's memory:
// kept beyond the activation's life (in a global map, say), they keep it
// alive; keep a copy (strings.Clone) instead.
func (c *Context) Ref() Ref { return c.act.ref() }

// Now returns the server's clock (the simulated one under simulation).
func (c *Context) Now() time.Time { return c.act.srv.rt.Now() }

// Logger returns a logger tagged with the actor.
func (c *Context) Logger() *slog.Logger {
	return c.act.srv.log.With("ns", c.act.ns(), "actor", c.act.actorID())
}

// Call calls the actor ref names, in this actor's namespace (ref.Namespace
// empty or the actor's own), and waits for its result: Invoke with a
// reference. nola.Call is its typed form.
func (c *Context) Call(ref Ref, op string, payload []byte) ([]byte, error) {
	return c.typedInvoke(c, ref, op, payload)
}

// Invoke calls another actor in the same namespace and waits for its
// result. Pending KV writes are committed first (an output gate: no other
// actor can observe an effect of this invocation that might still be
// undone). A call back into an actor that is waiting on this one fails with
// CodeBadRequest instead of deadlocking.
func (c *Context) Invoke(actorID, actorType, op string, payload []byte) ([]byte, error) {
	a := c.act
	t := c.txn()
	if t == nil {
		return nil, errOver()
	}
	if err := t.flush(c); err != nil {
		return nil, err
	}
	c.effects = true // conservatively: the call may reach its actor
	// The deadline is checked right before every send (the flush above,
	// placement and retries all take time), not once up front.
	res, err := a.srv.client.invokeGated(c, Request{
		Namespace: a.ns(), ActorID: actorID, ActorType: actorType,
		Operation: op, Payload: payload, Chain: c.outChain(),
	}, func() error { return a.callGate(op) })
	if err == nil {
		a.srv.sampleCall(a, actorID) // communication locality (locality.go)
	}
	return res, err
}

// callGate is checked right before each call an activation sends (or a
// worker it called sends on its behalf): no call leaves after the
// server's lease deadline.
func (a *activation) callGate(op string) error {
	if !a.srv.cfg.Mutations.Has(mutation.SkipCallGate) {
		if err := a.srv.effectAllowed(a); err != nil {
			return err
		}
	}
	if o := a.srv.cfg.Observer; o != nil {
		o.CallSent(a.event(op, false))
	}
	return nil
}

// CallWorker calls a stateless worker of the actor's namespace and waits
// for its result. The worker runs on this server, concurrently with any
// other invocations of it; it is an outgoing call like Invoke: pending KV
// writes are committed first, and the call — and every call the worker
// makes on the actor's behalf — passes the actor's lease gate. A worker
// that calls back into this actor fails with CodeBadRequest instead of
// deadlocking.
func (c *Context) CallWorker(workerType, op string, payload []byte) ([]byte, error) {
	a := c.act
	t := c.txn()
	if t == nil {
		return nil, errOver()
	}
	req := Request{Namespace: a.ns(), Worker: workerType, Operation: op, Payload: payload}
	if err := checkRequest(&req, a.srv.cfg.Limits); err != nil {
		return nil, err
	}
	if err := t.flush(c); err != nil {
		return nil, err
	}
	c.effects = true // the worker may call actors
	req.Chain = c.outChain()
	if err := a.callGate(op); err != nil {
		return nil, err
	}
	return a.srv.runWorker(c, &req, a.callGate)
}

// ExternalEffect is the gate before an effect nola cannot fence itself: a
// call to an outside service, an embedder's WASM host function. It does
// what Invoke does before a call leaves the activation, and nothing else:
//
//   - it commits the invocation's pending KV writes, fenced (an output
//     gate: the outside world must never see an effect whose cause might
//     still be rolled back);
//   - it refuses, with CodeFenced, if the server is past its lease deadline
//     or no longer under the activation's incarnation (rule 3: a fenced
//     activation must not act, whatever another owner does meanwhile; a
//     fence, a crash or Halt drops the lease or changes the incarnation);
//   - it refuses, with CodeTimeout, if the invocation's deadline has passed
//     or its caller gave up.
//
// Call it right before each such effect and skip the effect if it returns
// an error. The check cannot reach into the outside system: an effect that
// started before the lease deadline may still complete after it, as an
// outgoing call may. After ExternalEffect succeeds the invocation counts as
// having had effects: if it then passes the lease deadline its caller is
// told its effects stand (CodeTimeout), not that it may retry.
func (c *Context) ExternalEffect() error {
	t := c.txn()
	if t == nil {
		return errOver()
	}
	if err := t.flush(c); err != nil {
		return err
	}
	a := c.act
	if !a.srv.cfg.Mutations.Has(mutation.SkipCallGate) {
		// The same gate as an outgoing call's (and the same mutation
		// switches it off): an effect that leaves the activation must not
		// leave after the lease deadline.
		if err := a.srv.effectAllowed(a); err != nil {
			return err
		}
	}
	if err := c.cur().Err(); err != nil {
		return &Error{Code: CodeTimeout, Message: "the invocation's deadline passed or its caller gave up; effect refused", cause: err}
	}
	if d, ok := c.cur().Deadline(); ok && !c.Now().Before(d) {
		// The context's timer may not have fired yet (a simulated clock
		// stands exactly at the deadline).
		return &Error{Code: CodeTimeout, Message: "the invocation's deadline passed; effect refused"}
	}
	c.effects = true // conservatively: the effect may happen
	if o := a.srv.cfg.Observer; o != nil {
		// To the oracle an external effect is an outgoing call: it may
		// only leave the current activation while it runs.
		o.CallSent(a.event("external-effect", false))
	}
	return nil
}
