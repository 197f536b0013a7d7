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
	ctx := context.Background()
	mods := benchMods()
	if _, err := mods.Stat(ctx, "t", "counter-c"); err != nil {
		if _, err := mods.Put(ctx, "t", "counter-c", wasmtest.C(tb, "counter"), modules.Options{}); err != nil {
			tb.Fatal(err)
		}
	}
	h, err := New(ctx, Config{Runtime: rt.NewReal(), Modules: mods, CompilationCache: testCache()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { h.Close(ctx) })
	mod, err := h.load(ctx, "t", "counter-c")
	if err != nil {
		tb.Fatal(err)
	}
	return h, mod
}
