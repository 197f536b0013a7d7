package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tetratelabs/wazero/api"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/instrument"
)

// maxGuestString bounds the error messages and host-call names the host
// reads from a guest.
const maxGuestString = 64 << 10

// instantiateHostModules defines the "wapc" and "wasi_snapshot_preview1"
// host modules every guest links against.
func (h *Host) instantiateHostModules(ctx context.Context) error {
	b := h.wz.NewHostModuleBuilder(abi.ModuleWAPC)
	def := func(name string, f api.GoModuleFunc) {
		params, results := types(abi.WAPCImports[name])
		b.NewFunctionBuilder().WithGoModuleFunction(effecting(abi.ModuleWAPC, name, f), params, results).Export(name)
	}
	def(abi.GuestRequest, guestRequest)
	def(abi.GuestResponse, guestResponse)
	def(abi.GuestError, guestError)
	def(abi.HostCall, hostCall)
	def(abi.HostResponseLen, hostResponseLen)
	def(abi.HostResponse, hostResponse)
	def(abi.HostErrorLen, hostErrorLen)
	def(abi.HostError, hostError)
	def(abi.ConsoleLog, consoleLog)
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("wasm: define the waPC host module: %w", err)
	}
	if _, err := h.instantiateWASI(ctx); err != nil {
		return fmt.Errorf("wasm: define the WASI host module: %w", err)
	}
	return nil
}

func types(sig abi.Signature) (params, results []api.ValueType) {
	conv := func(ts []abi.ValType) []api.ValueType {
		out := make([]api.ValueType, len(ts))
		for i, t := range ts {
			switch t {
			case 'i':
				out[i] = api.ValueTypeI32
			case 'I':
				out[i] = api.ValueTypeI64
			case 'f':
				out[i] = api.ValueTypeF32
			case 'F':
				out[i] = api.ValueTypeF64
			}
		}
		return out
	}
	p, r := sig.Split()
	return conv(p), conv(r)
}

// read returns a view of guest memory, aborting the guest if it is out of
// bounds.
func (in *instance) read(m api.Module, what string, ptr, n uint32) []byte {
	b, ok := m.Memory().Read(ptr, n)
	if !ok {
		in.fail(TrapABI, "%s: %d bytes at %#x are outside the guest's memory", what, n, ptr)
	}
	return b
}

func (in *instance) write(m api.Module, what string, ptr uint32, b []byte) {
	if !m.Memory().Write(ptr, b) {
		in.fail(TrapABI, "%s: %d bytes at %#x are outside the guest's memory", what, len(b), ptr)
	}
}

func guestRequest(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	opPtr, payloadPtr := uint32(stack[0]), uint32(stack[1])
	if payloadPtr == instrument.RefillPtr {
		switch opPtr {
		case instrument.RefillPtr:
			in.refill(m)
			return
		case instrument.OverflowPtr:
			in.fail(TrapRuntime, "stack overflow: calls nested deeper than the limit of %d frames", in.h.cfg.MaxCallDepth)
		}
	}
	if len(in.op) > 0 && !m.Memory().WriteString(opPtr, in.op) {
		in.fail(TrapABI, "__guest_request: operation at %#x is outside the guest's memory", opPtr)
	}
	if len(in.payload) > 0 {
		in.write(m, "__guest_request: payload", payloadPtr, in.payload)
	}
}

func guestResponse(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	in.countAnswer("__guest_response")
	ptr, n := uint32(stack[0]), uint32(stack[1])
	if int64(n) > int64(in.h.cfg.MaxResultBytes) {
		in.tooLarge = int(n)
		return
	}
	b := in.read(m, "__guest_response", ptr, n)
	in.resp = append(make([]byte, 0, len(b)), b...)
}

func guestError(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	in.countAnswer("__guest_error")
	ptr, n := uint32(stack[0]), uint32(stack[1])
	n = min(n, maxGuestString)
	in.guestErr = string(in.read(m, "__guest_error", ptr, n))
	in.hasErr = true
}

