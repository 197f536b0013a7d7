package wasm_test

// Limits a code review found missing or leaky, each with the module that
// showed it (hand-assembled: the bytes are the point) or a guest built from
// wasm/guests/c.

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/modules"
)

// Host functions burn no fuel, so they check the clock themselves: a guest
// that spends its time in them (WASI random_get on big buffers, answering
// again and again, logging far over its budget) stops at its deadline, or
// sooner, instead of running on (the fuel check alone let these run for
// seconds past a 100 ms InvokeTimeout).
//
// The guests are asked for far more work than they could do in a test's
// time, and the caller sets no deadline: only InvokeTimeout can end them,
// so their ending at all (with the trap) is the assertion, not a duration.
func TestHostFunctionsRespectTheDeadline(t *testing.T) {
	for _, c := range []struct {
		op   string
		trap wasm.TrapKind // "": any trap
	}{
		{"rand", wasm.TrapDeadline},
		{"answers", wasm.TrapABI},
		{"biglog", ""},
	} {
		t.Run(c.op, func(t *testing.T) {
			e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.InvokeTimeout = 100 * time.Millisecond }})
			e.putGuests()
			res, err := e.invokeNoDeadline("h", "hostile-c", c.op, []byte("1000000000"))
			var te *wasm.TrapError
			if !errors.As(err, &te) || (c.trap != "" && te.Kind != c.trap) {
				t.Fatalf("%s: %q, %v; want a %s trap", c.op, res, err, cmp.Or(c.trap, "any"))
			}
		})
	}
}

// memory.fill and memory.copy are single instructions that cost as much
// as their length: each takes fuel by its length (a unit per 64 bytes).
// With one unit each, a guest looping over 4 MiB copies ran 36 s past a
// 100 ms deadline before the host could look at the clock. Asserted by
// the budget, which is deterministic: 100 fills of 8 MiB exceed 2^22
// units (16 slices) when charged, and burn a few hundred checkpoints when
// not; two fit.
func TestBulkInstructionsBurnFuel(t *testing.T) {
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.MaxFuel = 1 << 22
		c.InvokeTimeout = time.Hour // only the budget ends them
	}})
	e.putGuests()
	for _, op := range []string{"fill", "copy"} {
		if got := e.must(op+"-few", "hostile-c", op, []byte("2")); got != "2" {
			t.Fatalf("%s 2: %q", op, got)
		}
		res, err := e.invoke(op, "hostile-c", op, []byte("100"))
		var te *wasm.TrapError
		if !errors.As(err, &te) || te.Kind != wasm.TrapFuel {
			t.Fatalf("%s 100: %q, %v; want a fuel trap", op, res, err)
		}
	}
}

func revU32(v uint32) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func revSLEB(v int64) []byte {
	var b []byte
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func revSection(id byte, body []byte) []byte {
	return append(append([]byte{id}, revU32(uint32(len(body)))...), body...)
}

func revName(s string) []byte { return append(revU32(uint32(len(s))), s...) }

// tableModule is a minimal waPC module with a funcref table of minTable
// entries; __guest_call grows it by grow entries (table.grow) and succeeds.
func tableModule(minTable uint32, grow int32) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, revSection(1, []byte{2, 0x60, 2, 0x7f, 0x7f, 0, 0x60, 2, 0x7f, 0x7f, 1, 0x7f})...)
	imp := append([]byte{1}, revName("wapc")...)
	imp = append(imp, revName("__guest_request")...)
	b = append(b, revSection(2, append(imp, 0, 0))...)
	b = append(b, revSection(3, []byte{1, 1})...)
	b = append(b, revSection(4, append([]byte{1, 0x70, 0}, revU32(minTable)...))...)
	b = append(b, revSection(5, []byte{1, 0, 1})...)
	exp := append([]byte{2}, revName("memory")...)
	exp = append(exp, 2, 0)
	exp = append(exp, revName("__guest_call")...)
	exp = append(exp, 0, 1)
	b = append(b, revSection(7, exp)...)
	body := []byte{0, 0xd0, 0x70, 0x41}
	body = append(body, revSLEB(int64(grow))...)
	body = append(body, 0xfc, 0x0f, 0, 0x1a, 0x41, 1, 0x0b)
	code := append([]byte{1}, revU32(uint32(len(body)))...)
	return append(b, revSection(10, append(code, body...))...)
}

