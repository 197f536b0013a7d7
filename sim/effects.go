package sim

import (
	"context"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt/simrt"
)

// effects records, for every client operation, the instants at which it
// changed something an operation can observe: when an actor's Invoke began
// serving it (an in-memory actor's state changes only there, under the
// activation's lock) and when the store applied a KV commit it sent. The
// first and the last bound its effect window (linearizability.Op.Onset and
// Horizon); an operation with none had no effect, and its window is its
// call.
//
// Only the simulator can know this. It narrows where porcupine may place
// an indeterminate operation — which keeps the check fast and sees late
// effects — and never decides whether the operation happened: the models
// still allow both.
//
// The operation's token travels in contexts: the client's operation
// context, the handler context the transport builds on the server (see
// transport.Invoke), the actor's nola.Context (whose Value reaches the
// handler's) for nested calls and KV commits. Timer-driven executions carry
// none: they are effects of no client operation (ticker histories are not
// checked).
type effects struct {
	w      *simrt.World
	window map[int][2]time.Duration
	// deactivations counts the Deactivate hooks run (eviction, shutdown).
	deactivations int64
}

func newEffects(w *simrt.World) *effects {
	return &effects{w: w, window: map[int][2]time.Duration{}}
}

// effect records that operation tok takes effect now.
func (e *effects) effect(tok int) {
	if tok == 0 {
		return
	}
	now := e.w.Now()
	if win, ok := e.window[tok]; ok {
		e.window[tok] = [2]time.Duration{win[0], max(win[1], now)}
		return
	}
	e.window[tok] = [2]time.Duration{now, now}
}

// span returns the first and last instants operation tok took effect, if
// it ever did.
func (e *effects) span(tok int) (first, last time.Duration, ok bool) {
	win, ok := e.window[tok]
	return win[0], win[1], ok
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

// traced wraps a factory so that every Invoke records its operation's
// effect before running. The wrapper keeps the actor's lifecycle hooks.
func (e *effects) traced(f nola.Factory) nola.Factory {
	return func(ref nola.Ref) (nola.Actor, error) {
		a, err := f(ref)
		if err != nil || a == nil {
			return a, err
		}
		t := tracedActor{inner: a, fx: e}
		act, isAct := a.(nola.Activator)
		var deact nola.Deactivator
		d, isDeact := a.(nola.Deactivator)
		if isDeact {
			deact = countedDeactivator{inner: d, fx: e}
		}
		if cr, isCreate := a.(nola.Creator); isCreate {
			// The creation hook passes through untouched (the engine
			// decides by its presence whether to read creation records).
			switch {
			case isAct && isDeact:
				return struct {
					tracedActor
					nola.Activator
					nola.Deactivator
					nola.Creator
				}{t, act, deact, cr}, nil
			case isAct:
				return struct {
					tracedActor
					nola.Activator
					nola.Creator
				}{t, act, cr}, nil
			case isDeact:
				return struct {
					tracedActor
					nola.Deactivator
					nola.Creator
				}{t, deact, cr}, nil
			}
			return struct {
				tracedActor
				nola.Creator
			}{t, cr}, nil
		}
		switch {
		case isAct && isDeact:
			return struct {
				tracedActor
				nola.Activator
				nola.Deactivator
			}{t, act, deact}, nil
		case isAct:
			return struct {
				tracedActor
				nola.Activator
			}{t, act}, nil
		case isDeact:
			return struct {
				tracedActor
				nola.Deactivator
			}{t, deact}, nil
		}
		return t, nil
	}
}

type tracedActor struct {
	inner nola.Actor
	fx    *effects
}

func (t tracedActor) Invoke(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
	t.fx.effect(tokenOf(ctx))
	return t.inner.Invoke(ctx, op, payload)
}

// countedDeactivator counts the Deactivate hooks that run.
type countedDeactivator struct {
	inner nola.Deactivator
	fx    *effects
}

func (d countedDeactivator) Deactivate(ctx *nola.Context) error {
	d.fx.deactivations++
	return d.inner.Deactivate(ctx)
}
