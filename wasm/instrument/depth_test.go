package instrument_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/nolaproject/nola/wasm/instrument"
)

// errOverflow is what the test host's __guest_request panics with when the
// overflow function calls it.
var errOverflow = errors.New("overflow sentinel")

// depthModule has a function for each way out of a function body:
//
//	rec(n)     recursion, returning with return inside an if, or falling off the end
//	brfn(n)    n=0: br 1 from a block; n=1: br_if to the function's label; else br_table to it
//	multi(n)   returns (n, n) with return: a block type that must be added
//	loopret(n) returns from inside a loop
//	fat(n)     rec with 160 locals: 1 + (1+160)/16 = 11 frames per call
func depthModule() []byte {
	guestRequest := "\x01\x04wapc\x0f__guest_request\x00\x00"
	types := "\x04" +
		"\x60\x02\x7f\x7f\x00" + // 0: (i32, i32) -> ()
		"\x60\x01\x7f\x01\x7f" + // 1: (i32) -> i32
		"\x60\x01\x7f\x02\x7f\x7f" + // 2: (i32) -> (i32, i32)
		"\x60\x00\x00" // 3: () -> ()
	funcs := "\x05\x01\x01\x02\x01\x01"
	exports := "\x05" +
		"\x03rec\x00\x01" + "\x04brfn\x00\x02" + "\x05multi\x00\x03" + "\x07loopret\x00\x04" + "\x03fat\x00\x05"
	recur := func(self string) string {
		return "\x20\x00\x45\x04\x40\x41\x00\x0f\x0b" + // if n == 0 { return 0 }
			"\x20\x00\x41\x01\x6b\x10" + self + "\x41\x01\x6a\x0b" // self(n-1) + 1
	}
	bodies := []string{
		"\x00" + recur("\x01"),
		"\x00" +
			"\x02\x40\x20\x00\x0d\x00\x41\x07\x0c\x01\x0b" + // block; br_if 0 (n != 0); br 1 with 7; end
			"\x41\x08\x20\x00\x41\x01\x46\x0d\x00\x1a" + // br_if 0 with 8 if n == 1; drop
			"\x41\x0a\x20\x00\x0e\x01\x00\x00\x0b", // br_table [0] 0 with 10
		"\x00\x20\x00\x20\x00\x0f\x0b",
		"\x00\x03\x40\x20\x00\x0f\x0b\x41\x00\x0b",
		"\x01\xa0\x01\x7f" + recur("\x05"),
	}
	code := "\x05"
	for _, b := range bodies {
		code += ls(uint32(len(b))) + b
	}
	return mod(1, types, 2, guestRequest, 3, funcs, 7, exports, 10, code)
}

// tailModule's tr(n) recurses through return_call.
func tailModule() []byte {
	body := "\x00\x20\x00\x45\x04\x40\x41\x00\x0f\x0b\x20\x00\x41\x01\x6b\x12\x01\x0b"
	return mod(1, "\x02\x60\x02\x7f\x7f\x00\x60\x01\x7f\x01\x7f", 2, "\x01\x04wapc\x0f__guest_request\x00\x00",
		3, "\x01\x01", 7, "\x01\x02tr\x00\x01", 10, "\x01"+ls(uint32(len(body)))+body)
}

// depthRuntime instantiates bin, instrumented with the call-depth limit,
// each time inst is called (an instance that overflowed keeps its count,
// as a host discards it).
func depthRuntime(t *testing.T, bin []byte, limit uint32, features api.CoreFeatures) (inst func() api.Module) {
	t.Helper()
	ctx := context.Background()
	out, err := instrument.Fuel(bin, instrument.Options{MaxCallDepth: limit, InitialFuel: 1 << 30})
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCoreFeatures(features))
	t.Cleanup(func() { r.Close(ctx) })
	mustCompile(t, r, bin) // the module is valid as written
	_, err = r.NewHostModuleBuilder("wapc").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) {
			if uint32(s[0]) == instrument.OverflowPtr && uint32(s[1]) == instrument.RefillPtr {
				panic(errOverflow)
			}
			t.Errorf("__guest_request(%#x, %#x)", uint32(s[0]), uint32(s[1]))
		}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__guest_request").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cm := mustCompile(t, r, out)
	return func() api.Module {
		m, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName(""))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
}

