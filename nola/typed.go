package nola

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
)

// This file is the optional typed layer over Actor's raw []byte interface:
// an op router with typed handlers, typed calls and typed KV keys. It adds
// nothing to the engine; the wire format stays op name plus payload bytes,
// so typed and raw actors and callers (the CLI, HTTP, WASM) interoperate
// through the codec's encoding.

// Router is an Actor that dispatches each operation to the handler
// registered for its name, decoding the payload into the handler's request
// type and encoding its result with Codec. It replaces a hand-written
// switch on op; embed it in an actor struct and register the struct's
// methods in the Factory:
//
//	type Account struct {
//		nola.Router
//		balance int64
//	}
//
//	func NewAccount(nola.Ref) (nola.Actor, error) {
//		a := &Account{}
//		nola.Handle(&a.Router, "deposit", a.Deposit)
//		nola.Handle(&a.Router, "balance", a.Balance)
//		return a, nil
//	}
//
// The zero Router is ready to use. Register every handler before the
// Factory returns: a Router is not safe for registration concurrent with
// Invoke (invocations themselves are serial per activation).
//
// An operation without a handler fails with CodeBadRequest wrapping an
// *UnknownOpError that lists the known ones; a payload the codec cannot
// decode fails with CodeBadRequest wrapping a *DecodeError naming the
// operation and the type. Both are the caller's fault, so the caller sees
// the code (an error a handler returns is an actor_error, as for any
// actor). An empty payload decodes as the zero request, so that a raw
// caller can invoke an operation that takes nothing without knowing the
// codec.
type Router struct {
	// Codec encodes the requests and results of typed handlers; nil means
	// JSONCodec.
	Codec Codec
	ops   map[string]opHandler
}

// opHandler is one registered operation.
type opHandler struct {
	// req is the request type of a typed handler, nil for a raw one.
	req reflect.Type
	run func(cx *Context, codec Codec, payload []byte) ([]byte, error)
}

var _ Actor = (*Router)(nil)

// Handle registers fn as the handler of operation op on r. It panics if op
// is empty or already registered, or fn is nil: programming errors, found
// the first time the Factory runs.
func Handle[Req, Resp any](r *Router, op string, fn func(cx *Context, req Req) (Resp, error)) {
	if fn == nil {
		panic(fmt.Sprintf("nola: Router: nil handler for operation %q", op))
	}
	r.add(op, opHandler{req: reflect.TypeFor[Req](), run: typedHandler(op, fn)})
}

// typedHandler turns fn, a typed handler of operation op taking a context
// of type C (*Context for actors, *WorkerContext for workers), into one on
// the wire's bytes: the payload decodes with the codec (empty: the zero
// request) and a failure to decode is the caller's bad_request; the result
// encodes with it, and a failure to encode is the handler's error.
func typedHandler[C, Req, Resp any](op string, fn func(C, Req) (Resp, error)) func(C, Codec, []byte) ([]byte, error) {
	reqType := typeName[Req]()
	return func(cx C, codec Codec, payload []byte) ([]byte, error) {
		var req Req
		if len(payload) > 0 {
			if err := decodeInto(codec, payload, &req); err != nil {
				de := &DecodeError{Op: op, Type: reqType, Codec: codec.Name(), Err: err}
				return nil, &Error{Code: CodeBadRequest, Message: de.Error(), cause: de, own: true}
			}
		}
		resp, err := fn(cx, req)
		if err != nil {
			return nil, err
		}
		out, err := encodeFrom(codec, resp)
		if err != nil {
			// The handler's own result: an actor error, not the caller's.
			return nil, fmt.Errorf("operation %q: encode the %s result as %s: %w", op, typeName[Resp](), codec.Name(), err)
		}
		return out, nil
	}
}

// HandleRaw registers fn as the handler of op on r, with the payload and
// result as they are on the wire: for operations that carry opaque bytes
// beside typed ones. It panics like Handle.
func (r *Router) HandleRaw(op string, fn func(cx *Context, payload []byte) ([]byte, error)) {
	if fn == nil {
		panic(fmt.Sprintf("nola: Router: nil handler for operation %q", op))
	}
	r.add(op, opHandler{run: func(cx *Context, _ Codec, payload []byte) ([]byte, error) {
		return fn(cx, payload)
	}})
}

func (r *Router) add(op string, h opHandler) {
	if op == "" {
		panic("nola: Router: empty operation name")
	}
	if _, dup := r.ops[op]; dup {
		panic(fmt.Sprintf("nola: Router: operation %q registered twice", op))
	}
	if r.ops == nil {
		r.ops = map[string]opHandler{}
	}
	r.ops[op] = h
}

