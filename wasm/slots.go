package wasm

import (
	"fmt"
	"runtime"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt"
)

// Execution slots (Config.GuestSlots) share the server's CPU between
// guests: a guest runs only while it holds one of a fixed number of slots.
// Slots are granted in FIFO order (rt.Sema), so a guest that arrives while
// all are taken waits behind the guests already waiting, never behind a
// running guest's whole invocation:
//
//   - a running guest gives its slot back at the end of every slice
//     (Config.SliceFuel checkpoints, or hostCallsPerSlice host calls) and
//     queues for it again at the back; with no one waiting it carries on at
//     the cost of two uncontended mutex round trips;
//   - it gives it back during every host call that can block (a call to
//     another actor, a KV read), so a guest waiting for another actor
//     never holds a slot that actor needs: calls nested to any depth
//     cannot deadlock the pool, even with one slot.
//
// A guest holds a slot only while it computes, never while it is parked:
// under the simulator (one task at a time) at most one slot is ever held,
// so the number of slots cannot change a simulation's schedule.

// hostCallsPerSlice is how many host calls end a slice: host functions
// burn no fuel, and a guest that spends its time in them (WASI random_get,
// logging) must yield too.
const hostCallsPerSlice = 256

// slotPool is a Host's execution slots.
type slotPool struct {
	sema rt.Sema // nil: unbounded (GuestSlots < 0)
	n    int
}

// takeSlot waits, in FIFO order, for an execution slot, at most until the
// invocation's deadline or the end of its caller's context. A guest that
// ends its slice (preempted) and finds another waiting is counted in
// Stats.Preempted before it queues, so the count is up to date as soon as
// the guest it let in runs. The caller holds no slot.
func (in *instance) takeSlot(preempted bool) (waited bool, err error) {
	h := in.h
	if h.slots.sema == nil || in.slot {
		return false, nil
	}
	if !h.slots.sema.TryAcquire() {
		waited = true
		if preempted {
			h.preempted.Add(1)
		}
		h.waiting.Add(1)
		ctx, cancel := h.rt.WithTimeout(in.cx, in.deadline-h.rt.Mono())
		err = h.slots.sema.Acquire(ctx)
		cancel()
		h.waiting.Add(-1)
		if err != nil {
			return true, nola.InvocationError(nola.CodeTimeout, fmt.Sprintf(
				"wasm %s: no execution slot became free before the invocation's deadline: all %d are taken (the server is CPU-bound; retry later, or raise nola serve --wasm-slots)",
				in.mod.name, h.slots.n))
		}
	}
	in.slot = true
	h.executing.Add(1)
	return waited, nil
}

// dropSlot gives the instance's execution slot back, if it holds one.
func (in *instance) dropSlot() {
	if !in.slot {
		return
	}
	in.slot = false
	in.h.executing.Add(-1)
	in.h.slots.sema.Release()
}

// mustRetakeSlot takes a slot back for a guest that is in the middle of its
// execution (after a slice, after a blocking host call), aborting the guest
// if none comes before its deadline.
func (in *instance) mustRetakeSlot(after string) {
	if in.h.slots.sema == nil {
		return
	}
	if _, err := in.takeSlot(false); err != nil {
		in.fail(TrapDeadline, "waited past the invocation's deadline for an execution slot after %s (all %d are taken)", after, in.h.slots.n)
	}
}

// endSlice ends the guest's slice: it lets the oldest waiting guest run,
// if any, and queues behind it.
func (in *instance) endSlice(after string) {
	if in.h.slots.sema == nil || !in.slot {
		return
	}
	in.dropSlot()
	waited, err := in.takeSlot(true)
	if err != nil {
		in.fail(TrapDeadline, "waited past the invocation's deadline for an execution slot after %s (all %d are taken)", after, in.h.slots.n)
	}
	if waited {
		return
	}
	// No guest was waiting, but goroutines that are no guests may be (the
	// HTTP handler that carries the next invocation, the engine's own
	// tasks): guest code is not Go code, and Go cannot preempt it, so it
	// lets them have the processor here. Under the simulator this changes
	// nothing: its tasks wait for the scheduler, not for a processor.
	runtime.Gosched()
}

// offSlot runs f, a host call that may block, without the execution slot.
func offSlot[T any](in *instance, what string, f func() (T, error)) (T, error) {
	in.dropSlot()
	v, err := f()
	// Not deferred: a simulated crash unwinds the task with Goexit, which
	// must not wait for a slot on its way out.
	in.mustRetakeSlot(what)
	return v, err
}
