package instrument_test

import (
	"errors"
	"runtime"
	"strings"
	"testing"

	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// Bomb is the 23-byte module of issue 10: a global section declaring
// 0xFFFFFFFF globals in 13 bytes. wazero v1.12 allocates ~171 GB for it.
const Bomb = "\x00asm\x01\x00\x00\x00\x06\x0d\xff\xff\xff\xff\x0f\x00\x00\x00\x00\x00\x00\x00\x00"

// mod assembles a module from (id, body) sections.
func mod(sections ...any) []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	for i := 0; i < len(sections); i += 2 {
		body := []byte(sections[i+1].(string))
		b = append(b, byte(sections[i].(int)))
		b = leb(b, uint32(len(body)))
		b = append(b, body...)
	}
	return b
}

func leb(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func ls(v uint32) string { return string(leb(nil, v)) }

// A minimal valid module pieces: type () -> (), one function.
const (
	voidType = "\x01\x60\x00\x00"
	oneFunc  = "\x01\x00"
	oneBody  = "\x01\x02\x00\x0b"
	max32    = "\xff\xff\xff\xff\x0f"
)

// Every count and size a decoder allocates from is checked against the
// bytes present, without allocating in proportion to it: each of these
// declares a huge vector or size in a few bytes.
func TestCheckRejectsDeclarationBombs(t *testing.T) {
	cases := map[string][]byte{
		"issue 10 globals":   []byte(Bomb),
		"section size":       []byte("\x00asm\x01\x00\x00\x00\x01" + max32),
		"types":              mod(1, max32),
		"type params":        mod(1, "\x01\x60"+max32+"\x00"),
		"type results":       mod(1, "\x01\x60\x00"+max32),
		"imports":            mod(2, max32+"\x00\x00\x00\x00"),
		"import module name": mod(2, "\x01"+max32+"\x00"),
		"functions":          mod(1, voidType, 3, max32),
		"tables":             mod(4, max32+"\x70\x00\x00"),
		"memories":           mod(5, max32+"\x00\x00"),
		"exports":            mod(7, max32+"\x00\x00\x00"),
		"export name":        mod(7, "\x01"+max32),
		"elements":           mod(9, max32+"\x00\x41\x00\x0b\x00"),
		"element entries":    mod(9, "\x01\x00\x41\x00\x0b"+max32),
		"element exprs":      mod(9, "\x01\x05\x70"+max32),
		"code bodies":        mod(1, voidType, 3, oneFunc, 10, max32+"\x02\x00\x0b"),
		"body size":          mod(1, voidType, 3, oneFunc, 10, "\x01"+max32+"\x00\x0b"),
		"local groups":       mod(1, voidType, 3, oneFunc, 10, "\x01\x07"+max32+"\x7f\x0b"),
		"data segments":      mod(11, max32+"\x01\x00"),
		"data bytes":         mod(11, "\x01\x01"+max32),
		"custom name":        mod(0, max32+"x"),
		"function names":     mod(0, "\x04name\x01\x06"+max32+"\x00"),
		"local names":        mod(0, "\x04name\x02\x08\x01\x00"+max32+"\x00"),
	}
	for name, bin := range cases {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := instrument.Check(bin, instrument.Limits{})
		runtime.ReadMemStats(&after)
		if !errors.Is(err, instrument.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
		if d := after.TotalAlloc - before.TotalAlloc; d > 1<<20 {
			t.Errorf("%s: Check allocated %d bytes", name, d)
		}
	}
}

// Well-formed modules beyond nola's limits are refused with ErrLimit,
// locals above all: a 6-byte group declares 2^32-1 of them, which costs
// wazero 8 bytes each.
func TestCheckEnforcesLimits(t *testing.T) {
	body := func(groups string) string {
		b := groups + "\x0b"
		return "\x01" + ls(uint32(len(b))) + b
	}
	manyBodies := func(n int, groups string) []byte {
		b := groups + "\x0b"
		code := ls(uint32(n))
		funcs := ls(uint32(n))
		for range n {
			code += ls(uint32(len(b))) + b
			funcs += "\x00"
		}
		return mod(1, voidType, 3, funcs, 10, code)
	}
	cases := map[string]struct {
		bin []byte
		l   instrument.Limits
	}{
		"locals bomb":    {bin: mod(1, voidType, 3, oneFunc, 10, body("\x01"+max32+"\x7f"))},
		"locals summed":  {bin: mod(1, voidType, 3, oneFunc, 10, body("\x02"+ls(40_000)+"\x7f"+ls(40_000)+"\x7e"))},
		"total locals":   {bin: manyBodies(50, "\x01"+ls(49_000)+"\x7f")},
		"functions":      {bin: manyBodies(3, "\x00"), l: instrument.Limits{MaxFunctions: 2}},
		"imported funcs": {bin: mod(1, voidType, 2, "\x02\x01m\x01a\x00\x00\x01m\x01b\x00\x00", 3, oneFunc, 10, oneBody), l: instrument.Limits{MaxFunctions: 2}},
		"body bytes":     {bin: mod(1, voidType, 3, oneFunc, 10, body("\x00\x01\x01\x01\x01")), l: instrument.Limits{MaxFunctionBytes: 4}},
		"results":        {bin: mod(1, "\x01\x60\x00\x11"+strings.Repeat("\x7f", 17))},
		"types":          {bin: mod(1, "\x02\x60\x00\x00\x60\x00\x00"), l: instrument.Limits{MaxTypes: 1}},
		"globals":        {bin: mod(6, "\x02\x7f\x00\x41\x00\x0b\x7f\x00\x41\x00\x0b"), l: instrument.Limits{MaxGlobals: 1}},
		"element total":  {bin: mod(9, "\x02\x01\x00\x02\x00\x00\x01\x00\x02\x00\x00"), l: instrument.Limits{MaxElementEntries: 3}},
		"data segments":  {bin: mod(11, "\x02\x01\x00\x01\x00"), l: instrument.Limits{MaxDataSegments: 1}},
	}
	for name, c := range cases {
		if err := instrument.Check(c.bin, c.l); !errors.Is(err, instrument.ErrLimit) {
			t.Errorf("%s: %v, want ErrLimit", name, err)
		}
	}
	// At the limit is within it.
	if err := instrument.Check(mod(1, voidType, 3, oneFunc, 10, body("\x01"+ls(50_000)+"\x7f")), instrument.Limits{}); err != nil {
		t.Errorf("50,000 locals (the limit): %v", err)
	}
}

// Structure the decoder relies on: section order, exact section sizes,
// function and code counts.
func TestCheckRejectsMalformedStructure(t *testing.T) {
	cases := map[string][]byte{
		"out of order":     mod(3, oneFunc, 1, voidType, 10, oneBody),
		"duplicate":        mod(1, voidType, 1, voidType),
		"trailing bytes":   mod(1, voidType+"\x00"),
		"short section":    mod(1, "\x02\x60\x00\x00"),
		"no bodies":        mod(1, voidType, 3, oneFunc),
		"bodies mismatch":  mod(1, voidType, 3, "\x02\x00\x00", 10, oneBody),
		"tag section":      mod(13, "\x00"),
		"unknown section":  mod(14, ""),
		"rec group type":   mod(1, "\x01\x4e\x00"),
		"ref local":        mod(1, voidType, 3, oneFunc, 10, "\x01\x05\x01\x01\x63\x70\x0b"),
		"shared memory":    mod(5, "\x01\x03\x01\x02"),
		"extended const":   mod(6, "\x01\x7f\x00\x41\x00\x41\x00\x6a\x0b"),
		"name subsection":  mod(0, "\x04name\x00\x03\x01xy"),
		"empty body":       mod(1, voidType, 3, oneFunc, 10, "\x01\x01\x00"),
		"truncated header": []byte("\x00asm\x01\x00"),
	}
	for name, bin := range cases {
		if err := instrument.Check(bin, instrument.Limits{}); !errors.Is(err, instrument.ErrUnsupported) {
			t.Errorf("%s: %v, want ErrUnsupported", name, err)
		}
	}
	valid := map[string][]byte{
		"empty":        mod(),
		"one function": mod(1, voidType, 3, oneFunc, 10, oneBody),
		"custom":       mod(0, "\x03abcpayload", 1, voidType, 0, "\x00"),
		"names":        mod(1, voidType, 3, oneFunc, 10, oneBody, 0, "\x04name\x00\x02\x01m\x01\x04\x01\x00\x01f\x02\x06\x01\x00\x01\x00\x01l"),
		"elements":     mod(1, voidType, 3, oneFunc, 4, "\x01\x70\x00\x01", 9, "\x03\x00\x41\x00\x0b\x01\x00\x01\x00\x01\x00\x05\x70\x01\xd2\x00\x0b", 10, oneBody),
		"data":         mod(5, "\x01\x00\x01", 12, "\x02", 11, "\x02\x00\x41\x00\x0b\x01x\x01\x02yz"),
		"v128 global":  mod(6, "\x01\x7b\x00\xfd\x0c"+string(make([]byte, 16))+"\x0b"),
	}
	for name, bin := range valid {
		if err := instrument.Check(bin, instrument.Limits{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// The example guests are well within every default limit: they pass with
// each limit divided by 4.
func TestGuestsAreWellWithinLimits(t *testing.T) {
	d := instrument.DefaultLimits()
	l := instrument.Limits{
		MaxTypes: d.MaxTypes / 4, MaxFunctions: d.MaxFunctions / 4, MaxImports: d.MaxImports / 4,
		MaxExports: d.MaxExports / 4, MaxGlobals: d.MaxGlobals / 4, MaxTables: d.MaxTables / 4,
		MaxElementSegments: d.MaxElementSegments / 4,
		MaxElementEntries:  d.MaxElementEntries / 4, MaxDataSegments: d.MaxDataSegments / 4,
		MaxParams: d.MaxParams / 4, MaxResults: d.MaxResults / 4, MaxFunctionBytes: d.MaxFunctionBytes / 4,
		MaxLocals: d.MaxLocals / 4, MaxTotalLocals: d.MaxTotalLocals / 4,
	}
	bins := map[string][]byte{}
	for _, n := range wasmtest.CGuests {
		bins[n+".c"] = wasmtest.C(t, n)
	}
	bins["echo.go"] = wasmtest.Go(t, "echo")
	for name, bin := range bins {
		if err := instrument.Check(bin, l); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

// Check never panics, fails only with its typed errors, and allocates
// nothing in proportion to what the input declares.
func FuzzCheck(f *testing.F) {
	for _, n := range wasmtest.CGuests {
		f.Add(wasmtest.C(f, n))
	}
	f.Add([]byte(Bomb))
	f.Add(mod(1, voidType, 3, oneFunc, 10, oneBody, 0, "\x04name\x00\x02\x01m\x01\x04\x01\x00\x01f\x02\x06\x01\x00\x01\x00\x01l"))
	f.Add(mod(1, voidType, 3, oneFunc, 4, "\x01\x70\x00\x01", 9, "\x03\x00\x41\x00\x0b\x01\x00\x01\x00\x01\x00\x05\x70\x01\xd2\x00\x0b", 10, oneBody))
	f.Add(mod(5, "\x01\x00\x01", 12, "\x02", 11, "\x02\x00\x41\x00\x0b\x01x\x01\x02yz"))
	f.Fuzz(func(t *testing.T, bin []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		err := instrument.Check(bin, instrument.Limits{})
		runtime.ReadMemStats(&after)
		if n := after.TotalAlloc - before.TotalAlloc; n > 64<<10+2*uint64(len(bin)) {
			t.Fatalf("checking %d bytes allocated %d", len(bin), n)
		}
		if err != nil && !errors.Is(err, instrument.ErrUnsupported) && !errors.Is(err, instrument.ErrLimit) {
			t.Fatalf("untyped error: %v", err)
		}
	})
}