// Ops returns the registered operation names, sorted.
func (r *Router) Ops() []string {
	ops := make([]string, 0, len(r.ops))
	for op := range r.ops {
		ops = append(ops, op)
	}
	slices.Sort(ops)
	return ops
}

// Invoke runs the handler of op. It makes Router an Actor.
func (r *Router) Invoke(cx *Context, op string, payload []byte) ([]byte, error) {
	h, ok := r.ops[op]
	if !ok {
		ue := r.unknown(op)
		return nil, &Error{Code: CodeBadRequest, Message: ue.Error(), cause: ue, own: true}
	}
	return h.run(cx, codecOr(r.Codec), payload)
}

func (r *Router) unknown(op string) *UnknownOpError {
	return &UnknownOpError{Op: op, Known: r.Ops()}
}

// SetTimer is Context.SetTimer for a typed operation of this router: req
// is encoded with the router's codec, and an operation the router does not
// know, or a req that is not its handler's request type, fails now rather
// than when the timer fires. A nil req fires with an empty payload (the
// zero request). For a raw operation, req must be a []byte or nil.
func (r *Router) SetTimer(cx *Context, name string, delay, period time.Duration, op string, req any) error {
	h, ok := r.ops[op]
	if !ok {
		return fmt.Errorf("nola: timer %q: %w", name, r.unknown(op))
	}
	var payload []byte
	switch {
	case req == nil:
	case h.req == nil:
		b, ok := req.([]byte)
		if !ok {
			return fmt.Errorf("nola: timer %q: operation %q is raw and takes []byte, not %T", name, op, req)
		}
		payload = b
	default:
		if t := reflect.TypeOf(req); t != h.req && (h.req.Kind() != reflect.Interface || !t.Implements(h.req)) {
			return fmt.Errorf("nola: timer %q: operation %q takes %s, not %s", name, op, h.req, t)
		}
		codec := codecOr(r.Codec)
		b, err := encodeFrom(codec, req)
		if err != nil {
			return fmt.Errorf("nola: timer %q: encode %T as %s: %w", name, req, codec.Name(), err)
		}
		payload = b
	}
	return cx.SetTimer(name, delay, period, op, payload)
}

// maxListedOps bounds the operations an UnknownOpError's message lists.
const maxListedOps = 32

// UnknownOpError is the cause of the CodeBadRequest error a Router returns
// for an operation it has no handler for.
type UnknownOpError struct {
	Op string
	// Known lists the router's operations, sorted.
	Known []string
}

func (e *UnknownOpError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "unknown operation %q", clip(e.Op))
	if len(e.Known) == 0 {
		b.WriteString(" (the actor has no operations)")
		return b.String()
	}
	shown := e.Known[:min(len(e.Known), maxListedOps)]
	b.WriteString(" (known: ")
	b.WriteString(strings.Join(shown, ", "))
	if more := len(e.Known) - len(shown); more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	b.WriteString(")")
	return b.String()
}

// DecodeError is the cause of the error a typed operation returns when
// bytes do not decode into the expected type: a payload sent to a Router
// (CodeBadRequest: the caller sent the wrong thing), or a result received
// by Call (CodeBadRequest: the caller's result type does not match the
// actor's; the operation ran).
type DecodeError struct {
	Op    string
	Type  string // the Go type decoded into, e.g. "main.Deposit"
	Codec string // the codec's Name
	// Result is set when the bytes were an operation's result (Call), not
	// its payload (Router).
	Result bool
	Err    error
}

func (e *DecodeError) Error() string {
	what := "payload"
	if e.Result {
		what = "result"
	}
	return fmt.Sprintf("operation %q: %s is not a valid %s %s: %s", clip(e.Op), what, e.Codec, e.Type, clip(e.Err.Error()))
}

// Unwrap returns the codec's error.
func (e *DecodeError) Unwrap() error { return e.Err }

// Caller is what Call sends through: a *Client, an actor's *Context (for
// actor-to-actor calls), any raw invoker adapted by CallerFunc, or one of
// these with another codec (WithCodec).
type Caller interface {
	typedInvoke(ctx context.Context, ref Ref, op string, payload []byte) ([]byte, error)
	typedCodec() Codec
}

// CallerFunc adapts a raw invoke function (a remote client's, a test's) to
// Caller, with JSONCodec.
type CallerFunc func(ctx context.Context, ref Ref, op string, payload []byte) ([]byte, error)

func (f CallerFunc) typedInvoke(ctx context.Context, ref Ref, op string, payload []byte) ([]byte, error) {
	return f(ctx, ref, op, payload)
}
func (CallerFunc) typedCodec() Codec { return JSONCodec{} }

