package nola

import (
	"context"
	"errors"
	"fmt"

	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/kv"
)

// Code classifies an error so that callers — in Go, or over HTTP, where it is
// the stable "code" field — can branch on it.
type Code string

const (
	// CodeNotOwner: the server does not own the actor (a stale route). The
	// invocation did not run; the client re-resolves and retries.
	CodeNotOwner Code = "not_owner"
	// CodeFenced: the server's lease lapsed or its ownership was lost. If
	// Retryable, the invocation had no effect; otherwise it ran and the
	// store refused a commit of it: its writes since its last outgoing
	// call were not committed (calls it made, and the writes committed
	// before them, stand).
	CodeFenced Code = "fenced"
	// CodeUnavailable: the store, the server or the cluster cannot serve
	// now (no quorum, no live server, activation limit). Retryable errors
	// did not run.
	CodeUnavailable Code = "unavailable"
	// CodeBadRequest: invalid input (empty or oversized IDs, unknown actor
	// type, type mismatch, a call cycle); retrying cannot help.
	CodeBadRequest Code = "bad_request"
	// CodeTooLarge: a payload, result or KV commit exceeds a limit.
	CodeTooLarge Code = "too_large"
	// CodeActorError: the actor returned an error or panicked. Its KV
	// writes were discarded.
	CodeActorError Code = "actor_error"
	// CodeTimeout: a deadline passed (the call's, or the server's lease
	// during the invocation); the outcome is unknown to the caller.
	CodeTimeout Code = "timeout"
	// CodeInternal: a bug or an unexpected store response.
	CodeInternal Code = "internal"
	// CodeNotFound: the actor does not exist (Delete of a missing or
	// deleted actor).
	CodeNotFound Code = "not_found"
	// CodeOverloaded: the server is running its limit of invocations of a
	// worker type (ServerConfig.MaxWorkerInFlight). Always retryable: the
	// invocation did not run; retry later, or elsewhere.
	CodeOverloaded Code = "overloaded"
	// CodeUnsupported: this server does not offer the operation at all in
	// the mode it runs in (a store-less server has no actor KV:
	// ServerConfig.NoKV); retrying cannot help, another deployment can.
	CodeUnsupported Code = "unsupported"
)

// Error is the error type of every nola API. Match a class with errors.Is
// against the sentinels (errors.Is(err, nola.ErrNotOwner)) or inspect it with
// errors.As.
type Error struct {
	Code Code
	// Message is safe to show to the caller; it never holds host paths or
	// secrets.
	Message string
	// Retryable means the operation certainly did not run and may be sent
	// again as is.
	Retryable bool
	cause     error
	// own marks a limit or misuse error raised by the failing invocation's
	// own Context (not one that came back from a nested call).
	own bool
}

func (e *Error) Error() string {
	if e.Message == "" {
		return "nola: " + string(e.Code)
	}
	return "nola: " + string(e.Code) + ": " + e.Message
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.cause }

// Is matches the sentinel of the same code.
func (e *Error) Is(target error) bool {
	t, ok := target.(sentinel)
	return ok && Code(t) == e.Code
}

// sentinel is the type of the Err* values: a code and nothing else, so that
// no one can change what errors.Is matches.
type sentinel Code

func (s sentinel) Error() string { return "nola: " + string(s) }

// Sentinels for errors.Is: errors.Is(err, nola.ErrFenced) holds for every
// *Error with CodeFenced.
var (
	ErrNotOwner    error = sentinel(CodeNotOwner)
	ErrFenced      error = sentinel(CodeFenced)
	ErrUnavailable error = sentinel(CodeUnavailable)
	ErrBadRequest  error = sentinel(CodeBadRequest)
	ErrTooLarge    error = sentinel(CodeTooLarge)
	ErrActorError  error = sentinel(CodeActorError)
	ErrTimeout     error = sentinel(CodeTimeout)
	ErrInternal    error = sentinel(CodeInternal)
	ErrNotFound    error = sentinel(CodeNotFound)
	ErrOverloaded  error = sentinel(CodeOverloaded)
	ErrUnsupported error = sentinel(CodeUnsupported)
)

func newErr(code Code, retryable bool, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Retryable: retryable, cause: cause}
}

// CodeOf returns the code of err: its own if it is (or wraps) an *Error,
// otherwise the best classification of a store or context error.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return CodeTimeout
	case errors.Is(err, registry.ErrFenced), errors.Is(err, registry.ErrLeaseLost):
		return CodeFenced
	case errors.Is(err, registry.ErrTypeMismatch), errors.Is(err, registry.ErrActorNotFound), errors.Is(err, kv.ErrInvalid):
		return CodeBadRequest
	case errors.Is(err, kv.ErrTooLarge):
		return CodeTooLarge
	case errors.Is(err, registry.ErrNoServers), errors.Is(err, registry.ErrContention),
		errors.Is(err, kv.ErrUnavailable), errors.Is(err, kv.ErrClosed):
		return CodeUnavailable
	case errors.Is(err, kv.ErrIndeterminate):
		return CodeTimeout
	}
	return CodeInternal
}

// wrapErr turns an internal error into an *Error, prefixed by format when
// given (registry and store errors already say what they were doing). Store
// failures before anything ran are retryable when the store says nothing
// was applied.
func wrapErr(err error, retryable bool, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	code := CodeOf(err)
	msg := err.Error()
	if format != "" {
		msg = fmt.Sprintf(format, args...) + ": " + msg
	}
	return &Error{Code: code, Message: msg, Retryable: retryable && code == CodeUnavailable, cause: err}
}

// wrapBefore is wrapErr for a failure before the invocation could have
// started (placement, activation, waiting for the actor's lock): nothing
// ran, so a passed deadline or a cancelled caller is a retryable timeout,
// not an unknown outcome. Other codes keep wrapErr's rule.
func wrapBefore(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return err
	}
	w := wrapErr(err, true, format, args...).(*Error)
	if w.Code == CodeTimeout {
		w.Retryable = true
	}
	return w
}

// InvocationError returns an error for a limit or misuse of the running
// invocation itself, for actor runtimes built on nola (the WASM host: a
// guest's result over the limit). Unlike an error an actor returns, which
// reaches the caller as an actor_error, it keeps its code.
func InvocationError(code Code, message string) error {
	return &Error{Code: code, Message: message, own: true}
}

// ownErr is a limit or misuse error of the invocation's own Context.
func ownErr(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), own: true}
}

// IsRetryable reports whether err certainly left the operation undone, so
// that sending it again is safe.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

// ActorError is the error an actor returned, as the caller sees it: its
// message, under CodeActorError. Errors returned by actors cross servers as
// text, so callers match them by message, not identity.
func actorError(actor string, err error) *Error {
	e := &Error{Code: CodeActorError, Message: actor + ": " + err.Error(), cause: err}
	var inner *Error
	if errors.As(err, &inner) {
		// An error from a nested call describes that call, not this one:
		// keep its text, not its code.
		e.cause = nil
	}
	return e
}
