package instrument_test

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// Every example guest, C and Go, instruments into a valid module that
// exports the fuel global, and the memory cap lands in the module.
func TestGuestsInstrumentAndValidate(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	bins := map[string][]byte{}
	for _, n := range wasmtest.CGuests {
		bins[n+".c"] = wasmtest.C(t, n)
	}
	bins["echo.go"] = wasmtest.Go(t, "echo")
	for name, bin := range bins {
		out, err := instrument.Fuel(bin, instrument.Options{MaxMemoryPages: 64})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cm, err := r.CompileModule(ctx, out)
		if err != nil {
			t.Fatalf("%s: instrumented module invalid: %v", name, err)
		}
		orig, err := r.CompileModule(ctx, bin)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := len(cm.ExportedFunctions()), len(orig.ExportedFunctions()); got != want {
			t.Fatalf("%s: %d exported functions, want %d", name, got, want)
		}
		mem := cm.ExportedMemories()["memory"]
		if max, ok := mem.Max(); !ok || max != 64 {
			t.Fatalf("%s: memory max %d (%v), want 64", name, max, ok)
		}
		// Instrumenting twice is refused: the export exists.
		if _, err := instrument.Fuel(out, instrument.Options{}); !errors.Is(err, instrument.ErrUnsupported) {
			t.Fatalf("%s: second instrumentation: %v", name, err)
		}
	}
}

// The checkpoints burn fuel: a guest loop runs out of it and calls the
// refill sentinel through __guest_request.
func TestCheckpointsBurnFuelAndRefill(t *testing.T) {
	ctx := context.Background()
	out, err := instrument.Fuel(wasmtest.C(t, "hostile"), instrument.Options{InitialFuel: 1000})
	if err != nil {
		t.Fatal(err)
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r) // hostile imports random_get
	refills := 0
	var fuel api.MutableGlobal
	op := "spin"
	stop := errors.New("enough")
	noop := api.GoModuleFunc(func(context.Context, api.Module, []uint64) {})
	_, err = r.NewHostModuleBuilder("wapc").
		NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, m api.Module, s []uint64) {
		if uint32(s[0]) == instrument.RefillPtr && uint32(s[1]) == instrument.RefillPtr {
			if refills++; refills == 5 {
				panic(stop)
			}
			fuel.Set(1000)
			return
		}
		m.Memory().WriteString(uint32(s[0]), op)
	}), []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__guest_request").
		NewFunctionBuilder().WithGoModuleFunction(noop, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__guest_response").
		NewFunctionBuilder().WithGoModuleFunction(noop, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__guest_error").
		NewFunctionBuilder().WithGoModuleFunction(noop, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32}, nil).Export("__console_log").
		NewFunctionBuilder().WithGoModuleFunction(noop, []api.ValueType{api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32, api.ValueTypeI32}, []api.ValueType{api.ValueTypeI32}).Export("__host_call").
		NewFunctionBuilder().WithGoModuleFunction(noop, nil, []api.ValueType{api.ValueTypeI32}).Export("__host_response_len").
		NewFunctionBuilder().WithGoModuleFunction(noop, []api.ValueType{api.ValueTypeI32}, nil).Export("__host_response").
		NewFunctionBuilder().WithGoModuleFunction(noop, nil, []api.ValueType{api.ValueTypeI32}).Export("__host_error_len").
		NewFunctionBuilder().WithGoModuleFunction(noop, []api.ValueType{api.ValueTypeI32}, nil).Export("__host_error").
		Instantiate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	m, err := r.InstantiateModule(ctx, mustCompile(t, r, out), wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	fuel = m.ExportedGlobal(instrument.FuelExport).(api.MutableGlobal)
	if got := uint32(fuel.Get()); got != 1000 {
		t.Fatalf("initial fuel %d, want 1000", got)
	}
	_, err = m.ExportedFunction("__guest_call").Call(ctx, uint64(len(op)), 0)
	if !errors.Is(err, stop) || refills != 5 {
		t.Fatalf("spin: %v after %d refills, want the host's abort on the 5th", err, refills)
	}
	// A short call burns a little fuel and returns.
	fuel.Set(1000)
	op = "inc"
	if _, err := m.ExportedFunction("__guest_call").Call(ctx, uint64(len(op)), 0); err != nil {
		t.Fatal(err)
	}
	if left := uint32(fuel.Get()); left >= 1000 || left < 900 {
		t.Fatalf("inc left %d of 1000 fuel", left)
	}
}

func mustCompile(t *testing.T, r wazero.Runtime, bin []byte) wazero.CompiledModule {
	t.Helper()
	cm, err := r.CompileModule(context.Background(), bin)
	if err != nil {
		t.Fatal(err)
	}
	return cm
}

func TestRejectsWhatItCannotRewrite(t *testing.T) {
	counter := wasmtest.C(t, "counter")
	cases := map[string][]byte{
		"empty":     nil,
		"not wasm":  []byte("\x7fELF\x02\x01\x01\x00"),
		"version 2": []byte("\x00asm\x02\x00\x00\x00"),
		"truncated": counter[:len(counter)-3],
		// A valid module without wapc.__guest_request.
		"no guest request": []byte("\x00asm\x01\x00\x00\x00"),
	}
	for name, bin := range cases {
		if _, err := instrument.Fuel(bin, instrument.Options{}); !errors.Is(err, instrument.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	if _, err := instrument.Fuel(counter, instrument.Options{MaxMemoryPages: 0}); err != nil {
		t.Fatal(err)
	}
}

// The rewriter never panics, whatever the input, fails only with its
// typed errors, allocates in proportion to the input (Check runs first),
// and what it accepts from a valid module it turns into a valid module.
func FuzzFuel(f *testing.F) {
	for _, n := range wasmtest.CGuests {
		f.Add(wasmtest.C(f, n))
	}
	f.Add([]byte(Bomb))
	f.Fuzz(func(t *testing.T, bin []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		out, err := instrument.Fuel(bin, instrument.Options{MaxMemoryPages: 8})
		runtime.ReadMemStats(&after)
		// The output alone can be 13 times the input (a function of 3
		// bytes gains some 50 of entry and exit code), and it is built
		// twice: the code section, then the module (38 B per byte for
		// 2^16 empty functions).
		if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20+48*uint64(len(bin)) {
			t.Fatalf("rewriting %d bytes allocated %d", len(bin), n)
		}
		if err != nil {
			if !errors.Is(err, instrument.ErrUnsupported) && !errors.Is(err, instrument.ErrLimit) {
				t.Fatalf("untyped error: %v", err)
			}
			return
		}
		ctx := context.Background()
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
		defer r.Close(ctx)
		if _, err := modules.Compile(ctx, r, bin); err != nil {
			return // invalid input (wazero may even panic on it): nothing to preserve
		}
		if _, err := modules.Compile(ctx, r, out); err != nil {
			t.Fatalf("valid module became invalid: %v", err)
		}
		// So does it with its globals exported for a snapshot.
		rw, err := instrument.Rewrite(bin, instrument.Options{MaxMemoryPages: 8, MemoryImage: true, ExportGlobals: true})
		if err != nil {
			t.Fatalf("rewrite with ExportGlobals failed where Fuel did not: %v", err)
		}
		if _, err := modules.Compile(ctx, r, rw.Module); err != nil {
			t.Fatalf("valid module became invalid with ExportGlobals: %v", err)
		}
		if bytes.Equal(out, bin) {
			t.Fatal("nothing was rewritten")
		}
	})
}