func call(t *testing.T, m api.Module, fn string, n uint64) ([]uint64, error) {
	t.Helper()
	return m.ExportedFunction(fn).Call(context.Background(), n)
}

// A call may nest exactly the limit's frames, weighted by locals, and no
// more; no way out of a function leaves its frame counted.
func TestCallDepthLimit(t *testing.T) {
	const limit = 1100
	inst := depthRuntime(t, depthModule(), limit, api.CoreFeaturesV2)
	m := inst()
	wantOverflow := func(fn string, n uint64) {
		t.Helper()
		if _, err := call(t, inst(), fn, n); !errors.Is(err, errOverflow) {
			t.Fatalf("%s(%d): %v, want the overflow sentinel", fn, n, err)
		}
	}
	// rec(n) nests n+1 frames.
	if res, err := call(t, m, "rec", limit-1); err != nil || res[0] != limit-1 {
		t.Fatalf("rec(%d) = %v, %v", limit-1, res, err)
	}
	wantOverflow("rec", limit)
	// fat weighs 11: 100 frames fit in 1100, 101 do not.
	if res, err := call(t, m, "fat", 99); err != nil || res[0] != 99 {
		t.Fatalf("fat(99) = %v, %v", res, err)
	}
	wantOverflow("fat", 100)

	// Each exit, taken more often than the limit: a frame left counted
	// would add up to an overflow.
	for i := 0; i < 3*limit; i++ {
		for _, c := range []struct {
			fn   string
			n    uint64
			want []uint64
		}{
			{"brfn", 0, []uint64{7}},
			{"brfn", 1, []uint64{8}},
			{"brfn", 5, []uint64{10}},
			{"multi", 3, []uint64{3, 3}},
			{"loopret", 4, []uint64{4}},
			{"rec", 2, []uint64{2}},
		} {
			res, err := call(t, m, c.fn, c.n)
			if err != nil || len(res) != len(c.want) || res[0] != c.want[0] || res[len(res)-1] != c.want[len(c.want)-1] {
				t.Fatalf("call %d: %s(%d) = %v, %v; want %v", i, c.fn, c.n, res, err, c.want)
			}
		}
	}
	// And the full depth is still there.
	if res, err := call(t, m, "rec", limit-1); err != nil || res[0] != limit-1 {
		t.Fatalf("after the loop, rec(%d) = %v, %v", limit-1, res, err)
	}
}

// A tail call replaces its caller's frame, in the count too: tail
// recursion runs far past the limit.
func TestCallDepthTailCalls(t *testing.T) {
	const limit = 100
	inst := depthRuntime(t, tailModule(), limit, api.CoreFeaturesV2|experimental.CoreFeaturesTailCall)
	if res, err := call(t, inst(), "tr", 50*limit); err != nil || res[0] != 0 {
		t.Fatalf("tr(%d) = %v, %v", 50*limit, res, err)
	}
}

// The limit is bounded, so that the count cannot wrap.
func TestCallDepthOption(t *testing.T) {
	_, err := instrument.Fuel(depthModule(), instrument.Options{MaxCallDepth: 1<<30 + 1})
	if !errors.Is(err, instrument.ErrUnsupported) || !strings.Contains(err.Error(), "MaxCallDepth") {
		t.Fatalf("MaxCallDepth 1<<30+1: %v", err)
	}
}

// Every function that takes parameters and returns several values gets a
// block type, however many different tuples they return (here 70, of
// four values each).
func TestCallDepthManyBlockTypes(t *testing.T) {
	const n = 70
	vt := "\x7f\x7e\x7d\x7c"
	types := ls(n + 1)
	for i := 0; i < n; i++ {
		types += "\x60\x01\x7f\x04" + string([]byte{vt[i%4], vt[i/4%4], vt[i/16%4], vt[i/64%4]})
	}
	types += "\x60\x02\x7f\x7f\x00"
	funcs, code := ls(n), ls(n)
	for i := 0; i < n; i++ {
		funcs += ls(uint32(i))
		code += "\x03\x00\x00\x0b" // unreachable
	}
	bin := mod(1, types, 2, "\x01\x04wapc\x0f__guest_request\x00"+ls(n), 3, funcs, 10, code)
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	mustCompile(t, r, bin)
	out, err := instrument.Fuel(bin, instrument.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustCompile(t, r, out)
}
