package sim

import (
	"context"
	"time"

	"github.com/nolaproject/nola/rt/simrt"
)

// effects follows, for every client operation, the messages and tasks it
// caused that could still change something: requests to servers (and the
// handlers they start, and their nested calls to other actors) and KV
// commits sent to the store. When the last of them has ended — delivered
// and finished, applied, or lost — the operation cannot take effect any
// more: that instant is its effect horizon (linearizability.Op.Horizon).
//
// Only the simulator can know it; it narrows where porcupine may place an
// indeterminate operation, which keeps the check fast and sharp, and never
// decides whether the operation happened. An operation with anything still
// alive at the end keeps an unbounded window.
//
// The token travels in contexts: the client's operation context, the
// handler context the transport builds on the server, the actor's
// nola.Context (whose Value reaches the handler's) for nested calls and KV
// commits. Timer-driven executions carry none: timers are effects of no
// client operation (ticker histories are not checked).
type effects struct {
	w    *simrt.World
	live map[int]int
	last map[int]time.Duration
}

func newEffects(w *simrt.World) *effects {
	return &effects{w: w, live: map[int]int{}, last: map[int]time.Duration{}}
}

func (e *effects) begin(tok int) {
	if tok != 0 {
		e.live[tok]++
		e.last[tok] = max(e.last[tok], e.w.Now())
	}
}

func (e *effects) end(tok int) {
	if tok != 0 {
		e.live[tok]--
		e.last[tok] = max(e.last[tok], e.w.Now())
	}
}

// horizon returns the instant tok's last effect-capable message or task
// ended, whether one was ever started, and whether any is still alive.
func (e *effects) horizon(tok int) (at time.Duration, started, alive bool) {
	at, started = e.last[tok]
	return at, started, e.live[tok] > 0
}

type tokenKey struct{}

func withToken(ctx context.Context, tok int) context.Context {
	if tok == 0 {
		return ctx
	}
	return context.WithValue(ctx, tokenKey{}, tok)
}

func tokenOf(ctx context.Context) int {
	tok, _ := ctx.Value(tokenKey{}).(int)
	return tok
}
