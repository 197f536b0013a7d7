package wasm

import (
	"context"
	"encoding/binary"
	"maps"
	"reflect"
	"slices"
	"sync"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/sys"

	"github.com/nolaproject/nola/wasm/abi"
)

// WASI errno values.
const (
	errnoSuccess    = 0
	errnoBadf       = 8
	errnoInval      = 28
	errnoNosys      = 52
	errnoNotcapable = 76
)

// instantiateWASI defines the wasi_snapshot_preview1 functions a Go wasip1
// guest needs to start, and stubs for the rest: no files (no preopened
// directories; stdin is empty; stdout and stderr are captured), no
// sockets, no environment, no arguments. Clocks and randomness come from
// the server's runtime, so they are virtual and seeded under simulation.
// poll_oneoff never blocks: a guest cannot sleep (its subscriptions are
// reported ready at once).
func (h *Host) instantiateWASI(ctx context.Context) (api.Module, error) {
	b := h.wz.NewHostModuleBuilder(abi.ModuleWASI)
	impl := map[string]api.GoModuleFunc{
		"args_sizes_get":    zeroCounts,
		"environ_sizes_get": zeroCounts,
		"args_get":          success,
		"environ_get":       success,
		"sched_yield":       success,
		"clock_res_get":     h.clockResGet,
		"clock_time_get":    h.clockTimeGet,
		"random_get":        h.randomGet,
		"fd_write":          fdWrite,
		"fd_read":           fdRead,
		"fd_fdstat_get":     fdFdstatGet,
		"fd_filestat_get":   fdFilestatGet,
		"fd_prestat_get":    errno(errnoBadf),
		"poll_oneoff":       pollOneoff,
		"proc_exit":         procExit,
		"proc_raise":        errno(errnoNosys),
	}
	for _, name := range sortedKeys(abi.WASIImports) {
		params, results := types(abi.WASIImports[name])
		f := impl[name]
		if f == nil {
			// A stub: it answers an error and does nothing else, so
			// it is no effect (a Go guest's start-up calls
			// fd_fdstat_set_flags on its standard descriptors).
			switch name[:2] {
			case "fd", "so":
				f = errno(errnoBadf)
			default:
				f = errno(errnoNotcapable)
			}
		} else {
			f = effecting(abi.ModuleWASI, name, f)
		}
		b.NewFunctionBuilder().WithGoModuleFunction(f, params, results).Export(name)
	}
	return b.Instantiate(ctx)
}

func sortedKeys(m map[string]abi.Signature) []string {
	return slices.Sorted(maps.Keys(m))
}

func errno(e uint64) api.GoModuleFunc {
	return func(_ context.Context, _ api.Module, stack []uint64) { stack[0] = e }
}

func success(_ context.Context, _ api.Module, stack []uint64) { stack[0] = errnoSuccess }

// zeroCounts answers args_sizes_get and environ_sizes_get: none.
func zeroCounts(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	in.writeU32(m, uint32(stack[0]), 0)
	in.writeU32(m, uint32(stack[1]), 0)
	stack[0] = errnoSuccess
}

func (in *instance) writeU32(m api.Module, ptr, v uint32) {
	if !m.Memory().WriteUint32Le(ptr, v) {
		in.fail(TrapABI, "WASI: result at %#x is outside the guest's memory", ptr)
	}
}

func (in *instance) writeU64(m api.Module, ptr uint32, v uint64) {
	if !m.Memory().WriteUint64Le(ptr, v) {
		in.fail(TrapABI, "WASI: result at %#x is outside the guest's memory", ptr)
	}
}

func (h *Host) clockResGet(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	if uint32(stack[0]) > 3 {
		stack[0] = errnoInval
		return
	}
	in.writeU64(m, uint32(stack[1]), 1)
	stack[0] = errnoSuccess
}

// monoBase offsets the monotonic clocks guests see: the runtime's starts at
// zero (under simulation, exactly), and Go's runtime refuses a nanotime of
// zero.
const monoBase = uint64(time.Second)

// clockTimeGet serves the realtime clock from the runtime's wall clock and
// every other clock from its monotonic clock.
func (h *Host) clockTimeGet(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	var v uint64
	switch uint32(stack[0]) {
	case 0:
		v = uint64(h.rt.Now().UnixNano())
	case 1, 2, 3:
		v = monoBase + uint64(h.rt.Mono())
	default:
		stack[0] = errnoInval
		return
	}
	in.writeU64(m, uint32(stack[2]), v)
	stack[0] = errnoSuccess
}

func (h *Host) randomGet(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	in.countHostCall()
	if in.pastDeadline() {
		in.fail(TrapDeadline, "random_get after the invocation's deadline")
	}
	buf := in.read(m, "random_get", uint32(stack[0]), uint32(stack[1]))
	var w [8]byte
	for i := 0; i < len(buf); i += 8 {
		binary.LittleEndian.PutUint64(w[:], h.rt.Uint64())
		copy(buf[i:], w[:])
	}
	stack[0] = errnoSuccess
}

// fdWrite captures stdout and stderr; other descriptors do not exist.
func fdWrite(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	fd, iovs, n, written := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	if fd != 1 && fd != 2 {
		stack[0] = errnoBadf
		return
	}
	in.countHostCall()
	total := uint32(0)
	for i := uint32(0); i < n; i++ {
		iov := in.read(m, "fd_write: iovec", iovs+8*i, 8)
		ptr, l := binary.LittleEndian.Uint32(iov), binary.LittleEndian.Uint32(iov[4:])
		in.capture(in.read(m, "fd_write: buffer", ptr, l))
		total += l
	}
	in.writeU32(m, written, total)
	stack[0] = errnoSuccess
}

