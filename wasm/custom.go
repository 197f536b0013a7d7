package wasm

import (
	"bytes"
	"context"
	"fmt"
	"runtime/debug"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm/abi"
)

// HostFunction is a host function an embedder gives its WASM guests: the
// answer to a waPC __host_call of binding "nola" with this Namespace and
// Operation (in the AssemblyScript and Go guest SDKs, a host call with that
// namespace and operation; in wapc.h, wapc_host_call).
//
// A call is an external effect of the invocation (nola.Context's
// ExternalEffect): before Func runs, the invocation's pending KV writes are
// committed, fenced, and the call is refused if the server is past its
// lease deadline, the activation was dropped, or the invocation's deadline
// has passed. So Func never runs for a fenced activation, and whatever it
// does cannot be undone by a later failure of the invocation: the caller
// of a failed invocation is told its effects may have happened.
//
// Func runs on the invoking task, without the guest's execution slot
// (Config.GuestSlots): it may block, but only through ctx, which carries
// the invocation's deadline (the smaller of Config.InvokeTimeout and the
// caller's). Under the simulator it must block only through the server's
// rt.Runtime, like any engine code. An error reaches the guest as the waPC
// host error "<code>: <message>" (the *nola.Error's code, or nola.CodeOf's
// classification); a panic as "internal: ...", logged with its stack. The
// result, at most Config.MaxHostCallBytes, becomes the guest's host
// response; Func must not modify it after returning.
type HostFunction struct {
	Namespace, Operation string
	Func                 func(ctx context.Context, call HostCall) ([]byte, error)
}

// HostCall is one call of a HostFunction.
type HostCall struct {
	// Namespace and Operation are the called function's.
	Namespace, Operation string
	// Payload is the guest's payload, a copy Func may keep.
	Payload []byte
	// Ref is the calling actor.
	Ref nola.Ref
	// Context is the calling invocation's context, for the actor's KV
	// (reads see the invocation's writes; writes join its transaction
	// and commit when it ends), calls to other actors and its logger.
	// Valid only during the call.
	Context *nola.Context
}

// MaxHostNameBytes bounds the namespace and operation of a HostFunction.
const MaxHostNameBytes = 255

// DefaultMaxHostCallBytes is Config.MaxHostCallBytes's default.
const DefaultMaxHostCallBytes = 1 << 20

// HostFunctionError is the error New (and node.Start) return for a
// HostFunction that cannot be registered.
type HostFunctionError struct {
	Namespace, Operation string
	// Problem says what is wrong and what to do about it.
	Problem string
}

func (e *HostFunctionError) Error() string {
	return fmt.Sprintf("wasm: host function %q/%q: %s", e.Namespace, e.Operation, e.Problem)
}

type hostFnKey struct{ ns, op string }

// hostFn is a registered HostFunction with the names its errors use, built
// once.
type hostFn struct {
	HostFunction
	name string // "ns/op"
	what string // for a slot wait that fails after the call
}

// CheckHostFunctions checks fns as New does: every entry names a namespace
// and an operation of 1 to MaxHostNameBytes bytes, outside the namespaces
// nola reserves (abi.Reserved), has a Func, and appears once. It returns a
// *HostFunctionError for the first entry that fails.
func CheckHostFunctions(fns []HostFunction) error {
	_, err := hostFunctionTable(fns)
	return err
}

func hostFunctionTable(fns []HostFunction) (map[hostFnKey]*hostFn, error) {
	if len(fns) == 0 {
		return nil, nil
	}
	t := make(map[hostFnKey]*hostFn, len(fns))
	for i := range fns {
		f := &fns[i]
		bad := func(format string, args ...any) error {
			return &HostFunctionError{Namespace: f.Namespace, Operation: f.Operation, Problem: fmt.Sprintf(format, args...)}
		}
		switch {
		case f.Namespace == "" || f.Operation == "":
			return nil, bad("the namespace and the operation must not be empty")
		case len(f.Namespace) > MaxHostNameBytes || len(f.Operation) > MaxHostNameBytes:
			return nil, bad("the namespace and the operation must be at most %d bytes each", MaxHostNameBytes)
		case abi.Reserved(f.Namespace):
			return nil, bad("namespace %q is reserved for nola's own host calls; choose another", f.Namespace)
		case f.Func == nil:
			return nil, bad("Func is nil")
		}
		k := hostFnKey{f.Namespace, f.Operation}
		if _, dup := t[k]; dup {
			return nil, bad("registered twice; each namespace and operation may have one function")
		}
		name := f.Namespace + "/" + f.Operation
		t[k] = &hostFn{HostFunction: *f, name: name, what: "host call " + name} // a copy: the caller's slice may change later
	}
	return t, nil
}

// callCustom serves a host call to the embedder's function f.
func (in *instance) callCustom(f *hostFn, p []byte) ([]byte, error) {
	name := f.name
	limit := in.h.cfg.MaxHostCallBytes
	if len(p) > limit {
		return nil, &nola.Error{Code: nola.CodeTooLarge, Message: fmt.Sprintf(
			"host call %s: payload of %d bytes exceeds this host's limit of %d; send less per call", name, len(p), limit)}
	}
	// Bounded by the invocation's own deadline before the gate, which
	// then refuses a call past it.
	cx, ok := in.cx.(*nola.Context)
	if !ok {
		// A stateless worker's invocation: HostCall names a calling actor
		// and hands over its KV, and a worker has neither.
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf(
			"host call %s: custom host functions serve actors only; a module run as a stateless worker cannot call them", name)}
	}
	in.bound()
	if err := cx.ExternalEffect(); err != nil {
		return nil, err
	}
	call := HostCall{Namespace: f.Namespace, Operation: f.Operation, Payload: bytes.Clone(p), Ref: cx.Ref(), Context: cx}
	res, err := offSlot(in, f.what, func() ([]byte, error) { return in.runCustom(f, call) })
	if err != nil {
		return nil, err
	}
	if len(res) > limit {
		return nil, &nola.Error{Code: nola.CodeTooLarge, Message: fmt.Sprintf(
			"host call %s: result of %d bytes exceeds this host's limit of %d (the call itself ran)", name, len(res), limit)}
	}
	return res, nil
}

// runCustom calls f, turning a panic into an internal error for the guest:
// a bug in the embedder's function is an error the guest can handle, not a
// trap that costs the actor its instance (wazero would recover the panic
// and abort the guest).
func (in *instance) runCustom(f *hostFn, call HostCall) (res []byte, err error) {
	defer func() {
		if r := recover(); r != nil {
			in.h.log.Error("wasm host function panicked", "ns", in.ref.Namespace, "actor", in.ref.ID,
				"function", f.name, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			res, err = nil, &nola.Error{Code: nola.CodeInternal, Message: "host function " + f.name + " failed (see the server log)"}
		}
	}()
	return f.Func(call.Context, call)
}
