package wasm_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
)

// release deactivates actor id on the env's first server, which must
// hold it.
func (e *env) release(id string) {
	e.t.Helper()
	ok, err := e.c.Server(0).Release(e.ctx, ns, id)
	if err != nil || !ok {
		e.t.Fatalf("release %s: released=%v, %v", id, ok, err)
	}
}

// A released actor's instance is reset to the snapshot and taken by the
// module's next activation, which answers exactly as a fresh instance
// does: initModule's answer depends on its memory word and its global,
// both changed by the released actor's calls. The instance that took the
// snapshot (its memory placed from the module's image) and one started
// from the snapshot are recycled alike, and a recycled one again. Each
// reset step skipped on purpose (RecycleSkip) shows in the answer: the
// check is not vacuous.
func TestRecycledAnswersLikeFresh(t *testing.T) {
	for _, skip := range []string{"", "memory", "globals"} {
		t.Run("skip="+skip, func(t *testing.T) {
			e, _ := snapEnv(t, initModule(false, false, false))
			h := e.hosts[0]
			e.want("a", "m", "x", nil, answer(1)) // takes the snapshot
			e.want("a", "m", "x", nil, answer(2))
			e.want("b", "m", "x", nil, answer(1)) // from the snapshot
			e.want("b", "m", "x", nil, answer(2))
			e.want("b", "m", "x", nil, answer(3))
			*wasm.RecycleSkip = skip
			defer func() { *wasm.RecycleSkip = "" }()
			e.release("a")
			e.release("b")
			if s := h.Stats(); s.Pooled != 2 || s.Instances != 0 || s.Instantiated != 2 {
				t.Fatalf("after two releases: %+v, want 2 pooled, none live, 2 instantiated", s)
			}
			var got []string
			for _, id := range []string{"c", "d", "c", "d"} {
				got = append(got, e.must(id, "m", "x", nil))
			}
			e.release("c") // a recycled instance, recycled again
			got = append(got, e.must("f", "m", "x", nil))
			want := []string{answer(1), answer(1), answer(2), answer(2), answer(1)}
			same := fmt.Sprint(got) == fmt.Sprint(want)
			if same != (skip == "") {
				t.Fatalf("with step %q skipped: answers %q, want %q: equal=%v", skip, got, want, same)
			}
			if s := h.Stats(); s.Recycled != 3 || s.Instantiated != 2 {
				t.Fatalf("stats %+v, want 3 activations recycled and still 2 instantiated", s)
			}
		})
	}
}

// The same with a standard-Go guest, whose snapshot is mapped from its
// sealed file: the counter of a released actor is the snapshot's (0) in
// the recycled instance, and skipping the memory's remap leaks it.
func TestRecycledGoCounterStartsAtSnapshot(t *testing.T) {
	for _, skip := range []string{"", "memory"} {
		t.Run("skip="+skip, func(t *testing.T) {
			e := newEnv(t, envOpts{})
			e.putGuests("counter")
			for i := range 3 {
				e.want("g1", "counter-go", "inc", nil, fmt.Sprint(i))
			}
			e.want("g2", "counter-go", "inc", nil, "0")
			e.want("g2", "counter-go", "inc", nil, "1")
			*wasm.RecycleSkip = skip
			defer func() { *wasm.RecycleSkip = "" }()
			e.release("g1")
			e.release("g2")
			first := e.must("g3", "counter-go", "inc", nil)
			second := e.must("g4", "counter-go", "inc", nil)
			if s := e.hosts[0].Stats(); s.Recycled != 2 {
				t.Fatalf("stats %+v, want both activations recycled", s)
			}
			if ok := first == "0" && second == "0"; ok != (skip == "") {
				t.Fatalf("with step %q skipped: recycled counters start at %s and %s", skip, first, second)
			}
			if skip == "" {
				e.want("g3", "counter-go", "inc", nil, "1")
			}
		})
	}
}

