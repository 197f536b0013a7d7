// Package simrt is the deterministic implementation of rt.Runtime.
//
// A World holds virtual time, a seeded PRNG and a scheduler. Every task is a
// goroutine, but only one runs at a time: the scheduler hands a baton to a
// task chosen by the PRNG among the runnable ones, and takes it back when the
// task blocks on a runtime primitive or returns. When no task is runnable,
// virtual time jumps to the next timer. The same seed therefore replays the
// same interleaving, the same timer order and the same random numbers, and
// the run's trace hash proves it.
//
// Each simulated process is a Node with its own clock (which may drift), its
// own tasks, and faults that apply to exactly those: Crash kills every task
// of the node at its next blocking point, Pause freezes them (their timers are
// held too) while virtual time runs on, Resume releases them.
//
// Rules for code running on a World: block only through the runtime (Sema,
// Sleep, Future, Queue), never on channels, sync.Cond or real time; hold
// sync.Mutex only across code that does not block. Under those rules a
// sync.Mutex is never contended, because only one task runs at a time.
package simrt

import (
	"container/heap"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// Epoch is the wall-clock instant at virtual time zero. Fixed, so that
// timestamps in simulated records are reproducible.
func Epoch() time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC) }

// World is one deterministic universe. It is driven by a single goroutine
// (the one that calls Run); tasks run one at a time in between.
type World struct {
	seed uint64
	rng  *rand.Rand
	now  time.Duration

	runq     []*task
	timers   timerHeap
	timerSeq uint64
	taskSeq  int
	cur      *task
	yield    chan struct{}

	// Tasks blocked with a cancellable context; scanned when a
	// cancellation may have happened.
	ctxWaiters  []*task
	cancelDirty bool

	nodes    []*Node
	bug      *buggify // nil: every fault point is off
	hash     uint64
	steps    int64
	events   int64
	maxSteps int64
	traceOut io.Writer
	panicked string
	tracing  bool
}

// New returns a world whose every choice derives from seed.
func New(seed uint64) *World {
	return &World{
		seed:     seed,
		rng:      rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		yield:    make(chan struct{}),
		hash:     fnvOffset,
		maxSteps: 50_000_000,
		tracing:  true,
	}
}

// Seed returns the world's seed.
func (w *World) Seed() uint64 { return w.seed }

// Now returns the current virtual time (the world's, without drift).
func (w *World) Now() time.Duration { return w.now }

// Steps returns how many times the scheduler handed the baton to a task.
func (w *World) Steps() int64 { return w.steps }

// Hash returns the trace hash: every scheduling decision (task and virtual
// time) and every traced event so far, folded into one number.
func (w *World) Hash() uint64 { return w.hash }

// SetTraceWriter mirrors the trace, one event a line, to out (for debugging
// a seed). Nil turns it off.
func (w *World) SetTraceWriter(out io.Writer) { w.traceOut = out }

// SetMaxSteps bounds a run; Run fails when the bound is reached (a livelock).
func (w *World) SetMaxSteps(n int64) { w.maxSteps = n }

// Trace adds an event to the trace hash.
func (w *World) Trace(event string) {
	w.events++
	w.mix(event)
	if w.traceOut != nil {
		fmt.Fprintf(w.traceOut, "%12d %s\n", w.now, event)
	}
}

// Rand returns the world's PRNG for use by the simulation driver (fault
// schedules, workloads) between or within tasks.
func (w *World) Rand() *rand.Rand { return w.rng }

// Node returns a new node: a runtime for one simulated process.
func (w *World) Node(name string) *Node {
	n := &Node{w: w, name: name, rate: 1, tasks: map[int]*task{}}
	w.nodes = append(w.nodes, n)
	return n
}

type taskState uint8

const (
	stateRunnable taskState = iota
	stateRunning
	stateBlocked
	stateHeld // runnable, but its node is paused
	stateDone
)

type task struct {
	id     int
	name   string
	node   *Node
	resume chan struct{}
	state  taskState

	// What the task is blocked on, so that cancellation and crashes can
	// take it back out.
	waitCtx   context.Context
	waitSema  *sema
	waitTimer *timer
	wakeErr   error

	killed  bool
	exiting bool
}

