package instrument_test

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// ExportGlobals exports every mutable global, deterministically, into a
// valid module; the example guests' state is snapshot-safe.
func TestExportGlobals(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	bins := map[string][]byte{"echo.go": wasmtest.Go(t, "echo")}
	for _, n := range wasmtest.CGuests {
		bins[n+".c"] = wasmtest.C(t, n)
	}
	for name, bin := range bins {
		opts := instrument.Options{MemoryImage: true, ExportGlobals: true}
		rw, err := instrument.Rewrite(bin, opts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		again, err := instrument.Rewrite(bin, opts)
		if err != nil || !bytes.Equal(again.Module, rw.Module) {
			t.Fatalf("%s: a second rewrite differs (%v)", name, err)
		}
		mustCompile(t, r, rw.Module)
		if rw.Snapshot.Refused != "" {
			t.Fatalf("%s: snapshot refused: %s", name, rw.Snapshot.Refused)
		}
		if len(rw.Snapshot.Globals) == 0 {
			t.Fatalf("%s: no mutable globals found (a stack pointer at least)", name)
		}
		for _, g := range rw.Snapshot.Globals {
			if !bytes.Contains(rw.Module, []byte(g.Name)) || !strings.HasPrefix(g.Name, instrument.GlobalExport) {
				t.Fatalf("%s: global %d not exported as %q", name, g.Index, g.Name)
			}
		}
		plain, err := instrument.Rewrite(bin, instrument.Options{MemoryImage: true})
		if err != nil {
			t.Fatal(err)
		}
		if plain.Snapshot.Globals != nil || bytes.Contains(plain.Module, []byte(instrument.GlobalExport)) {
			t.Fatalf("%s: globals exported without ExportGlobals", name)
		}
	}
	if n := len(mustRewrite(t, bins["echo.go"]).Snapshot.Globals); n != 8 {
		t.Fatalf("a Go guest has %d mutable globals, want Go's 8 (SP, CTXT, g, RET0-3, PAUSE)", n)
	}
}

func mustRewrite(t *testing.T, bin []byte) instrument.Rewritten {
	t.Helper()
	rw, err := instrument.Rewrite(bin, instrument.Options{ExportGlobals: true})
	if err != nil {
		t.Fatal(err)
	}
	return rw
}

// stateModule is a valid module importing __guest_request, with a table,
// a memory, globals (a mutable i32 and extra) and one function running
// code; start adds a start section.
func stateModule(code, extraGlobal string, start bool) []byte {
	globals := "\x01\x7f\x01\x41\x00\x0b"
	if extraGlobal != "" {
		globals = "\x02\x7f\x01\x41\x00\x0b" + extraGlobal
	}
	body := "\x00" + code + "\x0b"
	sections := []any{
		1, "\x02\x60\x02\x7f\x7f\x00\x60\x00\x00",
		2, "\x01\x04wapc\x0f__guest_request\x00\x00",
		3, "\x01\x01",
		4, "\x01\x70\x00\x01",
		5, onePage,
		6, globals,
	}
	if start {
		sections = append(sections, 8, "\x01")
	}
	sections = append(sections, 10, "\x01"+ls(uint32(len(body)))+body)
	return mod(sections...)
}

// A module whose state is more than memory and numeric globals is refused
// a snapshot, and says why; the rewrite itself still succeeds.
func TestSnapshotRefusals(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	for name, tc := range map[string]struct {
		bin  []byte
		want string
	}{
		"plain":      {stateModule("\x41\x01\x24\x00", "", false), ""},
		"table.set":  {stateModule("\x41\x00\xd0\x70\x26\x00", "", false), "its code uses table.set"},
		"table.grow": {stateModule("\xd0\x70\x41\x01\xfc\x0f\x00\x1a", "", false), "its code uses table.grow"},
		"table.fill": {stateModule("\x41\x00\xd0\x70\x41\x00\xfc\x11\x00", "", false), "its code uses table.fill"},
		"table.copy": {stateModule("\x41\x00\x41\x00\x41\x00\xfc\x0e\x00\x00", "", false), "its code uses table.copy"},
		"start":      {stateModule("", "", true), "the module has a start function"},
		"funcref":    {stateModule("", "\x70\x01\xd0\x70\x0b", false), "mutable global 1 has type 0x70"},
		"immutable":  {stateModule("", "\x70\x00\xd0\x70\x0b", false), ""},
	} {
		mustCompile(t, r, tc.bin) // the case is a valid module
		rw := mustRewrite(t, tc.bin)
		if rw.Snapshot.Refused != tc.want {
			t.Errorf("%s: refused %q, want %q", name, rw.Snapshot.Refused, tc.want)
		}
		if (tc.want == "") != (len(rw.Snapshot.Globals) > 0) {
			t.Errorf("%s: %d globals to capture", name, len(rw.Snapshot.Globals))
		}
		mustCompile(t, r, rw.Module)
	}
}