// The pool is bounded per module (Config.RecyclePool), its instances are
// charged to the memory budget but reported as idle (MemoryBytes), a
// negative bound turns recycling off, and Close closes what is pooled.
func TestRecyclePoolBounds(t *testing.T) {
	for _, pool := range []int{1, -1} {
		t.Run(fmt.Sprint("RecyclePool=", pool), func(t *testing.T) {
			e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.RecyclePool = pool }})
			e.put("m", initModule(false, false, false), modules.Options{})
			h := e.hosts[0]
			for _, id := range []string{"a", "b", "c"} {
				e.want(id, "m", "x", nil, answer(1))
			}
			for _, id := range []string{"a", "b", "c"} {
				e.release(id)
			}
			s := h.Stats()
			wantPooled := int64(max(pool, 0))
			if s.Pooled != wantPooled || s.Instances != 0 {
				t.Fatalf("stats %+v, want %d pooled and none live", s, wantPooled)
			}
			if s.MemoryBytes != s.PooledBytes || h.MemoryBytes() != 0 {
				t.Fatalf("stats %+v and MemoryBytes %d: the pooled instances should be all that is charged, and none of it reported", s, h.MemoryBytes())
			}
			if pool > 0 && s.PooledBytes <= wasm.InstanceOverhead {
				t.Fatalf("pooled bytes %d: not the instance's memory and overhead", s.PooledBytes)
			}
			e.want("d", "m", "x", nil, answer(1))
			if got := h.Stats().Recycled; got != wantPooled {
				t.Fatalf("%d activations recycled, want %d", got, wantPooled)
			}
			e.release("d")
			if err := h.Close(e.ctx); err != nil {
				t.Fatal(err)
			}
			if s := h.Stats(); s.Pooled != 0 || s.MemoryBytes != 0 {
				t.Fatalf("after Close: %+v, want nothing pooled or charged", s)
			}
		})
	}
}

// Idle pooled instances never cost a live activation its memory: one
// that does not fit beside them closes them first. With the shedding
// broken (NoPoolShed) the same activation is refused.
func TestRecyclePoolShedUnderPressure(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprint("shed broken=", broken), func(t *testing.T) {
			*wasm.NoPoolShed = broken
			defer func() { *wasm.NoPoolShed = false }()
			// Room for two instances of one 64 KiB page.
			e := newEnv(t, envOpts{host: func(c *wasm.Config) {
				c.MemoryLimit = 2*(wasm.InstanceOverhead+64<<10) + 32<<10
			}})
			bin := initModule(false, false, false)
			e.put("m1", bin, modules.Options{})
			e.put("m2", bin, modules.Options{})
			e.want("a", "m1", "x", nil, answer(1))
			e.want("b", "m1", "x", nil, answer(1))
			e.release("a")
			e.release("b")
			if s := e.hosts[0].Stats(); s.Pooled != 2 {
				t.Fatalf("stats %+v, want 2 pooled", s)
			}
			v, err := e.invoke("c", "m2", "x", nil)
			if broken {
				ne := wantCode(t, err, nola.CodeUnavailable)
				if !strings.Contains(ne.Message, "WASM memory") {
					t.Fatalf("refusal %q does not name the WASM memory", ne.Message)
				}
				return
			}
			if err != nil || v != answer(1) {
				t.Fatalf("activation beside the pool: %q, %v", v, err)
			}
			if s := e.hosts[0].Stats(); s.Pooled != 0 || s.Instances != 1 {
				t.Fatalf("stats %+v, want the pool shed and one live instance", s)
			}
		})
	}
}

// waitStats polls the host's stats until ok holds; the minute is a
// failure bound, not a synchronisation.
func waitStats(t *testing.T, h *wasm.Host, what string, ok func(wasm.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !ok(h.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: stats %+v", what, h.Stats())
		}
		time.Sleep(time.Millisecond)
	}
}