func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// Tables are capped like memory (instrument.DefaultMaxTableEntries): a
// module that declares a table beyond the cap is refused at upload, and
// table.grow beyond it fails inside the guest instead of allocating Go heap
// (wazero keeps 8 bytes per entry; table.grow accepts up to 2^32-1
// entries: 32 GiB in one instruction, an unrecoverable out-of-memory).
func TestTablesAreCapped(t *testing.T) {
	e := newEnv(t, envOpts{})
	if _, err := e.mods.Put(e.ctx, ns, "huge-table", tableModule(1<<24, 0), modules.Options{}); !errors.Is(err, modules.ErrInvalid) || !strings.Contains(err.Error(), "table 0 needs 16777216 entries") {
		t.Fatalf("a table of 2^24 entries: %v, want it refused at upload", err)
	}
	e.put("table", tableModule(1, 1<<25), modules.Options{MaxMemoryPages: 1})
	before := heapInuse()
	e.want("t1", "table", "x", nil, "")
	e.want("t1", "table", "x", nil, "")
	if grown := int64(heapInuse()) - int64(before); grown > 16<<20 {
		t.Fatalf("one instance of a module capped at 1 memory page holds %d MiB of host memory", grown>>20)
	}
}

// A table's entries live on the Go heap, outside linear memory (wazero: 8
// B each, ~34 B per element entry), so the memory budget charges them. A
// module whose code can grow its table is charged the table's maximum,
// here the cap (2^17 entries: 1 MiB an instance); with InstanceOverhead
// alone, a thousand such actors held 1 GiB while the budget saw 80 MB.
func TestMemoryLimitCountsTables(t *testing.T) {
	charge := int64(wasm.InstanceOverhead + 64<<10 + instrument.DefaultMaxTableEntries*instrument.GrownTableEntryBytes)
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.MemoryLimit = 2*charge + charge/2 }})
	e.put("table", tableModule(1<<16, 0), modules.Options{MaxMemoryPages: 1})
	e.want("t0", "table", "x", nil, "")
	e.want("t1", "table", "x", nil, "")
	if got := e.hosts[0].MemoryBytes(); got != 2*charge {
		t.Fatalf("two instances charged %d bytes, want %d", got, 2*charge)
	}
	_, err := e.invoke("t2", "table", "x", nil)
	wantCode(t, err, nola.CodeUnavailable)
}

// An instantiation that fails after the budget refused its memory reports
// what it needed with its overhead (here 1 MiB of table): too large for
// the limit ever, not "unavailable, retry" (the overhead was once
// released before the error was made).
func TestInstantiationFailureReportsItsWholeNeed(t *testing.T) {
	b := startModuleWithTable(1, 1<<17)                 // 2^17 entries, never grown
	b = append(b, revSection(8, []byte{2})...)          // start: function 2
	call := []byte{0, 0xfc, 16, 0, 0x1a, 0x41, 1, 0x0b} // table.size; drop; 1
	start := []byte{0, 0x41, 3, 0x40, 0, 0x1a, 0, 0x0b} // memory.grow 3; drop; unreachable
	code := append([]byte{2, byte(len(call))}, call...)
	code = append(append(code, byte(len(start))), start...)
	b = append(b, revSection(10, code)...)
	over := int64(wasm.InstanceOverhead + (1<<17)*instrument.TableEntryBytes)
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.MemoryLimit = over + 64<<10 + 32<<10 }})
	e.put("st", b, modules.Options{MaxMemoryPages: 4})
	_, err := e.invoke("a", "st", "x", nil)
	wantCode(t, err, nola.CodeTooLarge)
}

// startModule is the head of a minimal waPC module with memPages of
// memory (memPages < 128), importing __guest_request and defining two
// functions: __guest_call (exported) and a () -> () one (index 2), for
// the caller's start and code sections.
func startModule(memPages byte) []byte { return startModuleWithTable(memPages, 0) }