// Run starts main as a task on a node named "main" and schedules tasks
// until main returns. Then every remaining task is killed (its goroutine
// exits at its blocking point) so nothing leaks. Run returns an error if the
// world deadlocks (main blocked with nothing runnable and no timer pending) or
// runs out of steps. A panic in any task is re-raised here.
func (w *World) Run(main func()) error {
	node := w.Node("main")
	done := false
	node.Go("main", func() {
		// Deferred, so that a main that exits early (t.Fatal calls
		// runtime.Goexit) still ends the run.
		defer func() { done = true }()
		main()
	})
	err := w.schedule(func() bool { return done })
	w.killAll()
	return err
}

// schedule runs the scheduler until stop reports true, or nothing can run.
func (w *World) schedule(stop func() bool) error {
	for !stop() {
		if w.panicked != "" {
			panic(w.panicked)
		}
		if w.cancelDirty {
			w.scanCancellations()
		}
		if len(w.runq) == 0 {
			// A context may have been cancelled by code that does not go
			// through the runtime; look before time moves on.
			w.scanCancellations()
		}
		if len(w.runq) > 0 {
			if w.steps >= w.maxSteps {
				return fmt.Errorf("simrt: seed %d: step limit %d reached at virtual %v (livelock?)", w.seed, w.maxSteps, w.now)
			}
			i := int(w.rng.Uint64N(uint64(len(w.runq))))
			t := w.runq[i]
			last := len(w.runq) - 1
			w.runq[i] = w.runq[last]
			w.runq[last] = nil
			w.runq = w.runq[:last]
			w.step(t)
			continue
		}
		if w.timers.Len() > 0 {
			tm := heap.Pop(&w.timers).(*timer)
			if tm.when > w.now {
				w.now = tm.when
			}
			w.fire(tm)
			continue
		}
		return fmt.Errorf("simrt: seed %d: deadlock at virtual %v: nothing runnable and no timer pending; blocked: %s",
			w.seed, w.now, w.blockedSummary())
	}
	if w.panicked != "" {
		panic(w.panicked)
	}
	return nil
}

func (w *World) step(t *task) {
	w.steps++
	w.mixInt(int64(t.id))
	w.mixInt(int64(w.now))
	if w.traceOut != nil {
		fmt.Fprintf(w.traceOut, "%12d run %s/%s#%d\n", w.now, t.node.name, t.name, t.id)
	}
	w.cur = t
	t.state = stateRunning
	t.resume <- struct{}{}
	<-w.yield
	w.cur = nil
}

func (w *World) blockedSummary() string {
	var names []string
	for _, n := range w.nodes {
		for _, id := range n.taskIDs() {
			t := n.tasks[id]
			if t.state == stateBlocked || t.state == stateHeld {
				names = append(names, fmt.Sprintf("%s/%s#%d", n.name, t.name, t.id))
			}
		}
	}
	if len(names) > 20 {
		names = append(names[:20], fmt.Sprintf("… %d more", len(names)-20))
	}
	return strings.Join(names, ", ")
}

// killAll ends every task of every node.
func (w *World) killAll() {
	for _, n := range w.nodes {
		n.kill()
	}
	// Let the killed tasks unwind; they may not start new work.
	for len(w.runq) > 0 {
		t := w.runq[len(w.runq)-1]
		w.runq = w.runq[:len(w.runq)-1]
		w.step(t)
	}
	w.timers = nil
}

// spawn creates a task of node n; it becomes runnable at once.
func (w *World) spawn(n *Node, name string, f func()) *task {
	w.taskSeq++
	t := &task{id: w.taskSeq, name: name, node: n, resume: make(chan struct{})}
	n.tasks[t.id] = t
	go func() {
		<-t.resume
		defer w.finish(t)
		if t.killed {
			return
		}
		defer func() {
			if r := recover(); r != nil {
				w.panicked = fmt.Sprintf("simrt: task %s/%s#%d panicked: %v\n%s", n.name, name, t.id, r, debug.Stack())
			}
		}()
		f()
	}()
	if n.dead {
		// A dead node starts nothing; the goroutine exits when resumed.
		t.killed = true
	}
	w.ready(t)
	return t
}

func (w *World) finish(t *task) {
	t.state = stateDone
	delete(t.node.tasks, t.id)
	w.yield <- struct{}{}
}

// ready makes t runnable (or held, if its node is paused).
func (w *World) ready(t *task) {
	if t.node.paused && !t.killed {
		t.state = stateHeld
		t.node.held = append(t.node.held, t)
		return
	}
	t.state = stateRunnable
	w.runq = append(w.runq, t)
}

