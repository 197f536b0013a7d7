package wasm_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/registry/modules"
	"github.com/nolaproject/nola/wasm"
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
// looper still has many slices to run (ordered by fuel, not by time:
// without preemption the bystander waited for the looper's whole budget).
func TestLooperIsPreemptedForBystander(t *testing.T) {
	const slice = 1 << 16
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.GuestSlots, c.SliceFuel, c.MaxFuel = 1, slice, 4096*slice
		c.InvokeTimeout = 10 * time.Minute
	}})
	e.putGuests()
	e.must("by", "counter-c", "inc", nil)
	e.must("loop", "hostile-c", "inc", nil)
	var order []string
	var mu sync.Mutex
	done := func(who string) {
		mu.Lock()
		order = append(order, who)
		mu.Unlock()
	}
	looped := make(chan error, 1)
	go func() {
		_, err := e.invoke("loop", "hostile-c", "spin", nil)
		done("looper")
		looped <- err
	}()
	// Wait (bounded) until the looper computes in the slot.
	for wait := time.Now().Add(time.Minute); e.hosts[0].Stats().Executing == 0; {
		if time.Now().After(wait) {
			t.Fatal("the looper never took the slot")
		}
		time.Sleep(time.Millisecond)
	}
	e.want("by", "counter-c", "inc", nil, "1")
	done("bystander")
	var te *wasm.TrapError
	if err := <-looped; !errors.As(err, &te) || te.Kind != wasm.TrapFuel {
		t.Fatalf("looper: %v, want a fuel trap", err)
	}
	if order[0] != "bystander" {
		t.Fatalf("completion order %v: the bystander waited for the looper", order)
	}
	if s := e.hosts[0].Stats(); s.Preempted == 0 {
		t.Fatalf("no slice was handed over: %+v", s)
	}
}
