package instrument_test

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/nolaproject/nola/wasm/instrument"
)

// bulkModule has a function per bulk instruction, each taking the length:
// f(n, keep) stores keep in its local, memory.fills n bytes and returns
// the local; copy (memory.copy), init (memory.init from a passive segment
// of 1024 bytes), tfill (table.fill), tcopy (table.copy), tinit
// (table.init from a passive segment of 100 entries); line(n) runs 1000
// memory.fills of n bytes in straight-line code.
func bulkModule() []byte {
	body := func(locals, code string) string {
		b := locals + code + "\x0b"
		return ls(uint32(len(b))) + b
	}
	lenOp := func(op string) string { return "\x41\x00\x41\x00\x20\x00" + op } // dst 0, src/value 0, length n
	code := "\x07" +
		body("\x01\x01\x7f", "\x20\x01\x21\x02"+lenOp("\xfc\x0b\x00")+"\x20\x02") + // f
		body("\x00", lenOp("\xfc\x0a\x00\x00")) + // copy
		body("\x00", lenOp("\xfc\x08\x00\x00")) + // init
		body("\x00", "\x41\x00\xd0\x70\x20\x00\xfc\x11\x00") + // tfill
		body("\x00", lenOp("\xfc\x0e\x00\x00")) + // tcopy
		body("\x00", lenOp("\xfc\x0c\x00\x00")) + // tinit
		body("\x00", strings.Repeat(lenOp("\xfc\x0b\x00"), 1000)) // line
	return mod(
		1, "\x03\x60\x02\x7f\x7f\x00\x60\x02\x7f\x7f\x01\x7f\x60\x01\x7f\x00",
		2, "\x01\x04wapc\x0f__guest_request\x00\x00",
		3, "\x07\x01\x02\x02\x02\x02\x02\x02",
		4, "\x01\x70\x00\x64",
		5, "\x01\x00\x01",
		7, "\x07\x01f\x00\x01\x04copy\x00\x02\x04init\x00\x03\x05tfill\x00\x04\x05tcopy\x00\x05\x05tinit\x00\x06\x04line\x00\x07",
		9, "\x01\x01\x00\x64"+strings.Repeat("\x01", 100),
		12, "\x01",
		10, code,
		11, "\x01\x01\x80\x08"+strings.Repeat("\x00", 1024),
	)
}

// A bulk instruction takes fuel by its length — a unit per 64 bytes, per 8
// table entries — on top of the function entry's checkpoint, saturating at
// zero and then calling the refill, as a checkpoint would; the length it
// passes through the charge function arrives intact, and the function's
// locals stay its own.
func TestBulkInstructionsCharge(t *testing.T) {
	ctx := context.Background()
	const initial = 1 << 20
	refillTo := uint64(1000)
	bin := bulkModule()
	out, err := instrument.Fuel(bin, instrument.Options{InitialFuel: initial})
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mustCompile(t, r, bin)
	refills := 0
	var fuel api.MutableGlobal
	_, err = r.NewHostModuleBuilder("wapc").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) {
			if uint32(s[0]) != instrument.RefillPtr || uint32(s[1]) != instrument.RefillPtr {
				t.Errorf("__guest_request(%#x, %#x)", uint32(s[0]), uint32(s[1]))
			}
			refills++
			fuel.Set(refillTo)
		}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__guest_request").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.InstantiateModule(ctx, mustCompile(t, r, out), wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	fuel = m.ExportedGlobal(instrument.FuelExport).(api.MutableGlobal)
	for _, c := range []struct {
		fn         string
		n          uint64
		fuel, want uint64 // before and after
		refills    int
	}{
		{"f", 65536, initial, initial - 1 - 1024, 0},
		{"f", 640, initial, initial - 1 - 10, 0},
		{"f", 63, initial, initial - 1, 0}, // less than a unit
		{"f", 65536, 5, refillTo, 1},       // 4 left after the entry: emptied, refilled
		{"copy", 32768, initial, initial - 1 - 512, 0},
		{"init", 1024, initial, initial - 1 - 16, 0},
		{"tfill", 80, initial, initial - 1 - 10, 0},
		{"tfill", 100, 3, refillTo, 1},
		{"tcopy", 64, initial, initial - 1 - 8, 0},
		{"tinit", 96, initial, initial - 1 - 12, 0},
	} {
		fuel.Set(c.fuel)
		refills = 0
		args := []uint64{c.n}
		if c.fn == "f" {
			args = append(args, 77)
		}
		res, err := m.ExportedFunction(c.fn).Call(ctx, args...)
		if err != nil {
			t.Fatalf("%s(%d): %v", c.fn, c.n, err)
		}
		if c.fn == "f" && res[0] != 77 {
			t.Fatalf("f(%d, 77) = %d: the charge clobbered the function's local", c.n, res[0])
		}
		if got := fuel.Get(); got != c.want || refills != c.refills {
			t.Errorf("%s(%d) from %d fuel left %d after %d refills, want %d after %d", c.fn, c.n, c.fuel, got, refills, c.want, c.refills)
		}
	}

	// Straight-line code has no checkpoint after its bulk instructions:
	// the charge itself calls the host whenever it empties the fuel. 1000
	// charges of 1024 from 2^18 (less the entry's 1) empty it at the
	// 256th, 512th and 768th, refilled to 2^18 each time.
	refillTo, refills = 1<<18, 0
	fuel.Set(refillTo)
	if _, err := m.ExportedFunction("line").Call(ctx, 65536); err != nil {
		t.Fatal(err)
	}
	if left := fuel.Get(); refills != 3 || left != 1<<18-232*1024 {
		t.Errorf("1000 straight-line fills of 64 KiB from 2^18 fuel: %d refills, %d left; want 3 and %d", refills, left, 1<<18-232*1024)
	}
}

// The charge hands the length back untouched: f(n) fills n bytes with 42
// and reads back the last one, and the one after it.
func TestBulkChargeKeepsTheLength(t *testing.T) {
	ctx := context.Background()
	code := "\x00" + "\x41\x00\x41\x2a\x20\x00\xfc\x0b\x00" + // memory.fill(0, 42, n)
		"\x20\x00\x41\x01\x6b\x2d\x00\x00" + // load8_u(n-1)
		"\x20\x00\x2d\x00\x00\x6a\x0b" // + load8_u(n)
	bin := mod(1, "\x02\x60\x02\x7f\x7f\x00\x60\x01\x7f\x01\x7f", 2, "\x01\x04wapc\x0f__guest_request\x00\x00",
		3, "\x01\x01", 5, "\x01\x00\x01", 7, "\x01\x01f\x00\x01", 10, "\x01"+ls(uint32(len(code)))+code)
	out, err := instrument.Fuel(bin, instrument.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mustCompile(t, r, bin)
	noop := api.GoModuleFunc(func(context.Context, api.Module, []uint64) {})
	if _, err := r.NewHostModuleBuilder("wapc").NewFunctionBuilder().WithGoModuleFunction(noop, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).
		Export("__guest_request").Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	m, err := r.InstantiateModule(ctx, mustCompile(t, r, out), wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	if res, err := m.ExportedFunction("f").Call(ctx, 6400); err != nil || res[0] != 42 {
		t.Fatalf("f(6400) = %v, %v; want 42 (byte 6399 filled, 6400 not)", res, err)
	}
}