// current returns the running task; runtime primitives may only be used by
// tasks.
func (w *World) current() *task {
	if w.cur == nil {
		panic("simrt: a blocking runtime primitive was used outside a task (use Node.Go)")
	}
	return w.cur
}

// park blocks the running task until something readies it, and returns the
// error it was woken with. A killed task never returns from park: it unwinds
// with runtime.Goexit, running its deferred calls.
func (w *World) park(t *task, ctx context.Context) error {
	if t.killed {
		return w.exitKilled(t)
	}
	t.state = stateBlocked
	t.wakeErr = nil
	if ctx != nil && ctx.Done() != nil {
		t.waitCtx = ctx
		w.ctxWaiters = append(w.ctxWaiters, t)
	}
	w.yield <- struct{}{}
	<-t.resume
	if t.waitCtx != nil {
		w.dropCtxWaiter(t)
	}
	if t.killed {
		return w.exitKilled(t)
	}
	return t.wakeErr
}

var errKilled = fmt.Errorf("simrt: task killed (its node crashed)")

func (w *World) exitKilled(t *task) error {
	if t.exiting {
		// Already unwinding: a deferred call tried to block. Fail it
		// rather than exit twice.
		return errKilled
	}
	t.exiting = true
	runtime.Goexit()
	return errKilled
}

func (w *World) dropCtxWaiter(t *task) {
	t.waitCtx = nil
	for i, x := range w.ctxWaiters {
		if x == t {
			w.ctxWaiters = slices.Delete(w.ctxWaiters, i, i+1)
			return
		}
	}
}

// scanCancellations wakes the tasks whose wait context is done.
func (w *World) scanCancellations() {
	w.cancelDirty = false
	for i := 0; i < len(w.ctxWaiters); {
		t := w.ctxWaiters[i]
		err := t.waitCtx.Err()
		if err == nil || t.node.paused {
			i++
			continue
		}
		w.ctxWaiters = slices.Delete(w.ctxWaiters, i, i+1)
		t.waitCtx = nil
		w.unblock(t, err)
	}
}

// unblock takes t out of whatever it waits on and readies it with err.
func (w *World) unblock(t *task, err error) {
	if t.state != stateBlocked {
		return
	}
	if s := t.waitSema; s != nil {
		s.remove(t)
		t.waitSema = nil
	}
	if tm := t.waitTimer; tm != nil {
		tm.stopped = true
		t.waitTimer = nil
	}
	t.wakeErr = err
	w.ready(t)
}

// after schedules fn after d measured on clock's clock; the timer belongs to
// owner (its pause holds it, its crash drops it).
func (w *World) after(owner, clock *Node, d time.Duration, fn func()) *timer {
	if d < 0 {
		d = 0
	}
	n := owner
	// A node whose clock runs fast sees its timers fire early in virtual time.
	virt := time.Duration(float64(d) / clock.rate)
	w.timerSeq++
	tm := &timer{when: w.now + virt, seq: w.timerSeq, node: n, gen: n.gen, fn: fn}
	heap.Push(&w.timers, tm)
	return tm
}

func (w *World) fire(tm *timer) {
	if tm.stopped {
		return
	}
	n := tm.node
	if n.dead || tm.gen != n.gen {
		return
	}
	if n.paused {
		n.heldTimers = append(n.heldTimers, tm)
		return
	}
	tm.fired = true
	tm.fn()
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func (w *World) mix(s string) {
	h := w.hash
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	h ^= 0xff
	h *= fnvPrime
	w.hash = h
}

func (w *World) mixInt(v int64) {
	h := w.hash
	for i := 0; i < 8; i++ {
		h ^= uint64(byte(v >> (8 * i)))
		h *= fnvPrime
	}
	w.hash = h
}

type timer struct {
	when    time.Duration
	seq     uint64
	node    *Node
	gen     int
	fn      func()
	stopped bool
	fired   bool
	index   int
}

type timerHeap []*timer

func (h timerHeap) Len() int { return len(h) }
func (h timerHeap) Less(i, j int) bool {
	if h[i].when != h[j].when {
		return h[i].when < h[j].when
	}
	return h[i].seq < h[j].seq
}
func (h timerHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i]; h[i].index = i; h[j].index = j }
func (h *timerHeap) Push(x any)   { t := x.(*timer); t.index = len(*h); *h = append(*h, t) }
func (h *timerHeap) Pop() any {
	old := *h
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return t
}
