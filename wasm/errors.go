package wasm

import (
	"fmt"
	"strings"
)

// TrapKind says why a guest's execution was cut short.
type TrapKind string

const (
	// TrapRuntime is a WASM trap: unreachable, an out-of-bounds memory
	// access, a stack overflow, a division by zero, ...
	TrapRuntime TrapKind = "trap"
	// TrapExit: the guest called proc_exit (os.Exit in a Go guest).
	TrapExit TrapKind = "exit"
	// TrapDeadline: the invocation ran past its deadline
	// (Config.InvokeTimeout or the caller's deadline).
	TrapDeadline TrapKind = "deadline"
	// TrapFuel: the invocation burnt Config.MaxFuel checkpoints.
	TrapFuel TrapKind = "fuel"
	// TrapHostCalls: the invocation made more than Config.MaxHostCalls
	// host calls.
	TrapHostCalls TrapKind = "host_calls"
	// TrapABI: the guest broke the waPC protocol (pointers out of
	// bounds).
	TrapABI TrapKind = "abi"
)

// TrapError is returned when a guest's execution is aborted. The instance
// is discarded: the actor's in-memory state is lost and its next
// invocation runs on a fresh instance (as after a reactivation). The
// invocation's KV writes are discarded, like any failed invocation's.
// Callers see it as a nola actor error (CodeActorError) whose message
// carries this error's text; in-process, errors.As finds it.
type TrapError struct {
	// Module is "namespace/module ID".
	Module string
	// Op is the operation, or a lifecycle step ("_initialize",
	// "wapc_init").
	Op   string
	Kind TrapKind
	// Message is wazero's or the host's description, followed by what
	// the guest wrote to stdout and stderr during the invocation (a Go
	// panic's message and stack, for instance).
	Message string
}

func (e *TrapError) Error() string {
	return fmt.Sprintf("wasm %s: %s: %s: %s", e.Module, e.Op, e.Kind, e.Message)
}

// GuestError is an error the guest returned (waPC __guest_error, or
// __guest_call returning 0). The instance is kept. Callers see it as a nola
// actor error carrying the guest's message.
type GuestError struct {
	Module  string
	Op      string
	Message string
}

func (e *GuestError) Error() string { return e.Message }

// abortError carries a limit or protocol violation out of a host function:
// the host function panics with it and wazero unwinds the guest.
type abortError struct {
	kind TrapKind
	msg  string
}

func (e *abortError) Error() string { return string(e.kind) + ": " + e.msg }

// firstLines shortens a multi-line message (wazero appends stack traces)
// to at most n lines and max bytes.
func firstLines(s string, n, max int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	s = strings.TrimSpace(strings.Join(lines, "\n"))
	if len(s) > max {
		s = s[:max] + "…"
	}
	return s
}