// startModuleWithTable is startModule with a funcref table of entries
// entries (none if 0).
func startModuleWithTable(memPages byte, entries uint32) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, revSection(1, []byte{3, 0x60, 2, 0x7f, 0x7f, 0, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0})...)
	imp := append([]byte{1}, revName("wapc")...)
	imp = append(imp, revName("__guest_request")...)
	b = append(b, revSection(2, append(imp, 0, 0))...)
	b = append(b, revSection(3, []byte{2, 1, 2})...)
	if entries > 0 {
		b = append(b, revSection(4, append([]byte{1, 0x70, 0}, revU32(entries)...))...)
	}
	b = append(b, revSection(5, []byte{1, 0, memPages})...)
	exp := append([]byte{2}, revName("memory")...)
	exp = append(exp, 2, 0)
	exp = append(exp, revName("__guest_call")...)
	exp = append(exp, 0, 1)
	return append(b, revSection(7, exp)...)
}

// trappingInit is a minimal waPC module whose instantiation traps: with
// start, its start function executes unreachable; otherwise an active data
// segment lies past its one-page memory.
func trappingInit(start bool) []byte {
	b := startModule(1)
	if start {
		b = append(b, revSection(8, []byte{2})...)
	}
	b = append(b, revSection(10, []byte{2, 4, 0, 0x41, 1, 0x0b, 3, 0, 0x00, 0x0b})...)
	if !start {
		b = append(b, dataSection(70000, 4)...)
	}
	return b
}

// dataSection is a data section with one active segment of n bytes at off.
func dataSection(off int64, n int) []byte {
	data := []byte{1, 0, 0x41}
	data = append(data, revSLEB(off)...)
	data = append(data, 0x0b)
	data = append(data, revU32(uint32(n))...)
	data = append(data, make([]byte, n)...)
	return revSection(11, data)
}

// Upload checks constant data segment offsets against the initial memory
// (one page here), signed LEB128 and all.
func TestDataSegmentsMustFitTheInitialMemory(t *testing.T) {
	e := newEnv(t, envOpts{})
	for i, c := range []struct {
		off int64
		n   int
		ok  bool
	}{
		{0, 4, true}, {65532, 4, true}, {65533, 4, false}, {65536, 0, true}, {65537, 0, false},
		{-1, 1, false}, {-65536, 1, false}, {1 << 20, 1, false},
	} {
		bin := append(trappingInit(true)[:0:0], trappingInit(true)...)
		bin = append(bin, dataSection(c.off, c.n)...)
		_, err := e.mods.Put(e.ctx, ns, fmt.Sprintf("data%d", i), bin, modules.Options{})
		if c.ok != (err == nil) {
			t.Errorf("%d bytes at %d: %v, want ok=%v", c.n, c.off, err, c.ok)
		}
	}
}

// A trap while instantiating (a start function's unreachable) is a
// TrapError, like the same trap in _initialize or in an invocation (it was
// once an untyped internal error). A data segment outside the initial
// memory, which would fail every instantiation, is refused at upload.
func TestInstantiationTrapsAreTyped(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("starttrap", trappingInit(true), modules.Options{})
	_, err := e.invoke("x-starttrap", "starttrap", "go", nil)
	var te *wasm.TrapError
	if !errors.As(err, &te) || te.Kind != wasm.TrapRuntime {
		t.Errorf("start function trap: got %v; want a TrapError of kind trap", err)
	}
	_, err = e.mods.Put(e.ctx, ns, "datainit", trappingInit(false), modules.Options{})
	if !errors.Is(err, modules.ErrInvalid) || !strings.Contains(err.Error(), "lies outside the initial memory") {
		t.Errorf("data segment out of bounds: %v; want it refused at upload", err)
	}
}

// dirtyTrapStart is a minimal waPC module with a 64-page memory whose start
// function fills all of it, then executes unreachable.
func dirtyTrapStart() []byte {
	b := startModule(64)
	b = append(b, revSection(8, []byte{2})...)
	start := []byte{0, 0x41, 0, 0x41}
	start = append(start, revSLEB(0xAB)...)
	start = append(start, 0x41)
	start = append(start, revSLEB(64<<16)...)
	start = append(start, 0xfc, 0x0b, 0, 0x00, 0x0b)
	code := []byte{2, 4, 0, 0x41, 1, 0x0b}
	code = append(code, revU32(uint32(len(start)))...)
	code = append(code, start...)
	return append(b, revSection(10, code)...)
}

