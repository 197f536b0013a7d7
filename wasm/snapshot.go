package wasm

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/tetratelabs/wazero/api"

	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/instrument"
)

// A post-initialization snapshot (Wizer's idea, taken by the host): the
// first instance of a module that initializes — _initialize, then
// wapc_init — without an effecting host call has its whole linear memory
// and every mutable global captured; later instances of the module on this
// Host start from that capture and run neither. A standard-Go guest's
// runtime start-up (schedinit, heap arenas, package init) is then paid once
// per module per server instead of once per actor.
//
// Equivalence rests on three facts, each checked:
//
//   - The instance's state is its memory and its globals
//     (instrument.Snapshot): no start function, no instruction that
//     changes a table or a segment, numeric globals only. Its tables are
//     what the element segments made them, in every instance.
//   - Initialization had no effect outside the instance: every host call
//     it made was one of initReads (clocks, randomness, the empty args and
//     environment, descriptor queries, stdin, __guest_request). Any other —
//     a log line, output, __host_call — counts in instance.effects and
//     the module is never snapshotted: each instance keeps making its
//     calls, as before.
//   - What the guest read during initialization is frozen into the
//     snapshot, and instances differ from freshly initialized ones only
//     in those values: see docs/wasm.md ("Post-initialization snapshot")
//     for what that means for clocks and randomness.
//
// A module whose initialization traps, exits or is refused memory gets no
// snapshot from that attempt (the actor fails as before); a later
// instantiation tries again.

// Snapshot states of a compiled module.
const (
	snapUnknown int32 = iota // the next instantiation takes one
	snapTaking               // an instantiation is taking one
	snapReady                // compiled.snap is set
	snapRefused              // never: compiled.snapWhy says why
)

// snapshot is a module's state after initialization.
type snapshot struct {
	img     *memImage // the whole linear memory
	size    int64     // its length in bytes (whole pages)
	globals []snapGlobal
}

type snapGlobal struct {
	name string
	val  uint64
}

// initReads are the host functions a snapshotted initialization may call:
// they change nothing outside the calling instance (and what they return
// is frozen into the snapshot). Every other host function counts as an
// effect (effecting), except the WASI stubs, which only answer an error.
var initReads = map[string]bool{
	abi.ModuleWAPC + "." + abi.GuestRequest: true,

	abi.ModuleWASI + ".args_sizes_get":    true,
	abi.ModuleWASI + ".args_get":          true,
	abi.ModuleWASI + ".environ_sizes_get": true,
	abi.ModuleWASI + ".environ_get":       true,
	abi.ModuleWASI + ".clock_res_get":     true,
	abi.ModuleWASI + ".clock_time_get":    true,
	abi.ModuleWASI + ".random_get":        true,
	abi.ModuleWASI + ".sched_yield":       true,
	abi.ModuleWASI + ".poll_oneoff":       true, // never blocks, reports every subscription ready
	abi.ModuleWASI + ".fd_read":           true, // stdin is empty
	abi.ModuleWASI + ".fd_fdstat_get":     true,
	abi.ModuleWASI + ".fd_filestat_get":   true,
	abi.ModuleWASI + ".fd_prestat_get":    true, // no preopened directories
}

// effecting wraps host function module.name so that its calls count as
// effects (instance.effects), unless it is one of initReads.
func effecting(module, name string, f api.GoModuleFunc) api.GoModuleFunc {
	if initReads[module+"."+name] {
		return f
	}
	return func(ctx context.Context, m api.Module, stack []uint64) {
		if !uncountedEffects {
			instanceOf(ctx).effects++
		}
		f(ctx, m, stack)
	}
}

// uncountedEffects breaks the effect detector: the test that proves it
// can fail sets it.
var uncountedEffects bool

// snapState is compiled's snapshot bookkeeping.
type snapState struct {
	state   atomic.Int32
	snap    atomic.Pointer[snapshot]
	why     atomic.Pointer[string] // with snapRefused
	globals []instrument.Global    // the globals to capture
}

// refuse marks the module as never snapshotted, for why.
func (s *snapState) refuse(why string) {
	s.why.Store(&why)
	s.state.Store(snapRefused)
}

// ready returns the snapshot, or nil.
func (s *snapState) ready() *snapshot {
	if s.state.Load() != snapReady {
		return nil
	}
	return s.snap.Load()
}

// snapshotStatus reports whether module id of namespace ns (compiled on
// this Host) starts its instances from a post-initialization snapshot:
// "ready", "pending" (no instance has initialized yet), or
// "refused: <why>"; "" if it is not compiled here. The tests read it.
func (h *Host) snapshotStatus(ns, id string) string {
	h.mu.Lock()
	c := h.compiled[modKey{ns, id}]
	h.mu.Unlock()
	if c == nil {
		return ""
	}
	switch c.snap.state.Load() {
	case snapReady:
		return "ready"
	case snapRefused:
		return "refused: " + *c.snap.why.Load()
	}
	return "pending"
}

// capture takes in's snapshot: in has just initialized (without effects,
// the caller checked) and run nothing else.
func (h *Host) capture(c *compiled, in *instance) {
	size := in.mem.Size()
	buf, ok := in.mem.Read(0, size)
	if !ok {
		c.snap.refuse("its memory could not be read")
		return
	}
	s := &snapshot{size: int64(size), globals: make([]snapGlobal, len(c.snap.globals))}
	for i, g := range c.snap.globals {
		eg := in.m.ExportedGlobal(g.Name)
		if eg == nil {
			c.snap.refuse("global " + g.Name + " is not exported")
			return
		}
		s.globals[i] = snapGlobal{name: g.Name, val: eg.Get()}
	}
	if !h.images.take(int64(size), h.cfg.MaxSnapshotBytes) {
		c.snap.refuse(fmt.Sprintf("this server's snapshots would hold more than %d bytes (Config.MaxSnapshotBytes)", h.cfg.MaxSnapshotBytes))
		return
	}
	s.img = newMemImage(append([]byte(nil), buf...), !h.cfg.HeapMemory)
	h.trackCharged(c, s.img, int64(size))
	c.snap.snap.Store(s)
	c.snap.state.Store(snapReady)
}

// restore sets a new instance started from s (its memory placed by the
// allocator, at the module's initial size) to s's state: its memory
// grown to s's size (the caller reserved it) and its globals set.
func (s *snapshot) restore(c *compiled, m api.Module) error {
	mem := m.Memory()
	if grow := (s.size - int64(mem.Size())) / pageSize; grow > 0 {
		if _, ok := mem.Grow(uint32(grow)); !ok {
			return fmt.Errorf("wasm %s: growing a snapshot instance's memory to %d bytes failed", c.name, s.size)
		}
	}
	return s.setGlobals(c, m)
}

// setGlobals sets m's mutable globals to s's values.
func (s *snapshot) setGlobals(c *compiled, m api.Module) error {
	for _, g := range s.globals {
		mg, ok := m.ExportedGlobal(g.name).(api.MutableGlobal)
		if !ok {
			return fmt.Errorf("wasm %s: snapshot global %s is not a mutable export", c.name, g.name)
		}
		mg.Set(g.val)
	}
	return nil
}