// fdRead: stdin is empty; other descriptors do not exist.
func fdRead(ctx context.Context, m api.Module, stack []uint64) {
	if uint32(stack[0]) != 0 {
		stack[0] = errnoBadf
		return
	}
	instanceOf(ctx).writeU32(m, uint32(stack[3]), 0)
	stack[0] = errnoSuccess
}

// fdFdstatGet describes the three standard descriptors as character
// devices.
func fdFdstatGet(ctx context.Context, m api.Module, stack []uint64) {
	if uint32(stack[0]) > 2 {
		stack[0] = errnoBadf
		return
	}
	in := instanceOf(ctx)
	var st [24]byte
	st[0] = 2                                       // filetype: character device
	binary.LittleEndian.PutUint64(st[8:], 0x40|0x2) // rights: fd_write | fd_read
	in.write(m, "fd_fdstat_get", uint32(stack[1]), st[:])
	stack[0] = errnoSuccess
}

func fdFilestatGet(ctx context.Context, m api.Module, stack []uint64) {
	if uint32(stack[0]) > 2 {
		stack[0] = errnoBadf
		return
	}
	in := instanceOf(ctx)
	var st [64]byte
	st[16] = 2 // filetype: character device
	in.write(m, "fd_filestat_get", uint32(stack[1]), st[:])
	stack[0] = errnoSuccess
}

// pollOneoff reports every subscription ready at once: clocks as elapsed,
// descriptors as ready with nothing to transfer. A guest cannot block.
func pollOneoff(ctx context.Context, m api.Module, stack []uint64) {
	in := instanceOf(ctx)
	subs, events, n, nevents := uint32(stack[0]), uint32(stack[1]), uint32(stack[2]), uint32(stack[3])
	if n == 0 || n > 1024 {
		stack[0] = errnoInval
		return
	}
	in.countHostCall()
	for i := uint32(0); i < n; i++ {
		sub := in.read(m, "poll_oneoff: subscription", subs+48*i, 48)
		var ev [32]byte
		copy(ev[:8], sub[:8]) // userdata
		ev[10] = sub[8]       // type: the subscription's tag
		in.write(m, "poll_oneoff: event", events+32*i, ev[:])
	}
	in.writeU32(m, nevents, n)
	stack[0] = errnoSuccess
}

// procExit ends the guest's execution: a Go guest exits this way after a
// panic (its message is on stderr).
func procExit(ctx context.Context, _ api.Module, stack []uint64) {
	instanceOf(ctx).fail(TrapExit, "the guest exited with code %d", uint32(stack[0]))
}

// moduleConfig is the one wazero.ModuleConfig every instance of a Host is
// built with. No start functions: the host runs _initialize and
// wapc_init itself. wazero builds a system context (arguments,
// environment, clocks, randomness, stdio and preopened files) for every
// instance from this config, which only wazero's own WASI would read: the
// host implements WASI itself (instantiateWASI), its clocks and
// randomness from the server's runtime. So the config shares everything
// it can between instances — a fixed random source and clocks that
// capture nothing, where wazero's defaults allocate a seeded generator
// and two counting closures per instance — and sysField.drop discards
// what is left once the instance exists.
func moduleConfig() wazero.ModuleConfig {
	return wazero.NewModuleConfig().WithName("").WithStartFunctions().
		WithRandSource(zeroReader{}).
		WithWalltime(unusedWalltime, sys.ClockResolution(1)).
		WithNanotime(unusedNanotime, sys.ClockResolution(1))
}

// zeroReader is the random source of wazero's unused system context.
type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// unusedWalltime and unusedNanotime are the clocks of wazero's unused
// system context: package-level functions, so no instance allocates one.
func unusedWalltime() (int64, int32) { return 0, 0 }
func unusedNanotime() int64          { return 0 }

// sysField drops the system context wazero built for a guest module,
// about 900 B of Go heap per instance — a third of a live C instance's
// (BenchmarkLiveInstanceHeap): the context itself, the three stdio file
// entries and the 64-slot descriptor table they sit in. Only wazero's WASI
// and its other built-in host modules read it, and the host instantiates
// none of them (instantiateWASI defines its own functions); wazero leaves
// the context nil for host modules and when closing one, so a nil context
// is a state it handles. The field is exported from an internal package,
// hence reflection; if a wazero upgrade renames it, nothing is dropped and
// TestSysContextIsDropped fails.
type sysField struct {
	once sync.Once
	idx  int // the field's index in wazero's module struct; -1: none
}

// drop clears m's system context. The field is looked up by name once,
// on the first module (wazero has one module type), not per instance.
func (f *sysField) drop(m api.Module) {
	v := reflect.ValueOf(m)
	if v.Kind() != reflect.Pointer || v.IsNil() || v.Elem().Kind() != reflect.Struct {
		return
	}
	f.once.Do(func() {
		f.idx = -1
		if sf, ok := v.Type().Elem().FieldByName("Sys"); ok && sf.IsExported() && len(sf.Index) == 1 && sf.Type.Kind() == reflect.Pointer {
			f.idx = sf.Index[0]
		}
	})
	if f.idx >= 0 && v.Elem().Type().Field(f.idx).Name == "Sys" {
		v.Elem().Field(f.idx).SetZero()
	}
}
