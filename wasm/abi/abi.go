// Package abi is the contract between nola's WASM host and its guests: the
// waPC entry points a module must export and may import, and the wire
// format of nola's host calls.
//
// # waPC
//
// A guest exports linear memory as "memory" and
//
//	__guest_call(operation_len i32, payload_len i32) -> i32   (1 ok, 0 error)
//
// and imports, from module "wapc", any of
//
//	__guest_request(operation_ptr, payload_ptr)
//	__guest_response(ptr, len)            the result of this call
//	__guest_error(ptr, len)               the error message of this call
//	__host_call(binding_ptr, binding_len, namespace_ptr, namespace_len,
//	            operation_ptr, operation_len, payload_ptr, payload_len) -> i32
//	__host_response_len() -> i32, __host_response(ptr)
//	__host_error_len() -> i32, __host_error(ptr)
//	__console_log(ptr, len)
//
// __guest_request is required (a guest that cannot read its request is of
// no use, and the host's execution-budget checks call through it). A guest
// may also export wapc_init (called once per instance) and, for Go's
// -buildmode=c-shared, _initialize (run before anything else).
//
// # Host calls
//
// Every nola host call uses binding "nola"; the waPC namespace selects the
// capability and the operation the function. Payloads and responses are
// built from fields: a field is a 4-byte little-endian length followed by
// that many bytes. Integers inside a field are little-endian of the stated
// width. On failure __host_call returns 0 and __host_error holds
// "<code>: <message>", where code is a nola error code (bad_request,
// too_large, actor_error, fenced, ...).
//
//	namespace "actor"
//	  "invoke"       fields(actor_id, actor_type, operation, payload)
//	                 → the callee's result (raw bytes)
//	namespace "worker"
//	  "call"         fields(worker_type, operation, payload)
//	                 → the stateless worker's result (raw bytes); it runs on
//	                 this server; overloaded when at its concurrency limit
//	namespace "kv"   (the invocation's implicit transaction)
//	  "get"          key (raw)              → 0x01 value | 0x00 (absent)
//	  "put"          fields(key, value)     → empty
//	  "delete"       key (raw)              → empty
//	  "scan"         fields(start, end, limit u32); empty end: no bound
//	                 → fields(key1, value1, key2, value2, ...)
//	  "scan_prefix"  fields(prefix, limit u32) → as scan
//	namespace "timer"
//	  "set"          fields(name, operation, payload, delay_ns u64, period_ns u64)
//	                 → empty
//	  "cancel"       name (raw)             → 0x01 if a timer was set | 0x00
//	namespace "log"
//	  "debug" | "info" | "warn" | "error"   message (raw) → empty
//	namespace "clock"
//	  "now"          empty → i64 unix nanoseconds (8 bytes)
//	namespace "self"
//	  "ref"          empty → fields(namespace, actor_id, actor_type)
//	  "creation_args" empty → the actor's creation arguments (raw; empty
//	                 when it was created without any)
//
// # Creation hook
//
// A guest that exports
//
//	nola_create(operation_len i32, payload_len i32) -> i32   (1 ok, 0 error)
//
// has a creation hook (nola.Creator): it is called once in the actor's
// life, at its first activation and before any invocation, exactly like
// __guest_call with an empty operation and the creation arguments as the
// payload (read with __guest_request; answer with __guest_response, whose
// bytes are ignored, or __guest_error). Its KV writes commit with the
// record that the actor has been created, so it runs to a commit exactly
// once; an error fails the activation, and the next one calls it again.
// A guest without the export never sees its creation; any guest can read
// its arguments with self/creation_args.
//
// __console_log logs at info level. WASI (wasi_snapshot_preview1) is
// offered only as far as a Go wasip1 guest needs to start: no files, no
// network, no environment or arguments; clocks and randomness come from the
// server's runtime (virtual and seeded under simulation); stdout and stderr
// are captured into error messages and the log.
package abi

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Binding is the waPC binding of every nola host call.
const Binding = "nola"

// Host call namespaces and operations.
const (
	NSActor  = "actor"
	OpInvoke = "invoke"
	NSWorker = "worker"
	OpCall   = "call"

	NSKV           = "kv"
	OpGet          = "get"
	OpPut          = "put"
	OpDelete       = "delete"
	OpScan         = "scan"
	OpScanPrefix   = "scan_prefix"
	NSTimer        = "timer"
	OpSetTimer     = "set"
	OpCancelTimer  = "cancel"
	NSLog          = "log"
	NSClock        = "clock"
	OpNow          = "now"
	NSSelf         = "self"
	OpRef          = "ref"
	OpCreationArgs = "creation_args"
	LevelDebug     = "debug"
	LevelInfo      = "info"
	LevelWarn      = "warn"
	LevelError     = "error"
)

// Reserved reports whether nola keeps host call namespace ns for itself:
// the namespaces of its own host calls (actor, kv, timer, log, clock,
// self) and "nola", kept for later ones. An embedder's host functions
// (wasm.Config.HostFunctions) may use any other.
func Reserved(ns string) bool {
	switch ns {
	case NSActor, NSKV, NSTimer, NSLog, NSClock, NSSelf, "nola":
		return true
	}
	return false
}

// waPC import and export names.
const (
	ModuleWAPC      = "wapc"
	ModuleWASI      = "wasi_snapshot_preview1"
	GuestCall       = "__guest_call"
	GuestRequest    = "__guest_request"
	GuestResponse   = "__guest_response"
	GuestError      = "__guest_error"
	HostCall        = "__host_call"
	HostResponse    = "__host_response"
	HostResponseLen = "__host_response_len"
	HostError       = "__host_error"
	HostErrorLen    = "__host_error_len"
	ConsoleLog      = "__console_log"
	WAPCInit        = "wapc_init"
	CreateExport    = "nola_create"
	Initialize      = "_initialize"
	Memory          = "memory"
)