func hostCall(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	in.countHostCall()
	for _, n := range []uint64{stack[1], stack[3], stack[5]} {
		if uint32(n) > maxGuestString {
			in.fail(TrapABI, "__host_call: a name of %d bytes", uint32(n))
		}
	}
	binding := in.read(m, "__host_call: binding", uint32(stack[0]), uint32(stack[1]))
	ns := in.read(m, "__host_call: namespace", uint32(stack[2]), uint32(stack[3]))
	op := in.read(m, "__host_call: operation", uint32(stack[4]), uint32(stack[5]))
	payload := in.read(m, "__host_call: payload", uint32(stack[6]), uint32(stack[7]))
	var resp []byte
	var err error
	switch {
	case in.pastDeadline():
		err = &nola.Error{Code: nola.CodeTimeout, Message: "the invocation's deadline has passed"}
	case string(binding) != abi.Binding:
		err = &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf("unknown waPC binding %q (nola's is %q)", binding, abi.Binding)}
	default:
		resp, err = in.dispatch(string(ns), string(op), payload)
	}
	if err != nil {
		in.hostResp, in.hostErr = nil, errorText(err)
		if nola.CodeOf(err) == nola.CodeUnsupported && in.unsupported == "" {
			var ne *nola.Error
			if errors.As(err, &ne) {
				in.unsupported = ne.Message
			}
		}
		stack[0] = 0
		return
	}
	in.hostResp, in.hostErr = resp, ""
	stack[0] = 1
}

// errorText is what a guest sees of a failed host call: "<code>: <message>".
func errorText(err error) string {
	var ne *nola.Error
	if errors.As(err, &ne) {
		return string(ne.Code) + ": " + ne.Message
	}
	if errors.Is(err, abi.ErrMalformed) {
		return string(nola.CodeBadRequest) + ": " + err.Error()
	}
	return string(nola.CodeOf(err)) + ": " + err.Error()
}

func hostResponseLen(ctx context.Context, _ api.Module, stack []uint64) {
	stack[0] = uint64(len(instanceOf(ctx).hostResp))
}

func hostResponse(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	if len(in.hostResp) > 0 {
		in.write(m, "__host_response", uint32(stack[0]), in.hostResp)
	}
}

func hostErrorLen(ctx context.Context, _ api.Module, stack []uint64) {
	stack[0] = uint64(len(instanceOf(ctx).hostErr))
}

func hostError(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	if len(in.hostErr) > 0 && !m.Memory().WriteString(uint32(stack[0]), in.hostErr) {
		in.fail(TrapABI, "__host_error: %d bytes at %#x are outside the guest's memory", len(in.hostErr), uint32(stack[0]))
	}
}

func consoleLog(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	in.countHostCall()
	if in.pastDeadline() {
		in.dropped++
		return
	}
	n := min(uint32(stack[1]), maxGuestString)
	in.logMsg(slog.LevelInfo, in.read(m, "__console_log", uint32(stack[0]), n))
}

// bound limits the rest of the invocation's host calls to its own deadline,
// not only the caller's, before the first one that can block (a call to a
// slow actor, a store read); invocations that make none pay nothing.
func (in *instance) bound() {
	if in.unlimit == nil {
		in.unlimit = in.cx.Limit(in.deadline - in.h.rt.Mono())
	}
}

