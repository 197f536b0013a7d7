package instrument_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// sectionCount counts bin's sections with id.
func sectionCount(t *testing.T, bin []byte, id byte) int {
	t.Helper()
	n := 0
	for i := 8; i < len(bin); {
		sid := bin[i]
		i++
		var size, shift uint32
		for {
			c := bin[i]
			i++
			size |= uint32(c&0x7F) << shift
			shift += 7
			if c&0x80 == 0 {
				break
			}
		}
		if sid == id {
			n++
		}
		i += int(size)
	}
	return n
}

// A table nothing can reach is taken out of the module (wazero would build
// an instance of it for every instance: C linkers emit one whether or not
// the code calls indirectly); one that an instruction, an element segment
// or an export reaches stays. Each kept case fails if unusedTables ignores
// what it tests (checked by removing each condition).
func TestUnusedTableIsDropped(t *testing.T) {
	const (
		types   = "\x02\x60\x02\x7f\x7f\x00\x60\x00\x00" // (i32, i32) -> (); () -> ()
		imports = "\x01\x04wapc\x0f__guest_request\x00\x00"
		funcs   = "\x01\x01"
		table   = "\x01\x70\x00\x01" // funcref, min 1
		empty   = "\x01\x02\x00\x0b"
	)
	body := func(code string) string { return "\x01" + ls(uint32(len(code)+1)) + "\x00" + code }
	cases := []struct {
		name string
		bin  []byte
		keep bool
	}{
		{"unused", mod(1, types, 2, imports, 3, funcs, 4, table, 10, empty), false},
		{"call_indirect", mod(1, types, 2, imports, 3, funcs, 4, table, 10, body("\x41\x00\x11\x01\x00\x0b")), true},
		{"table.size", mod(1, types, 2, imports, 3, funcs, 4, table, 10, body("\xfc\x10\x00\x1a\x0b")), true},
		{"table.get", mod(1, types, 2, imports, 3, funcs, 4, table, 10, body("\x41\x00\x25\x00\x1a\x0b")), true},
		{"element segment", mod(1, types, 2, imports, 3, funcs, 4, table, 9, "\x01\x00\x41\x00\x0b\x01\x01", 10, empty), true},
		{"exported", mod(1, types, 2, imports, 3, funcs, 4, table, 7, "\x01\x01t\x01\x00", 10, empty), true},
	}
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	for _, c := range cases {
		mustCompile(t, r, c.bin)
		rw, err := instrument.Rewrite(c.bin, instrument.Options{})
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		mustCompile(t, r, rw.Module)
		if got := sectionCount(t, rw.Module, 4) == 1; got != c.keep {
			t.Errorf("%s: table kept %v, want %v", c.name, got, c.keep)
		}
	}
	// The C counter's linker-made table goes; a Go guest's, full of
	// functions, stays.
	if n := sectionCount(t, mustRewrite(t, wasmtest.C(t, "counter")).Module, 4); n != 0 {
		t.Errorf("the C counter keeps its unused table (%d table sections)", n)
	}
	if n := sectionCount(t, mustRewrite(t, wasmtest.Go(t, "echo")).Module, 4); n != 1 {
		t.Errorf("the Go guest's table is gone (%d table sections)", n)
	}
}

// InstanceBytes charges a table's minimum, or its maximum when the code
// can grow it, and every element entry; nothing for a table taken out.
func TestInstanceBytes(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	const imp = "\x01\x04wapc\x0f__guest_request\x00\x00"
	types := "\x02\x60\x02\x7f\x7f\x00\x60\x00\x00"
	elems := "\x01\x00\x41\x00\x0b\x0a" + strings.Repeat("\x01", 10) // 10 references to function 1
	tableUse := "\x00\x41\x00\x25\x00\x1a\x0b"                       // table.get 0; drop
	tableGrow := "\x00\xd0\x70\x41\x01\xfc\x0f\x00\x1a\x0b"          // table.grow 0 by 1; drop
	for name, c := range map[string]struct {
		bin  []byte
		want int64
	}{
		"used":     {mod(1, types, 2, imp, 3, "\x01\x01", 4, "\x01\x70\x01\x64\xc8\x01", 10, "\x01"+ls(uint32(len(tableUse)))+tableUse), 100 * instrument.TableEntryBytes},
		"grown":    {mod(1, types, 2, imp, 3, "\x01\x01", 4, "\x01\x70\x01\x64\xc8\x01", 10, "\x01"+ls(uint32(len(tableGrow)))+tableGrow), 200 * instrument.GrownTableEntryBytes},
		"elements": {mod(1, types, 2, imp, 3, "\x01\x01", 4, "\x01\x70\x00\x64", 9, elems, 10, "\x01\x02\x00\x0b"), 100*instrument.TableEntryBytes + 10*instrument.ElementEntryBytes + instrument.SegmentBytes},
		"unused":   {mod(1, types, 2, imp, 3, "\x01\x01", 4, "\x01\x70\x00\x64", 10, "\x01\x02\x00\x0b"), 0},
		"segments": {mod(1, types, 2, imp, 3, "\x01\x01", 12, "\x03", 10, "\x01\x02\x00\x0b", 11, "\x03\x01\x00\x01\x00\x01\x00"), 3 * instrument.SegmentBytes},
	} {
		mustCompile(t, r, c.bin)
		rw, err := instrument.Rewrite(c.bin, instrument.Options{})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if rw.InstanceBytes != c.want {
			t.Errorf("%s: InstanceBytes %d, want %d", name, rw.InstanceBytes, c.want)
		}
	}
}