// With Config.Premade the Host keeps instances made from the snapshot
// ahead of demand: made once the snapshot exists and again after each
// activation takes one; they answer like fresh instances, and Close
// closes them.
func TestPremadeInstances(t *testing.T) {
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.Premade = 2 }})
	e.put("m", initModule(false, false, false), modules.Options{})
	h := e.hosts[0]
	e.want("a", "m", "x", nil, answer(1)) // takes the snapshot
	waitStats(t, h, "2 premade", func(s wasm.Stats) bool { return s.Pooled == 2 })
	for i, id := range []string{"b", "c", "d"} {
		e.want(id, "m", "x", nil, answer(1))
		waitStats(t, h, "the pool refilled", func(s wasm.Stats) bool { return s.Pooled == 2 && s.Recycled == int64(i+1) })
	}
	if s := h.Stats(); s.Instantiated != 6 || s.Recycled != 3 || s.Instances != 4 {
		// a, then 2 premade, then 3 taken and made again.
		t.Fatalf("stats %+v, want 6 instantiated, 3 activations from the pool, 4 live", s)
	}
	if err := h.Close(e.ctx); err != nil {
		t.Fatal(err)
	}
	if s := h.Stats(); s.Pooled != 0 || s.MemoryBytes != 0 {
		t.Fatalf("after Close: %+v", s)
	}
}

// The sweep closes pooled instances idle for SweepInterval: a pool does
// not hold memory for good on a server whose actors stopped coming.
func TestRecyclePoolExpiresWithSweep(t *testing.T) {
	const interval = 20 * time.Millisecond
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.SweepInterval = interval }})
	bin := initModule(false, false, false)
	e.put("m1", bin, modules.Options{})
	e.put("m2", bin, modules.Options{})
	h := e.hosts[0]
	e.want("a", "m1", "x", nil, answer(1))
	e.release("a")
	if s := h.Stats(); s.Pooled != 1 {
		t.Fatalf("stats %+v, want 1 pooled", s)
	}
	// Past the interval, the next instantiation (of another module, so
	// that it does not take the pooled instance) sweeps.
	for start := e.r.Mono(); e.r.Mono()-start <= 2*interval; {
		time.Sleep(interval)
	}
	e.want("b", "m2", "x", nil, answer(1))
	if s := h.Stats(); s.Pooled != 0 || s.PooledBytes != 0 {
		t.Fatalf("after the sweep: %+v, want nothing pooled", s)
	}
}

// growCallModule is growModule with the growth moved into __guest_call:
// each call grows the memory by a page and answers memory.grow's answer
// (the old size in pages, 4 bytes little-endian); _initialize does
// nothing.
func growCallModule() []byte {
	b := wapcModuleHead()
	exp := []byte{3}
	exp = append(append(exp, revName("memory")...), 2, 0)
	exp = append(append(exp, revName("__guest_call")...), 0, 2)
	exp = append(append(exp, revName("_initialize")...), 0, 3)
	b = append(b, revSection(7, exp)...)
	call := []byte{0,
		0x41, 0, 0x41, 1, 0x40, 0, 0x36, 2, 0, // mem[0] = memory.grow(1)
		0x41, 0, 0x41, 4, 0x10, 1, 0x41, 1, 0x0b,
	}
	code := []byte{2}
	code = append(append(code, revU32(uint32(len(call)))...), call...)
	code = append(code, 2, 0, 0x0b)
	b = append(b, revSection(10, code)...)
	// A data segment: a module without one has no memory image, and no
	// snapshot.
	return append(b, revSection(11, []byte{1, 0, 0x41, 0xe4, 0, 0x0b, 1, 'x'})...)
}

// An instance whose memory grew past the snapshot's size is closed, not
// recycled: memory cannot shrink, and the next actor would see the
// larger memory (memory.grow answering 2 where a fresh instance answers
// 1).
func TestRecycleRefusesGrownMemory(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("m", growCallModule(), modules.Options{})
	h := e.hosts[0]
	one, two := "\x01\x00\x00\x00", "\x02\x00\x00\x00"
	e.want("a", "m", "x", nil, one)
	e.want("a", "m", "x", nil, two)
	if s := e.hosts[0].SnapshotStatus(ns, "m"); s != "ready" {
		t.Fatalf("snapshot %q, want ready", s)
	}
	e.release("a")
	if s := h.Stats(); s.Pooled != 0 || s.Closed != 1 {
		t.Fatalf("stats %+v, want the grown instance closed, not pooled", s)
	}
	e.want("b", "m", "x", nil, one)
}
