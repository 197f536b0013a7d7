package nola

import (
	"fmt"
	"maps"
	"slices"
)

// WorkerRouter is Router for a stateless worker: it dispatches each
// operation to the typed handler registered for it with HandleWorker,
// decoding the payload and encoding the result with Codec (JSONCodec if
// nil). Register its Invoke method as the worker:
//
//	var calc nola.WorkerRouter
//	nola.HandleWorker(&calc, "add", func(wx *nola.WorkerContext, s Sum) (int, error) { return s.A + s.B, nil })
//	cfg.Workers = map[string]nola.WorkerFunc{"calc": calc.Invoke}
//
// Register every handler before the server starts: a WorkerRouter is read
// concurrently by every invocation and must not change after. Unknown
// operations and payloads that do not decode fail as with Router.
type WorkerRouter struct {
	Codec Codec
	ops   map[string]func(wx *WorkerContext, codec Codec, payload []byte) ([]byte, error)
}

// HandleWorker registers fn as the handler of operation op on r. It panics
// if op is empty or already registered, or fn is nil.
func HandleWorker[Req, Resp any](r *WorkerRouter, op string, fn func(wx *WorkerContext, req Req) (Resp, error)) {
	switch {
	case fn == nil:
		panic(fmt.Sprintf("nola: WorkerRouter: nil handler for operation %q", op))
	case op == "":
		panic("nola: WorkerRouter: empty operation name")
	}
	if _, dup := r.ops[op]; dup {
		panic(fmt.Sprintf("nola: WorkerRouter: operation %q registered twice", op))
	}
	if r.ops == nil {
		r.ops = map[string]func(*WorkerContext, Codec, []byte) ([]byte, error){}
	}
	r.ops[op] = typedHandler(op, fn) // as Handle's: one decode and encode for both
}

// Invoke runs the handler of op: register it as the WorkerFunc.
func (r *WorkerRouter) Invoke(wx *WorkerContext, op string, payload []byte) ([]byte, error) {
	h, ok := r.ops[op]
	if !ok {
		ue := &UnknownOpError{Op: op, Known: slices.Sorted(maps.Keys(r.ops))}
		return nil, &Error{Code: CodeBadRequest, Message: ue.Error(), cause: ue, own: true}
	}
	return h(wx, codecOr(r.Codec), payload)
}
