//go:build wasip1

package guest

import (
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/nolaproject/nola/wasm/abi"
)

//go:wasmimport wapc __guest_request
func guestRequest(op, payload unsafe.Pointer)

//go:wasmimport wapc __guest_response
func guestResponse(ptr unsafe.Pointer, n uint32)

//go:wasmimport wapc __guest_error
func guestError(ptr unsafe.Pointer, n uint32)

//go:wasmimport wapc __host_call
func hostCall(bd unsafe.Pointer, bdLen uint32, ns unsafe.Pointer, nsLen uint32, op unsafe.Pointer, opLen uint32, p unsafe.Pointer, pLen uint32) uint32

//go:wasmimport wapc __host_response_len
func hostResponseLen() uint32

//go:wasmimport wapc __host_response
func hostResponse(ptr unsafe.Pointer)

//go:wasmimport wapc __host_error_len
func hostErrorLen() uint32

//go:wasmimport wapc __host_error
func hostError(ptr unsafe.Pointer)

//go:wasmimport wapc __console_log
func consoleLog(ptr unsafe.Pointer, n uint32)

// Handler serves one invocation: an error becomes the caller's actor error,
// with its message.
type Handler func(op string, payload []byte) ([]byte, error)

// Op serves one operation.
type Op func(payload []byte) ([]byte, error)

var handler Handler

// Handle makes h the actor's handler. Call it from init.
func Handle(h Handler) { handler = h }

// HandleOps serves the operations in ops; others fail with "unknown
// operation".
func HandleOps(ops map[string]Op) {
	handler = func(op string, payload []byte) ([]byte, error) {
		f, ok := ops[op]
		if !ok {
			return nil, fmt.Errorf("unknown operation %q", op)
		}
		return f(payload)
	}
}

// Int formats v in decimal.
func Int(v int64) []byte { return strconv.AppendInt(nil, v, 10) }

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}

func sptr(s string) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

//go:wasmexport __guest_call
func guestCall(opLen, payloadLen uint32) uint32 {
	buf := make([]byte, opLen+payloadLen)
	guestRequest(ptr(buf[:opLen:opLen]), ptr(buf[opLen:]))
	op, payload := string(buf[:opLen]), buf[opLen:]
	if handler == nil {
		msg := "guest: no handler registered (call guest.Handle in init)"
		guestError(sptr(msg), uint32(len(msg)))
		return 0
	}
	res, err := handler(op, payload)
	if err != nil {
		msg := err.Error()
		guestError(sptr(msg), uint32(len(msg)))
		return 0
	}
	guestResponse(ptr(res), uint32(len(res)))
	return 1
}

// Create serves the creation hook: call it from the actor's own export
//
//	//go:wasmexport nola_create
//	func create(opLen, argsLen uint32) uint32 { return guest.Create(opLen, argsLen, onCreate) }
//
// nola calls nola_create once in the actor's life, at its first activation
// and before any invocation, with the creation arguments the creating call
// carried; f's KV writes commit with the record that the actor was created,
// so it runs to a commit exactly once, and an error fails the activation
// (the next one calls it again). The export is the opt-in: a module
// without it never sees its creation.
func Create(opLen, argsLen uint32, f func(args []byte) error) uint32 {
	buf := make([]byte, opLen+argsLen)
	guestRequest(ptr(buf[:opLen:opLen]), ptr(buf[opLen:]))
	if err := f(buf[opLen:]); err != nil {
		msg := err.Error()
		guestError(sptr(msg), uint32(len(msg)))
		return 0
	}
	guestResponse(nil, 0)
	return 1
}

// CreationArgs returns the arguments the call that created the actor
// carried (empty if none), from any invocation.
func CreationArgs() ([]byte, error) { return Call(abi.NSSelf, abi.OpCreationArgs, nil) }

// HostError is a failed host call: Code is nola's error code
// ("actor_error", "bad_request", "fenced", ...).
type HostError struct {
	Code    string
	Message string
}

func (e *HostError) Error() string { return e.Code + ": " + e.Message }

// Call makes a raw nola host call: one of nola's own (see package abi) or
// one of the host functions the embedder registered
// (wasm.Config.HostFunctions), by namespace and operation. A failure is a
// *HostError.
func Call(namespace, operation string, payload []byte) ([]byte, error) {
	ok := hostCall(sptr(abi.Binding), uint32(len(abi.Binding)), sptr(namespace), uint32(len(namespace)),
		sptr(operation), uint32(len(operation)), ptr(payload), uint32(len(payload)))
	if ok == 0 {
		b := make([]byte, hostErrorLen())
		hostError(ptr(b))
		code, msg, found := strings.Cut(string(b), ": ")
		if !found {
			code, msg = "internal", string(b)
		}
		return nil, &HostError{Code: code, Message: msg}
	}
	b := make([]byte, hostResponseLen())
	hostResponse(ptr(b))
	return b, nil
}

