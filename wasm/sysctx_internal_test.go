package wasm

import (
	"context"
	"reflect"
	"testing"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// An instance keeps no wazero system context (sysField.drop): it is ~900
// B of heap per live instance that nothing reads. The test also fails if
// a wazero upgrade renames the field sysField.drop clears, which would
// otherwise silently bring the bytes back.
func TestSysContextIsDropped(t *testing.T) {
	h, mod := counterCHost(t)
	for i := range 2 { // the first instantiation takes the snapshot
		in, err := h.instantiate(initCx{}, mod, nola.Ref{Namespace: "t", ID: "a"})
		if err != nil {
			t.Fatal(err)
		}
		v := reflect.ValueOf(in.m)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			t.Fatalf("instance %d: wazero's module is a %T, not a pointer to a struct", i, in.m)
		}
		f := v.Elem().FieldByName("Sys")
		if !f.IsValid() {
			t.Fatalf("wazero's %T has no field Sys any more: sysField.drop drops nothing", in.m)
		}
		if !f.IsNil() {
			t.Fatalf("instance %d keeps wazero's system context", i)
		}
		in.close()
	}
}

// counterCHost returns a Host on the package's shared module store and
// compilation cache (closed when tb ends) and its compiled C counter.
func counterCHost(tb testing.TB) (*Host, *compiled) {
	tb.Helper()
	return counterHost(tb, "counter-c", Config{})
}

// counterHost uploads the C or Go counter guest as module (counter-c,
// counter-go) to the shared test module store, if it is not there, makes
// a Host on cfg with that store and the test compilation cache (and the
// real runtime, if cfg has none), closed at the test's end, and returns
// it with the module compiled.
func counterHost(tb testing.TB, module string, cfg Config) (*Host, *compiled) {
	tb.Helper()
	ctx := context.Background()
	mods := benchMods()
	if _, err := mods.Stat(ctx, "t", module); err != nil {
		build := wasmtest.C
		if module == "counter-go" {
			build = wasmtest.Go
		}
		if _, err := mods.Put(ctx, "t", module, build(tb, "counter"), modules.Options{}); err != nil {
			tb.Fatal(err)
		}
	}
	if cfg.Runtime == nil {
		cfg.Runtime = rt.NewReal()
	}
	cfg.Modules, cfg.CompilationCache = mods, testCache()
	h, err := New(ctx, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close(ctx) })
	mod, err := h.load(ctx, "t", module)
	if err != nil {
		tb.Fatal(err)
	}
	return h, mod
}
