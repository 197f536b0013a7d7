package wasm_test

import (
	"bytes"
	"context"
	"strconv"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/wapc/wapc-go"
	wapcwazero "github.com/wapc/wapc-go/engines/wazero"

	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// The example guests are plain waPC guests: the reference host, wapc-go's
// wazero engine, runs them too, and their host calls carry nola's wire
// format. (wapc-go v0.7.0 never runs a reactor's _initialize: a Go guest
// needs it added as a start function. The slice its Invoke returns aliases
// guest memory; the test copies it.)
func TestGuestsRunOnTheReferenceWAPCHost(t *testing.T) {
	ctx := context.Background()
	var calls []string
	host := func(_ context.Context, binding, namespace, operation string, payload []byte) ([]byte, error) {
		calls = append(calls, binding+"/"+namespace+"/"+operation)
		if namespace == abi.NSActor {
			f, err := abi.Fields(payload, 4)
			if err != nil {
				return nil, err
			}
			return []byte(string(f[1]) + ":" + string(f[0]) + ":" + string(f[2])), nil
		}
		return []byte{}, nil
	}
	// wapc-go's default runtime, with the tests' compilation cache.
	engine := wapcwazero.EngineWithRuntime(func(ctx context.Context) (wazero.Runtime, error) {
		r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(cache()))
		if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
			_ = r.Close(ctx)
			return nil, err
		}
		return r, nil
	})
	for _, c := range []struct {
		name string
		bin  []byte
	}{{"c", wasmtest.C(t, "counter")}, {"go", wasmtest.Go(t, "counter")}} {
		t.Run("counter-"+c.name, func(t *testing.T) {
			m, err := engine.New(ctx, host, c.bin, &wapc.ModuleConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(ctx)
			m.(*wapcwazero.Module).WithConfig(func(mc wazero.ModuleConfig) wazero.ModuleConfig {
				return mc.WithStartFunctions("_initialize")
			})
			inst, err := m.Instantiate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer inst.Close(ctx)
			for i := range 3 {
				res, err := inst.Invoke(ctx, "inc", nil)
				if err != nil || string(bytes.Clone(res)) != strconv.Itoa(i) {
					t.Fatalf("inc #%d = %q, %v", i, res, err)
				}
			}
			if _, err := inst.Invoke(ctx, "nope", nil); err == nil || err.Error() != `unknown operation "nope"` {
				t.Fatalf("unknown op: %v", err)
			}
		})
	}
	for _, c := range []struct {
		name string
		bin  []byte
	}{{"c", wasmtest.C(t, "caller")}, {"go", wasmtest.Go(t, "caller")}} {
		t.Run("caller-"+c.name, func(t *testing.T) {
			calls = nil
			m, err := engine.New(ctx, host, c.bin, &wapc.ModuleConfig{})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close(ctx)
			m.(*wapcwazero.Module).WithConfig(func(mc wazero.ModuleConfig) wazero.ModuleConfig {
				return mc.WithStartFunctions("_initialize")
			})
			inst, err := m.Instantiate(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer inst.Close(ctx)
			res, err := inst.Invoke(ctx, "call", []byte("counter/x/inc"))
			if err != nil || string(bytes.Clone(res)) != "counter:x:inc" {
				t.Fatalf("call = %q, %v", res, err)
			}
			if len(calls) != 1 || calls[0] != "nola/actor/invoke" {
				t.Fatalf("host calls %v", calls)
			}
		})
	}
}