// ValType is a WASM value type in a signature: 'i' i32, 'I' i64, 'f' f32,
// 'F' f64.
type ValType = byte

// Signature is a function type written as params "->" results, e.g.
// "ii->i".
type Signature string

// WAPCImports are the functions a guest may import from module "wapc".
var WAPCImports = map[string]Signature{
	GuestRequest:    "ii->",
	GuestResponse:   "ii->",
	GuestError:      "ii->",
	HostCall:        "iiiiiiii->i",
	HostResponseLen: "->i",
	HostResponse:    "i->",
	HostErrorLen:    "->i",
	HostError:       "i->",
	ConsoleLog:      "ii->",
}

// WASIImports are the wasi_snapshot_preview1 functions the host offers.
// Everything that would reach files, sockets, the environment or the
// arguments answers as if there were none.
var WASIImports = map[string]Signature{
	"args_get":                "ii->i",
	"args_sizes_get":          "ii->i",
	"environ_get":             "ii->i",
	"environ_sizes_get":       "ii->i",
	"clock_res_get":           "ii->i",
	"clock_time_get":          "iIi->i",
	"fd_advise":               "iIIi->i",
	"fd_allocate":             "iII->i",
	"fd_close":                "i->i",
	"fd_datasync":             "i->i",
	"fd_fdstat_get":           "ii->i",
	"fd_fdstat_set_flags":     "ii->i",
	"fd_fdstat_set_rights":    "iII->i",
	"fd_filestat_get":         "ii->i",
	"fd_filestat_set_size":    "iI->i",
	"fd_filestat_set_times":   "iIIi->i",
	"fd_pread":                "iiiIi->i",
	"fd_prestat_get":          "ii->i",
	"fd_prestat_dir_name":     "iii->i",
	"fd_pwrite":               "iiiIi->i",
	"fd_read":                 "iiii->i",
	"fd_readdir":              "iiiIi->i",
	"fd_renumber":             "ii->i",
	"fd_seek":                 "iIii->i",
	"fd_sync":                 "i->i",
	"fd_tell":                 "ii->i",
	"fd_write":                "iiii->i",
	"path_create_directory":   "iii->i",
	"path_filestat_get":       "iiiii->i",
	"path_filestat_set_times": "iiiiIIi->i",
	"path_link":               "iiiiiii->i",
	"path_open":               "iiiiiIIii->i",
	"path_readlink":           "iiiiii->i",
	"path_remove_directory":   "iii->i",
	"path_rename":             "iiiiii->i",
	"path_symlink":            "iiiii->i",
	"path_unlink_file":        "iii->i",
	"poll_oneoff":             "iiii->i",
	"proc_exit":               "i->",
	"proc_raise":              "i->i",
	"random_get":              "ii->i",
	"sched_yield":             "->i",
	"sock_accept":             "iii->i",
	"sock_recv":               "iiiiii->i",
	"sock_send":               "iiiii->i",
	"sock_shutdown":           "ii->i",
}

// Split returns the parameter and result types of s.
func (s Signature) Split() (params, results []ValType) {
	for i := 0; i+1 < len(s); i++ {
		if s[i] == '-' && s[i+1] == '>' {
			return []ValType(s[:i]), []ValType(s[i+2:])
		}
	}
	return []ValType(s), nil
}

// ErrMalformed is returned (wrapped) for payloads that do not follow the
// wire format.
var ErrMalformed = errors.New("abi: malformed host call payload")

// AppendField appends one length-prefixed field to dst.
func AppendField(dst, field []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(field)))
	return append(dst, field...)
}

// AppendStringField is AppendField for a string.
func AppendStringField(dst []byte, field string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(field)))
	return append(dst, field...)
}

// AppendU32Field appends a field holding v as 4 little-endian bytes.
func AppendU32Field(dst []byte, v uint32) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 4)
	return binary.LittleEndian.AppendUint32(dst, v)
}

// AppendU64Field appends a field holding v as 8 little-endian bytes.
func AppendU64Field(dst []byte, v uint64) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, 8)
	return binary.LittleEndian.AppendUint64(dst, v)
}

// Fields splits b into exactly n fields. The fields alias b.
func Fields(b []byte, n int) ([][]byte, error) {
	out := make([][]byte, 0, n)
	for len(out) < n {
		f, rest, err := NextField(b)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
		b = rest
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes after %d fields", ErrMalformed, len(b), n)
	}
	return out, nil
}

// NextField returns the first field of b and the rest.
func NextField(b []byte) (field, rest []byte, err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: truncated field length", ErrMalformed)
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, fmt.Errorf("%w: field of %d bytes, %d left", ErrMalformed, n, len(b)-4)
	}
	return b[4 : 4+n], b[4+n:], nil
}

// U32 decodes a 4-byte field.
func U32(f []byte) (uint32, error) {
	if len(f) != 4 {
		return 0, fmt.Errorf("%w: u32 field of %d bytes", ErrMalformed, len(f))
	}
	return binary.LittleEndian.Uint32(f), nil
}

// U64 decodes an 8-byte field.
func U64(f []byte) (uint64, error) {
	if len(f) != 8 {
		return 0, fmt.Errorf("%w: u64 field of %d bytes", ErrMalformed, len(f))
	}
	return binary.LittleEndian.Uint64(f), nil
}
