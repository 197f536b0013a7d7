package nola

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Watching owners of forwarded calls (issue 10, finding 6).
//
// A call forwarded to an owner that is paused or cut off would otherwise
// wait for its own deadline. While forwards are in flight, the client
// checks every interval whether the owners of those pending longer than
// one interval still hold their lease in the store (one range read of the
// server records, whatever the number of calls). Once an owner's record is
// gone or belongs to another incarnation, that incarnation has fenced
// itself already — its local deadline precedes the store's expiry (Lemma 2
// of docs/proofs/single-activation.md) — so it starts, commits and sends
// nothing more, and waiting longer cannot tell the caller anything new.
// The client then
//   - cancels the calls in flight to it: one the transport says was never
//     sent is placed again and re-sent; any other may have run before the
//     fence and answers timeout (outcome unknown, not retryable) at once;
//   - forgets every cached route to that incarnation, so new calls
//     re-place at once instead of hanging on the old owner.
// Neither step bears on safety: a timeout is an unknown outcome, and
// routing never is (rule 5): only the owner under its current incarnation
// runs anything.

// target is one incarnation of a server, as a route names it.
type target struct {
	sid string
	inc int64
}

func (t target) compare(o target) int {
	if c := strings.Compare(t.sid, o.sid); c != 0 {
		return c
	}
	return int(min(max(t.inc-o.inc, -1), 1))
}

// pendingCall is one forward in flight. The pending calls form a list in
// the order they began — oldest first, so their since only grows along
// it — linked through the calls themselves: begin and end are a
// few pointer writes under the lock, with no map to grow, hash or empty
// (issue 16: a map of maps per target cost the forwarded path a map
// allocation whenever a target's set emptied and filled again).
type pendingCall struct {
	since  time.Duration
	owner  target
	cancel context.CancelFunc
	gone   bool // the owner's lease was found gone (guarded by ownerWatch.mu)

	prev, next *pendingCall // guarded by ownerWatch.mu
}

type ownerWatch struct {
	c        *Client
	interval time.Duration // <= 0: off

	mu         sync.Mutex
	head, tail *pendingCall // the calls in flight, oldest first
	running    bool         // the monitor task is running

	// dead holds incarnations found gone; replaced, never modified, so
	// that routing reads it without a lock.
	dead atomic.Pointer[map[target]struct{}]
}

// maxDead bounds the dead set; past it the set starts over (a forgotten
// entry costs at most one call that waits for the owner again).
const maxDead = 1024

// isDead reports whether t was found gone.
func (w *ownerWatch) isDead(t target) bool {
	m := w.dead.Load()
	if m == nil || len(*m) == 0 {
		return false
	}
	_, ok := (*m)[t]
	return ok
}

// begin registers a forward to t; end must follow.
func (w *ownerWatch) begin(t target, cancel context.CancelFunc) *pendingCall {
	p := &pendingCall{owner: t, cancel: cancel}
	w.mu.Lock()
	// The clock is read under the lock so that since grows along the
	// list: the monitor stops at the first call that is recent.
	p.since = w.c.rt.Mono()
	if p.prev = w.tail; w.tail != nil {
		w.tail.next = p
	} else {
		w.head = p
	}
	w.tail = p
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		w.c.rt.Go("owner watch", w.monitor)
	}
	return p
}

// end unregisters p and reports whether its owner was found gone.
func (w *ownerWatch) end(p *pendingCall) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if p.prev != nil {
		p.prev.next = p.next
	} else {
		w.head = p.next
	}
	if p.next != nil {
		p.next.prev = p.prev
	} else {
		w.tail = p.prev
	}
	p.prev, p.next = nil, nil
	return p.gone
}

// monitor runs while forwards are pending: it ends once none is.
func (w *ownerWatch) monitor() {
	for {
		// Background: the task ends by itself when no call is pending;
		// every pending call is bounded by its own deadline.
		if err := w.c.rt.Sleep(context.Background(), w.interval); err != nil {
			w.stop()
			return
		}
		now := w.c.rt.Mono()
		var old []target
		w.mu.Lock()
		if w.head == nil {
			w.running = false
			w.mu.Unlock()
			return
		}
		// Oldest first: the calls from the first recent one on are all
		// recent. Few servers: old stays short, a linear check dedups it.
		for p := w.head; p != nil && now-p.since >= w.interval; p = p.next {
			if !slices.Contains(old, p.owner) {
				old = append(old, p.owner)
			}
		}
		w.mu.Unlock()
		if len(old) == 0 {
			continue
		}
		slices.SortFunc(old, target.compare)
		ctx, cancel := w.c.rt.WithTimeout(context.Background(), 4*w.interval)
		live, err := w.c.reg.ServerIncarnations(ctx)
		cancel()
		if err != nil {
			continue // the store cannot say: keep waiting, as before
		}
		var gone []target
		for _, t := range old {
			if inc, ok := live[t.sid]; !ok || inc != t.inc {
				gone = append(gone, t)
			}
		}
		if len(gone) > 0 {
			w.markGone(gone)
		}
	}
}

func (w *ownerWatch) stop() {
	w.mu.Lock()
	w.running = false
	w.mu.Unlock()
}

// markGone records the incarnations as gone and cancels their pending
// calls.
func (w *ownerWatch) markGone(gone []target) {
	cur := w.dead.Load()
	next := map[target]struct{}{}
	if cur != nil && len(*cur)+len(gone) <= maxDead {
		for t := range *cur {
			next[t] = struct{}{}
		}
	}
	for _, t := range gone {
		next[t] = struct{}{}
	}
	// The list is in the order the calls began: they are cancelled
	// oldest first (deterministically, as the simulator needs).
	var calls []*pendingCall
	w.mu.Lock()
	for p := w.head; p != nil; p = p.next {
		if !p.gone && slices.Contains(gone, p.owner) {
			p.gone = true
			calls = append(calls, p)
		}
	}
	w.mu.Unlock()
	w.dead.Store(&next)
	if w.c.rt.Tracing() {
		for _, t := range gone {
			w.c.rt.Trace("owner gone " + t.sid)
		}
	}
	for _, p := range calls {
		p.cancel()
	}
}

// DirectTransport is implemented by transports that run some calls on the
// caller's own task (in process): such a call cannot hang on a paused peer,
// so the client does not watch its owner.
type DirectTransport interface {
	Direct(addr string) bool
}
