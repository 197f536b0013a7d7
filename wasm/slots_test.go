package wasm_test

import (
	"context"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// A guest gives its execution slot up while it waits for another actor:
// with one slot, WASM calling WASM calling WASM (caller-c -> kvnotify-c ->
// a C counter uploaded as "counter") completes instead of waiting for a
// slot its own caller holds (without the release it failed at the
// deadline).
func TestNestedCallsDoNotDeadlockOneSlot(t *testing.T) {
	types := actors.Types()
	delete(types, "counter") // kvnotify calls "counter": make it the C guest
	e := newEnv(t, envOpts{types: types, host: func(c *wasm.Config) { c.GuestSlots = 1 }})
	e.putGuests()
	e.put("counter", wasmtest.C(t, "counter"), modules.Options{})
	e.want("a", "caller-c", "call", []byte("kvnotify-c/b/inc"), "1")
	if got := e.must("notify-sink", "counter", "get", nil); got != "1" {
		t.Fatalf("the innermost WASM counter saw %s calls, want 1", got)
	}
}

// A looping guest holding the only execution slot hands it over at the end
// of its slice: a bystander that arrives meanwhile completes while the
// looper is still running (the looper has no budget that could end it
// first: it runs until the test cancels it, so the order is decided by
// preemption alone, not by how fast the machine is).
func TestLooperIsPreemptedForBystander(t *testing.T) {
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.GuestSlots, c.SliceFuel, c.MaxFuel = 1, 1<<16, 1<<62
		c.InvokeTimeout = time.Hour
		c.ContextInterrupt = true
	}})
	e.putGuests()
	e.must("by", "counter-c", "inc", nil)
	e.must("loop", "hostile-c", "inc", nil)
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	looped := make(chan error, 1)
	go func() {
		_, err := e.c.Client().Invoke(ctx, ns, "loop", "hostile-c", "spin", nil)
		looped <- err
	}()
	// Wait (bounded) until the looper computes in the slot.
	for wait := time.Now().Add(time.Minute); e.hosts[0].Stats().Executing == 0; {
		select {
		case err := <-looped:
			t.Fatalf("the looper ended before it took the slot: %v", err)
		default:
		}
		if time.Now().After(wait) {
			t.Fatal("the looper never took the slot")
		}
		time.Sleep(time.Millisecond)
	}
	e.want("by", "counter-c", "inc", nil, "1")
	select {
	case err := <-looped:
		t.Fatalf("the looper ended before the bystander was served: %v", err)
	default:
	}
	// (Stats.Preempted is not checked here: the bystander may take the
	// slot in the instant between the looper's giving it back and its
	// asking again, and finish before the looper, descheduled by a loaded
	// machine, gets to count the handover. That the bystander finished
	// while the only slot's holder still loops is the handover.)
	cancel()
	if err := <-looped; err == nil {
		t.Fatal("the cancelled looper returned a result")
	}
}
