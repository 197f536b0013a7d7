package instrument_test

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/nolaproject/nola/wasm/instrument"
)

// bulkModule: f(n, keep) stores keep in its local, memory.fills n bytes and
// returns the local; g(n) table.fills n entries.
func bulkModule() []byte {
	f := "\x01\x01\x7f" + "\x20\x01\x21\x02" + "\x41\x00\x41\x00\x20\x00\xfc\x0b\x00" + "\x20\x02\x0b"
	g := "\x00" + "\x41\x00\xd0\x70\x20\x00\xfc\x11\x00\x0b"
	return mod(
		1, "\x03\x60\x02\x7f\x7f\x00\x60\x02\x7f\x7f\x01\x7f\x60\x01\x7f\x00",
		2, "\x01\x04wapc\x0f__guest_request\x00\x00",
		3, "\x02\x01\x02",
		4, "\x01\x70\x00\x64",
		5, "\x01\x00\x01",
		7, "\x02\x01f\x00\x01\x01g\x00\x02",
		10, "\x02"+ls(uint32(len(f)))+f+ls(uint32(len(g)))+g,
	)
}

// A bulk instruction takes fuel by its length — a unit per 64 bytes, per 8
// table entries — on top of the function entry's checkpoint, saturating at
// zero, and the scratch local it needs leaves the function's own alone.
func TestBulkInstructionsCharge(t *testing.T) {
	ctx := context.Background()
	const initial = 1 << 20
	bin := bulkModule()
	out, err := instrument.Fuel(bin, instrument.Options{InitialFuel: initial})
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	mustCompile(t, r, bin)
	_, err = r.NewHostModuleBuilder("wapc").NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, s []uint64) {
			t.Errorf("__guest_request(%#x, %#x): no refill or overflow expected", uint32(s[0]), uint32(s[1]))
		}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__guest_request").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.InstantiateModule(ctx, mustCompile(t, r, out), wazero.NewModuleConfig())
	if err != nil {
		t.Fatal(err)
	}
	fuel := m.ExportedGlobal(instrument.FuelExport).(api.MutableGlobal)
	for _, c := range []struct {
		fn         string
		n          uint64
		fuel, want uint32 // before and after
	}{
		{"f", 65536, initial, initial - 1 - 1024},
		{"f", 640, initial, initial - 1 - 10},
		{"f", 63, initial, initial - 1}, // less than a unit
		{"f", 65536, 5, 0},              // saturates: 4 left after the entry
		{"g", 80, initial, initial - 1 - 10},
		{"g", 100, 3, 0},
	} {
		fuel.Set(uint64(c.fuel))
		args := []uint64{c.n}
		if c.fn == "f" {
			args = append(args, 77)
		}
		res, err := m.ExportedFunction(c.fn).Call(ctx, args...)
		if err != nil {
			t.Fatalf("%s(%d): %v", c.fn, c.n, err)
		}
		if c.fn == "f" && res[0] != 77 {
			t.Fatalf("f(%d, 77) = %d: the scratch local clobbered the function's own", c.n, res[0])
		}
		if got := uint32(fuel.Get()); got != c.want {
			t.Errorf("%s(%d) from %d fuel left %d, want %d", c.fn, c.n, c.fuel, got, c.want)
		}
	}
}
