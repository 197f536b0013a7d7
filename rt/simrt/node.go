package simrt

import (
	"context"
	"slices"
	"time"

	"github.com/nolaproject/nola/rt"
)

// Node is one simulated process: an rt.Runtime whose tasks, timers and clock
// are its own, and to which faults apply.
type Node struct {
	w    *World
	name string

	// The clock: mono = monoBase + (w.now - virtBase) * rate.
	rate     float64
	monoBase time.Duration
	virtBase time.Duration

	tasks      map[int]*task
	held       []*task
	heldTimers []*timer
	paused     bool
	dead       bool
	gen        int // bumped by Crash: timers of an older generation never fire
	noTrace    bool
}

var _ rt.Runtime = (*Node)(nil)

// Name returns the node's name.
func (n *Node) Name() string { return n.name }

// World returns the node's world.
func (n *Node) World() *World { return n.w }

// Mono is the node's monotonic clock, drifted by its rate.
func (n *Node) Mono() time.Duration {
	return n.monoBase + time.Duration(float64(n.w.now-n.virtBase)*n.rate)
}

// Now is Epoch plus the node's monotonic clock.
func (n *Node) Now() time.Time { return Epoch().Add(n.Mono()) }

// SetRate makes the node's clock run rate times as fast as virtual time from
// now on (1 is exact; 1.01 is 1% fast). Clock-rate drift within the protocol's
// bound ρ must not break anything; beyond it, tests expect violations.
func (n *Node) SetRate(rate float64) {
	n.monoBase = n.Mono()
	n.virtBase = n.w.now
	n.rate = rate
}

// Rate returns the node's clock rate.
func (n *Node) Rate() float64 { return n.rate }

// Uint64 draws from the world's PRNG.
func (n *Node) Uint64() uint64 { return n.w.rng.Uint64() }

// Tracing reports true: every traced event feeds the trace hash.
func (n *Node) Tracing() bool { return n.w.tracing && !n.noTrace }

// Trace adds an event, tagged with the node, to the trace hash.
func (n *Node) Trace(event string) { n.w.Trace(n.name + " " + event) }

// Go starts f as a task of this node.
func (n *Node) Go(name string, f func()) { n.w.spawn(n, name, f) }

// AfterFunc starts f as a task of this node after d on the node's clock.
func (n *Node) AfterFunc(d time.Duration, name string, f func()) rt.Timer {
	tm := n.w.after(n, n, d, func() { n.w.spawn(n, name, f) })
	return simTimer{tm}
}

type simTimer struct{ t *timer }

func (s simTimer) Stop() bool {
	if s.t.stopped || s.t.fired {
		return false
	}
	s.t.stopped = true
	return true
}

// Sleep blocks the calling task for d on the node's clock. Sleep(ctx, 0)
// yields: the task goes back to the run queue and the scheduler picks again.
func (n *Node) Sleep(ctx context.Context, d time.Duration) error {
	w := n.w
	t := w.current()
	if err := ctx.Err(); err != nil {
		return err
	}
	if d <= 0 {
		if t.killed {
			return w.exitKilled(t)
		}
		w.ready(t)
		t.state = stateRunnable
		w.yield <- struct{}{}
		<-t.resume
		if t.killed {
			return w.exitKilled(t)
		}
		return nil
	}
	// d is measured on n's clock (the one the caller reads), but the timer
	// belongs to the sleeping task's node: its pause holds it.
	tm := w.after(t.node, n, d, func() {
		if t.state == stateBlocked {
			t.waitTimer = nil
			w.ready(t)
		}
	})
	t.waitTimer = tm
	return w.park(t, ctx)
}

// NewSema returns a semaphore scheduled by the world.
func (n *Node) NewSema(permits int) rt.Sema { return &sema{w: n.w, n: permits} }

// WithCancel derives a context whose cancellation wakes simulated waiters.
func (n *Node) WithCancel(parent context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(parent)
	return ctx, func() {
		cancel(context.Canceled)
		n.w.cancelDirty = true
	}
}

// WithTimeout derives a context that is cancelled after d of the node's
// clock. Its Err is context.DeadlineExceeded once that happens.
func (n *Node) WithTimeout(parent context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	inner, cancel := context.WithCancelCause(parent)
	deadline := n.Now().Add(d)
	if pd, ok := parent.Deadline(); ok && pd.Before(deadline) {
		deadline = pd
	}
	c := &timeoutCtx{Context: inner, deadline: deadline}
	tm := n.w.after(n, n, d, func() {
		c.timedOut = true
		cancel(context.DeadlineExceeded)
		n.w.cancelDirty = true
	})
	return c, func() {
		tm.stopped = true
		cancel(context.Canceled)
		n.w.cancelDirty = true
	}
}