// dispatch serves one nola host call through the invocation's context, so
// that every effect is fenced exactly like a Go actor's.
func (in *instance) dispatch(ns, op string, p []byte) ([]byte, error) {
	cx := in.cx
	if cx == nil {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "host calls are not available here"}
	}
	bad := func() ([]byte, error) {
		return nil, &nola.Error{Code: nola.CodeBadRequest, Message: fmt.Sprintf("unknown host call %s/%s", ns, op)}
	}
	switch ns {
	case abi.NSActor:
		if op != abi.OpInvoke {
			return bad()
		}
		f, err := abi.Fields(p, 4)
		if err != nil {
			return nil, err
		}
		in.bound()
		// The callee may keep its payload: it must not alias guest memory.
		id, typ, callOp, payload := string(f[0]), string(f[1]), string(f[2]), bytes.Clone(f[3])
		return offSlot(in, "a call to another actor", func() ([]byte, error) {
			return cx.Invoke(id, typ, callOp, payload)
		})

	case abi.NSWorker:
		if op != abi.OpCall {
			return bad()
		}
		f, err := abi.Fields(p, 3)
		if err != nil {
			return nil, err
		}
		in.bound()
		typ, callOp, payload := string(f[0]), string(f[1]), bytes.Clone(f[2])
		return offSlot(in, "a call to a worker", func() ([]byte, error) {
			return cx.CallWorker(typ, callOp, payload)
		})

	case abi.NSKV:
		switch op {
		case abi.OpGet:
			in.bound()
			type got struct {
				v     []byte
				found bool
			}
			g, err := offSlot(in, "a KV read", func() (got, error) {
				v, found, err := cx.Get(p)
				return got{v, found}, err
			})
			v, found := g.v, g.found
			if err != nil {
				return nil, err
			}
			in.respBuf = append(in.respBuf[:0], 0)
			if found {
				in.respBuf[0] = 1
				in.respBuf = append(in.respBuf, v...)
			}
			return in.respBuf, nil
		case abi.OpPut:
			f, err := abi.Fields(p, 2)
			if err != nil {
				return nil, err
			}
			return nil, cx.Put(f[0], f[1])
		case abi.OpDelete:
			return nil, cx.Delete(p)
		case abi.OpScan:
			f, err := abi.Fields(p, 3)
			if err != nil {
				return nil, err
			}
			limit, err := abi.U32(f[2])
			if err != nil {
				return nil, err
			}
			var end []byte
			if len(f[1]) > 0 {
				end = f[1]
			}
			in.bound()
			kvs, err := offSlot(in, "a KV scan", func() ([]nola.KV, error) { return cx.Scan(f[0], end, int(limit)) })
			return in.encodeKVs(kvs, err)
		case abi.OpScanPrefix:
			f, err := abi.Fields(p, 2)
			if err != nil {
				return nil, err
			}
			limit, err := abi.U32(f[1])
			if err != nil {
				return nil, err
			}
			in.bound()
			kvs, err := offSlot(in, "a KV scan", func() ([]nola.KV, error) { return cx.ScanPrefix(f[0], int(limit)) })
			return in.encodeKVs(kvs, err)
		}
		return bad()

	case abi.NSTimer:
		switch op {
		case abi.OpSetTimer:
			f, err := abi.Fields(p, 5)
			if err != nil {
				return nil, err
			}
			delay, err1 := abi.U64(f[3])
			period, err2 := abi.U64(f[4])
			if err := errors.Join(err1, err2); err != nil {
				return nil, err
			}
			if delay > 1<<62 || period > 1<<62 {
				return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "timer delay or period out of range"}
			}
			return nil, cx.SetTimer(string(f[0]), time.Duration(delay), time.Duration(period), string(f[1]), f[2])
		case abi.OpCancelTimer:
			if cx.CancelTimer(string(p)) {
				return []byte{1}, nil
			}
			return []byte{0}, nil
		}
		return bad()

	case abi.NSLog:
		var level slog.Level
		switch op {
		case abi.LevelDebug:
			level = slog.LevelDebug
		case abi.LevelInfo:
			level = slog.LevelInfo
		case abi.LevelWarn:
			level = slog.LevelWarn
		case abi.LevelError:
			level = slog.LevelError
		default:
			return bad()
		}
		in.logMsg(level, p)
		return nil, nil

	case abi.NSClock:
		if op != abi.OpNow {
			return bad()
		}
		in.respBuf = binary.LittleEndian.AppendUint64(in.respBuf[:0], uint64(cx.Now().UnixNano()))
		return in.respBuf, nil

	case abi.NSSelf:
		if op == abi.OpCreationArgs {
			ac, ok := cx.(*nola.Context)
			if !ok {
				return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "workers are stateless: they have no creation arguments"}
			}
			in.bound()
			return offSlot(in, "a read of the creation arguments", ac.CreationArgs)
		}
		if op != abi.OpRef {
			return bad()
		}
		r := in.ref // a worker's: its namespace and type, no ID
		b := abi.AppendStringField(in.respBuf[:0], r.Namespace)
		b = abi.AppendStringField(b, r.ID)
		in.respBuf = abi.AppendStringField(b, r.Type)
		return in.respBuf, nil
	}
	if f, ok := in.h.custom[hostFnKey{ns, op}]; ok {
		return in.callCustom(f, p)
	}
	return bad()
}

func (in *instance) encodeKVs(kvs []nola.KV, err error) ([]byte, error) {
	if err != nil {
		return nil, err
	}
	b := in.respBuf[:0]
	for _, kv := range kvs {
		b = abi.AppendField(abi.AppendField(b, kv.Key), kv.Value)
	}
	in.respBuf = b
	return b, nil
}