// Globals beyond FreeGlobals are charged too (a module may define 2^16:
// ~6 MB an instance).
func TestInstanceBytesCountsGlobals(t *testing.T) {
	const imp = "\x01\x04wapc\x0f__guest_request\x00\x00"
	types := "\x02\x60\x02\x7f\x7f\x00\x60\x00\x00"
	for _, n := range []int{1, instrument.FreeGlobals - 2, 1000} {
		bin := mod(1, types, 2, imp, 3, "\x01\x01", 6, ls(uint32(n))+strings.Repeat("\x7f\x01\x41\x00\x0b", n), 10, "\x01\x02\x00\x0b")
		rw, err := instrument.Rewrite(bin, instrument.Options{})
		if err != nil {
			t.Fatal(err)
		}
		want := int64(max(n+2-instrument.FreeGlobals, 0) * instrument.GlobalBytes)
		if rw.InstanceBytes != want {
			t.Errorf("%d globals: InstanceBytes %d, want %d", n, rw.InstanceBytes, want)
		}
	}
}

// ref.func in code is refused: wazero v1.12 allocates a function reference
// at every execution, kept until the instance closes (~32 B per loop
// iteration, without bound).
func TestRefFuncInCodeRefused(t *testing.T) {
	const imp = "\x01\x04wapc\x0f__guest_request\x00\x00"
	body := "\x00\xd2\x01\x1a\x0b"                                                                          // ref.func 1; drop
	bin := mod(1, "\x02\x60\x02\x7f\x7f\x00\x60\x00\x00", 2, imp, 3, "\x01\x01", 9, "\x01\x03\x00\x01\x01", // declares function 1
		10, "\x01"+ls(uint32(len(body)))+body)
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	mustCompile(t, r, bin)
	_, err := instrument.Fuel(bin, instrument.Options{})
	if !errors.Is(err, instrument.ErrUnsupported) || !strings.Contains(err.Error(), "ref.func") {
		t.Fatalf("ref.func in code: %v, want it refused", err)
	}
}

// Data segments are charged as wazero gets them: merged, or none once in
// the memory image (1000 one-byte segments, 4 bytes apart, here).
func TestInstanceBytesCountsOutputSegments(t *testing.T) {
	data := []byte{0xe8, 0x07} // 1000
	for i := range 1000 {
		off := i * 4
		data = append(data, 0, 0x41, byte(off&0x7f|0x80), byte(off>>7), 0x0b, 1, 0x2a)
	}
	bin := mod(1, "\x02\x60\x02\x7f\x7f\x00\x60\x00\x00", 2, "\x01\x04wapc\x0f__guest_request\x00\x00",
		3, "\x01\x01", 5, "\x01\x00\x01", 10, "\x01\x02\x00\x0b", 11, string(data))
	for name, c := range map[string]struct {
		opts     instrument.Options
		min, max int64
	}{
		"image":     {instrument.Options{MemoryImage: true}, 0, 0},
		"coalesced": {instrument.Options{}, 1 * instrument.SegmentBytes, 10 * instrument.SegmentBytes},
		"kept":      {instrument.Options{NoCoalesce: true}, 1000 * instrument.SegmentBytes, 1000 * instrument.SegmentBytes},
	} {
		rw, err := instrument.Rewrite(bin, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if rw.InstanceBytes < c.min || rw.InstanceBytes > c.max {
			t.Errorf("%s: InstanceBytes %d, want %d..%d", name, rw.InstanceBytes, c.min, c.max)
		}
	}
}