type timeoutCtx struct {
	context.Context
	deadline time.Time
	timedOut bool
}

func (c *timeoutCtx) Deadline() (time.Time, bool) { return c.deadline, true }

func (c *timeoutCtx) Err() error {
	err := c.Context.Err()
	if err != nil && c.timedOut {
		return context.DeadlineExceeded
	}
	return err
}

// Crash kills every task of the node at its next blocking point (a crashed
// process's goroutines and memory are gone) and drops its timers. The node
// stays dead until Restart.
func (n *Node) Crash() {
	n.dead = true
	n.paused = false
	n.gen++
	n.heldTimers = nil
	n.kill()
	if n.Tracing() {
		n.Trace("crash")
	}
}

// Restart brings a crashed node back with its clock running; the caller
// builds fresh process state (a new server) on it.
func (n *Node) Restart() {
	n.dead = false
	if n.Tracing() {
		n.Trace("restart")
	}
}

// Dead reports whether the node has crashed and not restarted.
func (n *Node) Dead() bool { return n.dead }

// Pause freezes the node's tasks: none runs, and its timers are held, while
// virtual time (and the node's clock) keeps going — a GC or SIGSTOP pause.
func (n *Node) Pause() {
	if n.paused || n.dead {
		return
	}
	n.paused = true
	w := n.w
	kept := w.runq[:0]
	for _, t := range w.runq {
		if t.node == n && !t.killed {
			t.state = stateHeld
			n.held = append(n.held, t)
			continue
		}
		kept = append(kept, t)
	}
	clear(w.runq[len(kept):])
	w.runq = kept
	if n.Tracing() {
		n.Trace("pause")
	}
}

// Resume lets a paused node run again; the timers that came due meanwhile
// fire now, in order.
func (n *Node) Resume() {
	if !n.paused {
		return
	}
	n.paused = false
	w := n.w
	for _, t := range n.held {
		t.state = stateRunnable
		w.runq = append(w.runq, t)
	}
	n.held = nil
	timers := n.heldTimers
	n.heldTimers = nil
	for _, tm := range timers {
		w.fire(tm)
	}
	w.cancelDirty = true
	if n.Tracing() {
		n.Trace("resume")
	}
}

// Paused reports whether the node is paused.
func (n *Node) Paused() bool { return n.paused }

func (n *Node) taskIDs() []int {
	ids := make([]int, 0, len(n.tasks))
	for id := range n.tasks {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// kill marks every task of the node killed and readies it so that its
// goroutine unwinds.
func (n *Node) kill() {
	w := n.w
	for _, id := range n.taskIDs() {
		t := n.tasks[id]
		if t.killed || t.state == stateDone {
			continue
		}
		t.killed = true
		switch t.state {
		case stateBlocked:
			if t.waitCtx != nil {
				w.dropCtxWaiter(t)
			}
			w.unblock(t, errKilled)
		case stateHeld:
			t.state = stateRunnable
			w.runq = append(w.runq, t)
		}
	}
	n.held = nil
}

// sema is the simulated rt.Sema: a permit count and a FIFO of blocked tasks.
type sema struct {
	w       *World
	n       int
	waiters []*task
}

func (s *sema) TryAcquire() bool {
	if s.n > 0 && len(s.waiters) == 0 {
		s.n--
		return true
	}
	return false
}

func (s *sema) Acquire(ctx context.Context) error {
	if s.n > 0 && len(s.waiters) == 0 {
		s.n--
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	t := s.w.current()
	t.waitSema = s
	s.waiters = append(s.waiters, t)
	return s.w.park(t, ctx)
}

func (s *sema) Release() {
	for len(s.waiters) > 0 {
		t := s.waiters[0]
		s.waiters = slices.Delete(s.waiters, 0, 1)
		t.waitSema = nil
		if t.killed {
			continue
		}
		t.wakeErr = nil
		s.w.ready(t)
		return
	}
	s.n++
}

func (s *sema) remove(t *task) {
	for i, x := range s.waiters {
		if x == t {
			s.waiters = slices.Delete(s.waiters, i, i+1)
			return
		}
	}
}
