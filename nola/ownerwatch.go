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

type pendingCall struct {
	seq    uint64 // orders cancellations: map order must not reach behaviour
	since  time.Duration
	cancel context.CancelFunc
	gone   bool // the owner's lease was found gone (guarded by ownerWatch.mu)
}

type ownerWatch struct {
	c        *Client
	interval time.Duration // <= 0: off

	mu      sync.Mutex
	seq     uint64
	pending map[target]map[*pendingCall]struct{}
	running bool // the monitor task is running

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
	p := &pendingCall{since: w.c.rt.Mono(), cancel: cancel}
	w.mu.Lock()
	w.seq++
	p.seq = w.seq
	if w.pending == nil {
		w.pending = map[target]map[*pendingCall]struct{}{}
	}
	set := w.pending[t]
	if set == nil {
		set = map[*pendingCall]struct{}{}
		w.pending[t] = set
	}
	set[p] = struct{}{}
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		w.c.rt.Go("owner watch", w.monitor)
	}
	return p
}

// end unregisters p and reports whether its owner was found gone.
func (w *ownerWatch) end(t target, p *pendingCall) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if set := w.pending[t]; set != nil {
		delete(set, p)
		if len(set) == 0 {
			delete(w.pending, t)
		}
	}
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
		if len(w.pending) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		for t, set := range w.pending {
			for p := range set {
				if now-p.since >= w.interval {
					old = append(old, t)
					break
				}
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
	var calls []*pendingCall
	w.mu.Lock()
	for _, t := range gone {
		next[t] = struct{}{}
		for p := range w.pending[t] {
			if !p.gone {
				p.gone = true
				calls = append(calls, p)
			}
		}
	}
	w.mu.Unlock()
	slices.SortFunc(calls, func(a, b *pendingCall) int { return int(min(max(int64(a.seq)-int64(b.seq), -1), 1)) })
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