// Invoke calls op on another actor (Go or WASM) of the namespace and
// returns its result. Pending KV writes commit first.
func Invoke(id, typ, op string, payload []byte) ([]byte, error) {
	req := abi.AppendStringField(nil, id)
	req = abi.AppendStringField(req, typ)
	req = abi.AppendStringField(req, op)
	req = abi.AppendField(req, payload)
	return Call(abi.NSActor, abi.OpInvoke, req)
}

// CallWorker calls op of the stateless worker type typ of the namespace
// (it runs on this server, concurrently with its other invocations) and
// returns its result. Pending KV writes commit first, as for Invoke.
func CallWorker(typ, op string, payload []byte) ([]byte, error) {
	req := abi.AppendStringField(nil, typ)
	req = abi.AppendStringField(req, op)
	req = abi.AppendField(req, payload)
	return Call(abi.NSWorker, abi.OpCall, req)
}

// Get reads key from the actor's KV (seeing this invocation's writes).
func Get(key []byte) (value []byte, found bool, err error) {
	b, err := Call(abi.NSKV, abi.OpGet, key)
	if err != nil {
		return nil, false, err
	}
	if len(b) == 0 || b[0] == 0 {
		return nil, false, nil
	}
	return b[1:], true, nil
}

// Put writes key=value; the write commits when the invocation succeeds.
func Put(key, value []byte) error {
	_, err := Call(abi.NSKV, abi.OpPut, abi.AppendField(abi.AppendField(nil, key), value))
	return err
}

// Delete removes key.
func Delete(key []byte) error {
	_, err := Call(abi.NSKV, abi.OpDelete, key)
	return err
}

// KV is one entry of a scan.
type KV struct{ Key, Value []byte }

// Scan returns up to limit entries (0: all) with keys in [start, end); an
// empty end means no bound.
func Scan(start, end []byte, limit int) ([]KV, error) {
	req := abi.AppendField(abi.AppendField(nil, start), end)
	return scan(abi.OpScan, abi.AppendU32Field(req, uint32(limit)))
}

// ScanPrefix returns up to limit entries whose keys start with prefix.
func ScanPrefix(prefix []byte, limit int) ([]KV, error) {
	return scan(abi.OpScanPrefix, abi.AppendU32Field(abi.AppendField(nil, prefix), uint32(limit)))
}

func scan(op string, req []byte) ([]KV, error) {
	b, err := Call(abi.NSKV, op, req)
	if err != nil {
		return nil, err
	}
	var out []KV
	for len(b) > 0 {
		k, rest, err := abi.NextField(b)
		if err != nil {
			return nil, err
		}
		v, rest, err := abi.NextField(rest)
		if err != nil {
			return nil, err
		}
		out = append(out, KV{Key: k, Value: v})
		b = rest
	}
	return out, nil
}

// SetTimer invokes op(payload) on this actor after delay, then every
// period if period > 0.
func SetTimer(name string, delay, period time.Duration, op string, payload []byte) error {
	req := abi.AppendStringField(nil, name)
	req = abi.AppendStringField(req, op)
	req = abi.AppendField(req, payload)
	req = abi.AppendU64Field(req, uint64(delay))
	req = abi.AppendU64Field(req, uint64(period))
	_, err := Call(abi.NSTimer, abi.OpSetTimer, req)
	return err
}

// CancelTimer stops the named timer and reports whether one was set.
func CancelTimer(name string) (bool, error) {
	b, err := Call(abi.NSTimer, abi.OpCancelTimer, []byte(name))
	return err == nil && len(b) == 1 && b[0] == 1, err
}

// Log logs msg at level ("debug", "info", "warn" or "error").
func Log(level, msg string) { _, _ = Call(abi.NSLog, level, []byte(msg)) }

// ConsoleLog logs msg through waPC's __console_log.
func ConsoleLog(msg string) { consoleLog(sptr(msg), uint32(len(msg))) }

// Now returns the server's clock (the simulated one under simulation).
func Now() (time.Time, error) {
	b, err := Call(abi.NSClock, abi.OpNow, nil)
	if err != nil {
		return time.Time{}, err
	}
	ns, err := abi.U64(b)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(0, int64(ns)), nil
}

// Self returns the actor's namespace, ID and type.
func Self() (ns, id, typ string, err error) {
	b, err := Call(abi.NSSelf, abi.OpRef, nil)
	if err != nil {
		return "", "", "", err
	}
	f, err := abi.Fields(b, 3)
	if err != nil {
		return "", "", "", err
	}
	return string(f[0]), string(f[1]), string(f[2]), nil
}
