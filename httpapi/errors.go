// Package httpapi is nola's versioned HTTP API (/v1) and the HTTP transport
// that servers use to reach each other. docs/http-api.md documents it.
//
// # The call path
//
// A call through the public invoke endpoint costs about what net/http
// itself costs for a request (bench/README.md, "HTTP path"), so the
// handler does per call only what a call needs. The two call endpoints
// are routed by ServeHTTP itself when their path is in canonical form
// (invokeRoute; any other form goes to the mux, which answers it as
// before): the mux's match would allocate the path values. A call's
// response writer and context are one allocation (callState); the
// context is a callCtx, which builds a real context.WithDeadline only if
// something waits on it (a warm call served here does not). The clock is
// read once at each end of a call, for the deadline, the latency metric,
// the context's release and the response's write deadline. A body of
// declared size is read into one buffer of that size, after the size is
// checked against the limit, under a read deadline that net/http itself
// clears when the body reaches its end; the result's headers are set from
// values made once; the metrics series of successful calls are looked up
// once per path, not by label values per call; the query is read without
// building maps. Forwarding between servers writes the internal URL's
// query directly and reads it back in one pass. Each shortcut is tested
// against the code it replaced (fastpath_test.go).
package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/nolaproject/nola/nola"
)

// ErrorBody is the JSON body of every error response.
type ErrorBody struct {
	Code      nola.Code `json:"code"`
	Message   string    `json:"message"`
	Retryable bool      `json:"retryable"`
}

// statusOf maps an error code to an HTTP status.
func statusOf(code nola.Code) int {
	switch code {
	case nola.CodeNotOwner:
		return http.StatusMisdirectedRequest // 421
	case nola.CodeFenced, nola.CodeUnavailable:
		return http.StatusServiceUnavailable // 503
	case nola.CodeBadRequest:
		return http.StatusBadRequest
	case nola.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case nola.CodeTimeout:
		return http.StatusGatewayTimeout
	case nola.CodeActorError:
		return http.StatusUnprocessableEntity // 422: the actor refused
	case nola.CodeOverloaded:
		return http.StatusTooManyRequests // 429: a worker's concurrency limit
	case nola.CodeUnsupported:
		return http.StatusNotImplemented // 501: not in this server's mode (store-less: no KV)
	case codeUnauthorized:
		return http.StatusUnauthorized
	case codeForbidden:
		return http.StatusForbidden
	case codeNotFound:
		return http.StatusNotFound
	case codeConflict:
		return http.StatusConflict
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed
	}
	return http.StatusInternalServerError
}

// Codes of the HTTP layer itself, beside the engine's.
const (
	codeUnauthorized nola.Code = "unauthorized"
	codeForbidden    nola.Code = "forbidden"
	codeNotFound               = nola.CodeNotFound
	// codeConflict: the request conflicts with the stored state (a module
	// that actors still use).
	codeConflict nola.Code = "conflict"
	// codeMethodNotAllowed: the path exists, the method does not (405,
	// with Allow listing the methods that do).
	codeMethodNotAllowed nola.Code = "method_not_allowed"
)

func writeError(w http.ResponseWriter, err error) {
	body := ErrorBody{Code: nola.CodeOf(err), Message: err.Error(), Retryable: nola.IsRetryable(err)}
	var ne *nola.Error
	if errors.As(err, &ne) {
		body.Message = ne.Message
	}
	writeJSON(w, statusOf(body.Code), body)
}

func writeCodeError(w http.ResponseWriter, code nola.Code, msg string) {
	writeJSON(w, statusOf(code), ErrorBody{Code: code, Message: msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readError turns an error response into a *nola.Error, so that callers on
// the other side of HTTP branch on it exactly as in-process.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var body ErrorBody
	if err := json.Unmarshal(b, &body); err != nil || body.Code == "" {
		return &nola.Error{Code: nola.CodeInternal, Message: "HTTP " + resp.Status + ": " + truncate(string(b), 200)}
	}
	return &nola.Error{Code: body.Code, Message: body.Message, Retryable: body.Retryable}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