// WithCodec returns c with codec in place of its own (JSONCodec unless c is
// itself a WithCodec). Caller and actor must agree on the codec: set the
// same one on the actor's Router.
func WithCodec(c Caller, codec Codec) Caller { return codecCaller{c, codecOr(codec)} }

type codecCaller struct {
	Caller
	codec Codec
}

func (c codecCaller) typedCodec() Codec { return c.codec }

// typedInvoke is Client.Do; ref.Type empty invokes an existing actor of any
// type, as for Invoke.
func (c *Client) typedInvoke(ctx context.Context, ref Ref, op string, payload []byte) ([]byte, error) {
	return c.Do(ctx, Request{Namespace: ref.Namespace, ActorID: ref.ID, ActorType: ref.Type, Operation: op, Payload: payload})
}
func (*Client) typedCodec() Codec { return JSONCodec{} }

// typedInvoke is Context.Invoke. ctx must be the Context itself (or nil):
// an actor's outgoing call is bounded by its invocation, and silently
// dropping another context's deadline would mislead. ref.Namespace, if
// set, must be the actor's own: calls stay within a namespace.
func (c *Context) typedInvoke(ctx context.Context, ref Ref, op string, payload []byte) ([]byte, error) {
	if ctx != nil && ctx != context.Context(c) {
		return nil, ownErr(CodeBadRequest, "nola.Call from an actor: pass its *nola.Context as ctx, not another context")
	}
	if ref.Namespace != "" && ref.Namespace != c.Ref().Namespace {
		return nil, ownErr(CodeBadRequest, "nola.Call from an actor: namespace %q is not the actor's own (%q); calls stay within a namespace", clip(ref.Namespace), c.Ref().Namespace)
	}
	return c.Invoke(ref.ID, ref.Type, op, payload)
}
func (*Context) typedCodec() Codec { return JSONCodec{} }

// Call invokes op on the actor ref with req encoded by c's codec (JSON
// unless WithCodec says otherwise), and decodes the result into a Resp. An
// empty result decodes as the zero Resp. From inside an actor, pass its
// *Context as both ctx and c:
//
//	sum, err := nola.Call[Add, Sum](cx, cx, nola.Ref{ID: "calc", Type: "calc"}, "add", Add{1, 2})
//
// Errors are those of the raw call, plus: req fails to encode
// (CodeBadRequest; nothing was sent) or the result fails to decode into
// Resp (CodeBadRequest wrapping a *DecodeError with Result set; the
// operation ran).
func Call[Req, Resp any](ctx context.Context, c Caller, ref Ref, op string, req Req) (Resp, error) {
	return typedCall[Req, Resp](c.typedCodec(), ref.Namespace+"/"+ref.ID, op, req, func(payload []byte) ([]byte, error) {
		return c.typedInvoke(ctx, ref, op, payload)
	})
}

// CallWorker is Call for a stateless worker: it runs op of worker w with
// req encoded by c's codec and decodes the result into a Resp. c is a
// *Client, an actor's *Context or a worker's *WorkerContext (pass it as
// ctx too), possibly wrapped by WithCodec; from a Context or WorkerContext,
// w.Namespace may be empty (calls stay within the namespace). A CallerFunc
// cannot call workers (CodeBadRequest).
func CallWorker[Req, Resp any](ctx context.Context, c Caller, w WorkerRef, op string, req Req) (Resp, error) {
	wc, ok := c.(workerCaller)
	if !ok {
		var zero Resp
		return zero, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("nola.CallWorker: a %T cannot call workers; use a *nola.Client, *nola.Context or *nola.WorkerContext", c)}
	}
	return typedCall[Req, Resp](c.typedCodec(), w.Namespace+"/worker "+w.Type, op, req, func(payload []byte) ([]byte, error) {
		return wc.typedCallWorker(ctx, w, op, payload)
	})
}

// workerCaller is a Caller that can also call workers.
type workerCaller interface {
	typedCallWorker(ctx context.Context, w WorkerRef, op string, payload []byte) ([]byte, error)
}

func (c *Client) typedCallWorker(ctx context.Context, w WorkerRef, op string, payload []byte) ([]byte, error) {
	return c.CallWorker(ctx, w.Namespace, w.Type, op, payload)
}

func (c *Context) typedCallWorker(ctx context.Context, w WorkerRef, op string, payload []byte) ([]byte, error) {
	if ctx != nil && ctx != context.Context(c) {
		return nil, ownErr(CodeBadRequest, "nola.CallWorker from an actor: pass its *nola.Context as ctx, not another context")
	}
	if w.Namespace != "" && w.Namespace != c.Ref().Namespace {
		return nil, ownErr(CodeBadRequest, "nola.CallWorker from an actor: namespace %q is not the actor's own (%q); calls stay within a namespace", clip(w.Namespace), c.Ref().Namespace)
	}
	return c.CallWorker(w.Type, op, payload)
}

