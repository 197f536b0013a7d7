package wasm_test

import (
	"testing"

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