func vmRSS(t *testing.T) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n << 10
		}
	}
	t.Skip("no VmRSS")
	return 0
}

// When instantiation fails after the memory was allocated (a start
// function traps, a data segment is out of bounds), wazero drops the
// half-built module without closing it; the host frees the memory it
// handed out (with the mmap allocator, the mapping and every page the start
// function touched: once 4 MiB resident per failed activation).
func TestFailedInstantiationFreesMemory(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("mmap allocator is Linux-only")
	}
	// HeapMemory is the control: the Go GC reclaims the dropped memory.
	for _, heap := range []bool{true, false} {
		t.Run("HeapMemory="+strconv.FormatBool(heap), func(t *testing.T) {
			e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.HeapMemory = heap }})
			e.put("dirty", dirtyTrapStart(), modules.Options{})
			const tries = 40
			runtime.GC()
			rss0 := vmRSS(t)
			for i := range tries {
				if _, err := e.invoke("d"+strconv.Itoa(i), "dirty", "go", nil); err == nil {
					t.Fatal("the start function's trap went unnoticed")
				}
			}
			runtime.GC()
			rss1 := vmRSS(t)
			t.Logf("%d failed activations: RSS +%d MiB; host stats %+v", tries, (rss1-rss0)>>20, e.hosts[0].Stats())
			if rss1-rss0 > 64<<20 {
				t.Fatalf("failed instantiations leak their linear memory: RSS +%d MiB", (rss1-rss0)>>20)
			}
		})
	}
}

// InvokeTimeout bounds an invocation's host calls too: a guest's call to a
// slow actor ends at the guest's deadline, not the caller's. The sleeper
// returns only when its context ends, and the caller sets no deadline:
// only InvokeTimeout, passed on to the call, can end it.
func TestInvokeTimeoutBoundsHostCalls(t *testing.T) {
	types := actors.Types()
	const invokeTimeout = 100 * time.Millisecond
	var late time.Duration // how far the sleeper's deadline was past its start + InvokeTimeout
	types["sleeper"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(cx *nola.Context, _ string, _ []byte) ([]byte, error) {
			now := time.Now()
			d, ok := cx.Deadline()
			if !ok {
				late = time.Duration(1<<63 - 1)
			} else {
				late = d.Sub(now.Add(invokeTimeout))
			}
			<-cx.Done()
			return nil, cx.Err()
		}), nil
	}
	e := newEnv(t, envOpts{types: types, host: func(c *wasm.Config) { c.InvokeTimeout = invokeTimeout }})
	e.putGuests()
	res, err := e.invokeNoDeadline("c", "caller-c", "call", []byte("sleeper/s/sleep"))
	t.Logf("caller-c -> sleeper: %q, %v", res, err)
	if err == nil {
		t.Fatalf("a guest's call to a sleeper returned %q", res)
	}
	// The deadline was set before the sleeper ran, so within InvokeTimeout
	// of its start, if it is the guest's.
	if late > 0 {
		t.Fatalf("the sleeper's deadline is %v past its start + InvokeTimeout: not the guest's", late)
	}
}

// An idle instance does not keep its last result alive (up to
// MaxResultBytes of Go heap per idle actor).
func TestIdleInstancesDoNotPinTheirLastResult(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests()
	const actorsN, size = 16, 4_000_000
	for i := range actorsN {
		if got := e.must("b"+strconv.Itoa(i), "hostile-c", "big", []byte(strconv.Itoa(size))); len(got) != size {
			t.Fatalf("big: %d bytes", len(got))
		}
	}
	pinned := heapInuse()
	for i := range actorsN {
		e.must("b"+strconv.Itoa(i), "hostile-c", "inc", nil)
	}
	released := heapInuse()
	t.Logf("heap after %d results of %d bytes: %d MiB; after one more small call each: %d MiB",
		actorsN, size, pinned>>20, released>>20)
	if int64(pinned)-int64(released) > actorsN*size/2 {
		t.Fatalf("%d idle instances pinned %d MiB of results already returned", actorsN, (int64(pinned)-int64(released))>>20)
	}
}