// typedInvoke makes a WorkerContext a Caller: nola.Call from a worker.
func (w *WorkerContext) typedInvoke(ctx context.Context, ref Ref, op string, payload []byte) ([]byte, error) {
	if err := w.typedCheck(ctx, ref.Namespace); err != nil {
		return nil, err
	}
	return w.Invoke(ref.ID, ref.Type, op, payload)
}

func (w *WorkerContext) typedCallWorker(ctx context.Context, ref WorkerRef, op string, payload []byte) ([]byte, error) {
	if err := w.typedCheck(ctx, ref.Namespace); err != nil {
		return nil, err
	}
	return w.CallWorker(ref.Type, op, payload)
}

func (*WorkerContext) typedCodec() Codec { return JSONCodec{} }

func (w *WorkerContext) typedCheck(ctx context.Context, ns string) error {
	if ctx != nil && ctx != context.Context(w) {
		return ownErr(CodeBadRequest, "a typed call from a worker: pass its *nola.WorkerContext as ctx, not another context")
	}
	if ns != "" && ns != w.ref.Namespace {
		return ownErr(CodeBadRequest, "a typed call from a worker: namespace %q is not the worker's own (%q); calls stay within a namespace", clip(ns), w.ref.Namespace)
	}
	return nil
}

func (c codecCaller) typedCallWorker(ctx context.Context, w WorkerRef, op string, payload []byte) ([]byte, error) {
	wc, ok := c.Caller.(workerCaller)
	if !ok {
		return nil, &Error{Code: CodeBadRequest, Message: fmt.Sprintf("nola.CallWorker: a %T cannot call workers", c.Caller)}
	}
	return wc.typedCallWorker(ctx, w, op, payload)
}

// typedCall encodes req, sends it and decodes the answer; target names
// the callee in messages.
func typedCall[Req, Resp any](codec Codec, target, op string, req Req, send func([]byte) ([]byte, error)) (Resp, error) {
	var resp Resp
	payload, err := encodeFrom(codec, req)
	if err != nil {
		return resp, &Error{Code: CodeBadRequest, cause: err, Message: fmt.Sprintf(
			"call %s operation %q: encode the %s request as %s: %s; nothing was sent",
			target, op, typeName[Req](), codec.Name(), clip(err.Error()))}
	}
	out, err := send(payload)
	if err != nil {
		return resp, err
	}
	if len(out) == 0 {
		return resp, nil
	}
	if err := decodeInto(codec, out, &resp); err != nil {
		de := &DecodeError{Op: op, Type: typeName[Resp](), Codec: codec.Name(), Result: true, Err: err}
		return resp, &Error{Code: CodeBadRequest, cause: de, Message: de.Error() + "; the operation ran"}
	}
	return resp, nil
}

// Key is a typed key of an actor's KV: its value is stored encoded by
// Codec (JSONCodec if nil). Declare one per key, once:
//
//	var balance = nola.Key[int64]{Name: "balance"}
//
//	n, _, err := balance.Get(cx)
//	err = balance.Put(cx, n+1)
//
// Get, Put and Delete are Context.Get, Put and Delete: same transaction,
// same fencing.
type Key[T any] struct {
	Name  string
	Codec Codec
}

// Get reads the key; found is false (and v the zero T) if it is not set.
// A stored value that does not decode into T is an error naming the key
// and T (the actor's own data: the caller sees an actor_error).
func (k Key[T]) Get(cx *Context) (v T, found bool, err error) {
	b, found, err := cx.Get([]byte(k.Name))
	if err != nil || !found {
		return v, found, err
	}
	codec := codecOr(k.Codec)
	if err := decodeInto(codec, b, &v); err != nil {
		return v, true, fmt.Errorf("nola: KV key %q: the stored value is not a valid %s %s: %w", clip(k.Name), codec.Name(), typeName[T](), err)
	}
	return v, true, nil
}

// Put stores v under the key.
func (k Key[T]) Put(cx *Context, v T) error {
	codec := codecOr(k.Codec)
	b, err := encodeFrom(codec, v)
	if err != nil {
		return fmt.Errorf("nola: KV key %q: encode %s as %s: %w", clip(k.Name), typeName[T](), codec.Name(), err)
	}
	return cx.Put([]byte(k.Name), b)
}

// Delete removes the key.
func (k Key[T]) Delete(cx *Context) error { return cx.Delete([]byte(k.Name)) }
