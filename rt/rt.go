// Package rt is the engine's only door to time, randomness and concurrency.
//
// Everything in nola that must run unchanged under the deterministic simulator
// (the engine in package nola, the registry protocol, the WASM host) reaches the
// clock, timers, task spawning, blocking and random numbers through a Runtime.
// Two implementations exist: Real (real clock, goroutines) in this package and
// the deterministic one in rt/simrt (virtual time, one task at a time, a seeded
// scheduler). Engine code never uses time.Now, time.Sleep, bare go statements,
// channels or math/rand directly; TestEngineUsesOnlyRuntime enforces this.
package rt

import (
	"context"
	"time"
)

// Runtime is the injected environment of one node (a server, a client, the
// store). Under simulation each node has its own Runtime so that crashes,
// pauses and clock drift apply to exactly that node's tasks and clock.
type Runtime interface {
	// Now is the wall clock. Use it for timestamps shown to people, never
	// for ordering or deadlines.
	Now() time.Time
	// Mono is the time elapsed on this node's monotonic clock since the
	// runtime started. Deadlines and lease arithmetic use it.
	Mono() time.Duration
	// AfterFunc runs f as a new task, named name, once d has elapsed on this
	// node's clock. Stopping the timer before it fires prevents the task.
	AfterFunc(d time.Duration, name string, f func()) Timer
	// Sleep blocks the calling task for d, or until ctx is done.
	Sleep(ctx context.Context, d time.Duration) error
	// Go starts f as a new task owned by this node. The caller owns the
	// task's lifetime: f must return when the caller asks it to stop
	// (usually through a context).
	Go(name string, f func())
	// Uint64 returns a random number: seeded under simulation.
	Uint64() uint64
	// NewSema returns a counting semaphore holding n permits.
	NewSema(n int) Sema
	// WithTimeout and WithCancel derive contexts whose cancellation the
	// runtime can observe. Engine code uses them instead of the context
	// package's, whose timers run on real time.
	WithTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc)
	WithCancel(ctx context.Context) (context.Context, context.CancelFunc)
	// Tracing reports whether Trace records anything; callers check it
	// before formatting an event.
	Tracing() bool
	// Trace adds an event to the run's trace (under simulation, to the
	// trace hash that proves determinism).
	Trace(event string)
}

// HeapReporter is implemented by a Runtime that can report the process's
// heap (Real does; the simulator's does not, so that nothing about the
// host's memory reaches a simulated run and its trace hash).
type HeapReporter interface {
	// HeapBytes is the memory held by live heap objects.
	HeapBytes() int64
}

// Timer is a pending AfterFunc.
type Timer interface {
	// Stop prevents the timer from firing. It reports whether it did so.
	Stop() bool
}

// Sema is a counting semaphore whose waiters can give up when their context
// is done. Waiters are served in FIFO order.
type Sema interface {
	// Acquire takes one permit, blocking until one is available or ctx is
	// done (then it returns ctx's error and takes nothing).
	Acquire(ctx context.Context) error
	// TryAcquire takes a permit if one is available without blocking.
	TryAcquire() bool
	// Release returns one permit, waking the oldest waiter.
	Release()
}

// Since returns the monotonic time elapsed since start on r's clock.
func Since(r Runtime, start time.Duration) time.Duration { return r.Mono() - start }

// Buggifier is implemented by runtimes that can steer code into rare but
// legal paths (FoundationDB's BUGGIFY): a route cache cleared, a commit
// delayed, an idle sweep run early, a cache that overflows. Only the
// deterministic runtime implements it, and only when the run asks for it,
// so production code pays one interface check per point and never takes a
// buggified path; under simulation the seed decides which points are on and
// when they fire, so a failure a point provokes replays.
type Buggifier interface {
	// Buggify reports whether the fault point named point fires now.
	Buggify(point string) bool
}

// Buggify reports whether fault point point fires now on r: always false
// unless r is a Buggifier that says otherwise. Code under a point must be
// correct either way — a point only makes a legal path likelier.
func Buggify(r Runtime, point string) bool {
	b, ok := r.(Buggifier)
	return ok && b.Buggify(point)
}
