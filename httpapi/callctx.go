package httpapi

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nolaproject/nola/nola"
)

var _ nola.CancelForker = (*callCtx)(nil)

// callCtx is a call's context: what context.WithDeadline(parent, deadline)
// returns, made only when it is needed.
//
// A WithDeadline context costs every request about seven allocations and
// a runtime timer armed and stopped (≈1 µs of the HTTP path, issue 16).
// Most calls never need them: a warm call served by this server never
// waits, so nothing calls Done, and only the deadline (Deadline) and
// whether it passed (Err) are asked. callCtx answers those two itself,
// and builds the real context — with the same parent, deadline and, if
// it already ended, the same error — the first time Done or Value is
// called (a call that waits for its actor, a forwarded call, Cause) and
// delegates to it from then on.
//
// Before the real context exists, Err reads the clock: it reports
// DeadlineExceeded from the deadline on, where a WithDeadline context
// does once its timer has run, a moment later. Whatever Err reports first
// stays, as with context.WithDeadline.
type callCtx struct {
	parent   context.Context
	deadline time.Time
	// real is the materialized context, set once.
	real atomic.Pointer[derivedCtx]

	mu sync.Mutex
	// end records, before real exists, why the call ended (endNone while
	// it runs).
	end callEnd
	// ended is set once end is not endNone: Err of a running call reads
	// it, the parent and the clock without taking mu.
	ended atomic.Bool
}

type derivedCtx struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// callEnd is why a callCtx ended before its real context existed.
type callEnd uint8

const (
	endNone     callEnd = iota
	endDeadline         // the deadline passed
	endParent           // the parent ended
	endReleased         // release was called (the handler returned)
)

func newCallCtx(parent context.Context, d time.Duration) *callCtx {
	c := &callCtx{}
	c.init(parent, time.Now(), d)
	return c
}

// init readies a zero callCtx for a call of d from now (the clock reading
// the caller already has: the handler's start time).
func (c *callCtx) init(parent context.Context, now time.Time, d time.Duration) {
	deadline := now.Add(d)
	// An earlier deadline of the parent bounds the call, as it does a
	// context.WithDeadline of it (which reports the parent's then): the
	// body's read deadline and a forwarded call's time come from Deadline.
	if pd, ok := parent.Deadline(); ok && pd.Before(deadline) {
		deadline = pd
	}
	c.parent, c.deadline = parent, deadline
}

// Deadline implements context.Context.
func (c *callCtx) Deadline() (time.Time, bool) { return c.deadline, true }

// Done implements context.Context; it builds the real context.
func (c *callCtx) Done() <-chan struct{} { return c.derived().ctx.Done() }

// Value implements context.Context; it builds the real context, so that
// what the standard library looks up through Value (context.Cause, the
// parent links of contexts derived from this one) is a real context's.
func (c *callCtx) Value(key any) any { return c.derived().ctx.Value(key) }

// ForkCancel implements nola.CancelForker: the context of a call this
// server forwards, which the client's owner watch cancels if the owner
// is found gone. Before the real context exists, it is one
// context.WithDeadline of the parent at the call's deadline — what
// context.WithCancel of the call context would be, without building the
// real context (its timer, its cancel, its link in the parent) for the
// child to hang on: ≈ 6 allocations per forwarded call (issue 16). The
// child ends as the call context would while the call runs (the parent
// ends, the deadline passes); release, the one other way the call ends,
// comes only after the handler's forwards returned, and the child's own
// deadline bounds it regardless. A call context that has ended, or whose
// real context exists, derives the child from itself, as
// context.WithCancel would.
func (c *callCtx) ForkCancel() (context.Context, context.CancelFunc) {
	if c.real.Load() == nil && c.Err() == nil {
		return context.WithDeadline(c.parent, c.deadline)
	}
	return context.WithCancel(c)
}

// Err implements context.Context.
func (c *callCtx) Err() error {
	if d := c.real.Load(); d != nil {
		return d.ctx.Err()
	}
	if !c.ended.Load() && c.endedAt(time.Now()) == endNone {
		// Running: nothing to record (the common case, without the lock).
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.real.Load(); d != nil {
		return d.ctx.Err()
	}
	if c.end == endNone {
		c.setEndLocked(c.endedAt(time.Now()))
	}
	switch c.end {
	case endDeadline:
		return context.DeadlineExceeded
	case endParent:
		return c.parent.Err()
	case endReleased:
		return context.Canceled
	}
	return nil
}

// endedAt reports whether (and why) the call has ended at now.
func (c *callCtx) endedAt(now time.Time) callEnd {
	switch {
	case c.parent.Err() != nil:
		return endParent
	case !now.Before(c.deadline):
		return endDeadline
	}
	return endNone
}

// setEndLocked records why the call ended (e may be endNone: still
// running).
func (c *callCtx) setEndLocked(e callEnd) {
	c.end = e
	if e != endNone {
		c.ended.Store(true)
	}
}

// release ends the call, as a WithDeadline context's cancel does.
func (c *callCtx) release() { c.releaseAt(time.Now()) }

// releaseAt is release with the clock read at now (the handler reads it
// once for the release, its latency metric and the response's write
// deadline).
func (c *callCtx) releaseAt(now time.Time) {
	if d := c.real.Load(); d != nil {
		d.cancel()
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.real.Load(); d != nil {
		d.cancel()
		return
	}
	if c.end == endNone {
		if c.setEndLocked(c.endedAt(now)); c.end == endNone {
			c.setEndLocked(endReleased)
		}
	}
}

// derived returns the real context, building it on first use in the state
// Err has reported: running (a WithDeadline of the parent), or ended with
// the same error.
func (c *callCtx) derived() *derivedCtx {
	if d := c.real.Load(); d != nil {
		return d
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if d := c.real.Load(); d != nil {
		return d
	}
	d := &derivedCtx{}
	switch c.end {
	case endNone, endParent:
		// A parent that ended gives its error to the child at once.
		d.ctx, d.cancel = context.WithDeadline(c.parent, c.deadline)
	case endDeadline:
		// Past the deadline, even if the parent ends too now.
		d.ctx, d.cancel = context.WithDeadline(context.WithoutCancel(c.parent), c.deadline)
	case endReleased:
		d.ctx, d.cancel = context.WithCancel(context.WithoutCancel(c.parent))
		d.cancel()
	}
	c.real.Store(d)
	return d
}
