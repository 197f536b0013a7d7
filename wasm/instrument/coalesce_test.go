package instrument_test

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// initialMemory instantiates bin with every imported function stubbed
// (trapping if called) and no start function, and returns a copy of its
// memory 0 right after instantiation: what the data segments wrote. ok is
// false when instantiation fails.
func initialMemory(tb testing.TB, r wazero.Runtime, bin []byte) (mem []byte, ok bool) {
	tb.Helper()
	ctx := context.Background()
	cm, err := r.CompileModule(ctx, bin)
	if err != nil {
		tb.Fatalf("compile: %v", err)
	}
	defer cm.Close(ctx)
	byModule := map[string][]api.FunctionDefinition{}
	for _, f := range cm.ImportedFunctions() {
		m, _, _ := f.Import()
		byModule[m] = append(byModule[m], f)
	}
	var hosts []api.Closer
	defer func() {
		for _, h := range hosts {
			h.Close(ctx)
		}
	}()
	for name, fns := range byModule {
		b := r.NewHostModuleBuilder(name)
		for _, f := range fns {
			_, fn, _ := f.Import()
			b = b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(context.Context, api.Module, []uint64) {
				panic("stub import called")
			}), f.ParamTypes(), f.ResultTypes()).Export(fn)
		}
		h, err := b.Instantiate(ctx)
		if err != nil {
			tb.Fatalf("stub %s: %v", name, err)
		}
		hosts = append(hosts, h)
	}
	m, err := r.InstantiateModule(ctx, cm, wazero.NewModuleConfig().WithName("").WithStartFunctions())
	if err != nil {
		return nil, false
	}
	defer m.Close(ctx)
	// wazero returns a typed nil for a module without memory.
	if mem := m.Memory(); mem == nil || reflect.ValueOf(mem).IsNil() {
		return nil, true
	}
	b, _ := m.Memory().Read(0, m.Memory().Size())
	return bytes.Clone(b), true
}

// dataSegments counts the segments of bin's data section.
func dataSegments(tb testing.TB, bin []byte) int {
	tb.Helper()
	pos := 8
	u32 := func() uint32 {
		var v uint32
		for s := 0; ; s += 7 {
			c := bin[pos]
			pos++
			v |= uint32(c&0x7F) << s
			if c < 0x80 {
				return v
			}
		}
	}
	for pos < len(bin) {
		id := bin[pos]
		pos++
		size := int(u32())
		if id == 11 {
			return int(u32())
		}
		pos += size
	}
	return 0
}

func sleb(v int32) string {
	var b []byte
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return string(append(b, c))
		}
		b = append(b, c|0x80)
	}
}

// active is an active segment for memory 0 at a constant offset.
func active(off int32, data string) string {
	return "\x00\x41" + sleb(off) + "\x0b" + ls(uint32(len(data))) + data
}

func dataSection(segs ...string) string {
	s := ls(uint32(len(segs)))
	for _, g := range segs {
		s += g
	}
	return s
}

const onePage = "\x01\x00\x01" // one memory, min 1 page, no max

// The Go guests' memory after instantiation is the same byte for byte
// with merged segments, and merging removes almost all segments.
func TestCoalescedGoGuestsHaveTheSameInitialMemory(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	for _, g := range wasmtest.GoGuests {
		bin := wasmtest.Go(t, g)
		out, err := instrument.CoalesceOnly(bin)
		if err != nil {
			t.Fatalf("%s: %v", g, err)
		}
		before, after := dataSegments(t, bin), dataSegments(t, out)
		t.Logf("%s: %d data segments -> %d, %d -> %d bytes", g, before, after, len(bin), len(out))
		if after*10 > before {
			t.Fatalf("%s: %d data segments -> %d: expected at least 10x fewer", g, before, after)
		}
		want, ok1 := initialMemory(t, r, bin)
		got, ok2 := initialMemory(t, r, out)
		if !ok1 || !ok2 {
			t.Fatalf("%s: instantiation failed: original %v, coalesced %v", g, ok1, ok2)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: initial memory differs (%d vs %d bytes)", g, len(got), len(want))
		}
	}
	// The full rewrite (fuel and all) keeps it too.
	bin := wasmtest.Go(t, "counter")
	full, err := instrument.Fuel(bin, instrument.Options{})
	if err != nil {
		t.Fatal(err)
	}
	kept, err := instrument.Fuel(bin, instrument.Options{NoCoalesce: true})
	if err != nil {
		t.Fatal(err)
	}
	if dataSegments(t, full) >= dataSegments(t, kept) {
		t.Fatalf("Fuel did not coalesce: %d vs %d segments", dataSegments(t, full), dataSegments(t, kept))
	}
	a, _ := initialMemory(t, r, full)
	b, _ := initialMemory(t, r, kept)
	if !bytes.Equal(a, b) {
		t.Fatal("Fuel with and without coalescing: initial memory differs")
	}
}

// syntheticCase is a small hand-built module and how many data segments
// coalescing leaves of it.
type syntheticCase struct {
	bin  []byte
	segs int // segments after coalescing
}

// syntheticCases are the modules of TestCoalesceSynthetic, also
// FuzzCoalesce's seeds.
func syntheticCases() map[string]syntheticCase {
	big := string(bytes.Repeat([]byte{0xAB}, 100))
	return map[string]syntheticCase{
		"adjacent":                    {mod(5, onePage, 11, dataSection(active(0, "ab"), active(2, "cd"), active(4, "ef"))), 1},
		"small gap":                   {mod(5, onePage, 11, dataSection(active(10, "ab"), active(12+instrument.CoalesceGap, "cd"))), 1},
		"gap too large":               {mod(5, onePage, 11, dataSection(active(10, "ab"), active(13+instrument.CoalesceGap, "cd"))), 2},
		"out of order":                {mod(5, onePage, 11, dataSection(active(40, "xy"), active(0, "ab"), active(20, "cd"))), 1},
		"overlap later wins":          {mod(5, onePage, 11, dataSection(active(0, big), active(50, "zz"), active(10, "qqq"))), 1},
		"overlap earlier under later": {mod(5, onePage, 11, dataSection(active(10, "qqq"), active(0, big))), 1},
		"contained then wider":        {mod(5, onePage, 11, dataSection(active(5, "12345"), active(4, "abcdefgh"), active(6, "Z"))), 1},
		"empty segments":              {mod(5, onePage, 11, dataSection(active(0, ""), active(3, "x"), active(65536, ""))), 1},
		"second page":                 {mod(5, "\x01\x00\x02", 11, dataSection(active(65536, "hi"), active(65538, "yo"), active(0, "lo"))), 2},
		"far apart":                   {mod(5, onePage, 11, dataSection(active(0, "a"), active(1000, "b"), active(60000, "c"))), 3},
		"memory index 0 explicit":     {mod(5, onePage, 11, dataSection("\x02\x00\x41\x00\x0b\x01a", active(1, "b"))), 1},
		// Left alone: a passive segment, a data count section, a
		// computed offset.
		"passive":       {mod(5, onePage, 11, dataSection(active(0, "a"), "\x01\x01p", active(1, "b"))), 3},
		"data count":    {mod(5, onePage, 12, "\x02", 11, dataSection(active(0, "a"), active(1, "b"))), 2},
		"global offset": {mod(5, onePage, 6, "\x01\x7f\x00\x41\x08\x0b", 11, dataSection(active(0, "a"), "\x00\x23\x00\x0b\x01g", active(1, "b"))), 3},
	}
}

// goLike is a module shaped like a Go guest's data, in a few hundred
// bytes instead of megabytes: n short segments at ascending offsets over
// two pages, with gaps below and above CoalesceGap and a few overlaps,
// beside an imported function and one function body (so that
// instantiation stubs an import, as for a real guest).
func goLike(n int) []byte {
	segs := make([]string, 0, n)
	off := int32(16)
	for i := range n {
		data := string(bytes.Repeat([]byte{byte('a' + i%26)}, 1+i%7))
		segs = append(segs, active(off, data))
		switch i % 5 {
		case 0:
			off += int32(len(data)) // adjacent
		case 1:
			off += int32(len(data) + instrument.CoalesceGap) // small gap
		case 2:
			off += int32(len(data) + instrument.CoalesceGap + 1 + i) // too large
		case 3:
			off += int32(len(data)) - 2 // overlaps the next
		default:
			off += 300
		}
	}
	imp := "\x01" + ls(3) + "env" + ls(1) + "f" + "\x00\x00" // env.f: func type 0
	return mod(1, voidType, 2, imp, 3, oneFunc, 5, "\x01\x00\x02", 10, oneBody, 11, dataSection(segs...))
}

func TestCoalesceSynthetic(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	cases := syntheticCases()
	// Each run of five segments ends in two gaps too large to bridge:
	// two segments of every five remain.
	cases["go-like"] = syntheticCase{goLike(200), 80}
	for name, tc := range cases {
		out, err := instrument.CoalesceOnly(tc.bin)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n := dataSegments(t, out); n != tc.segs {
			t.Errorf("%s: %d segments, want %d", name, n, tc.segs)
		}
		if n := dataSegments(t, tc.bin); n == tc.segs && !bytes.Equal(out, tc.bin) {
			t.Errorf("%s: nothing to merge, yet the module changed", name)
		}
		if name == "global offset" {
			// Check refuses imported globals and wazero refuses a defined
			// one in an offset, so this cannot instantiate either way; the
			// byte comparison above is the test.
			continue
		}
		want, ok1 := initialMemory(t, r, tc.bin)
		got, ok2 := initialMemory(t, r, out)
		if !ok1 || !ok2 {
			t.Fatalf("%s: instantiation failed: original %v, coalesced %v", name, ok1, ok2)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: initial memory differs", name)
		}
	}
	// A segment outside the initial memory is refused before merging.
	if _, err := instrument.CoalesceOnly(mod(5, onePage, 11, dataSection(active(65535, "ab"), active(0, "x")))); err == nil {
		t.Fatal("out-of-bounds segment accepted")
	}
}

// Whatever the module, a rewrite that succeeds validates and yields the
// same initial memory (or fails to instantiate exactly when the original
// does).
func FuzzCoalesce(f *testing.F) {
	// Small seeds only: every seed runs through the interpreter's compile
	// and instantiation twice before fuzzing starts, and a real guest (a
	// Go guest is megabytes: ~6 s on a loaded machine) held the worker
	// there for the whole run. The real guests are checked by
	// TestCoalescedGoGuestsHaveTheSameInitialMemory; goLike has their
	// shape in a few kilobytes.
	for _, tc := range syntheticCases() {
		f.Add(tc.bin)
	}
	for _, n := range []int{10, 60, 200} {
		f.Add(goLike(n))
	}
	f.Add(mod(5, onePage, 11, dataSection(active(0, "abc"), active(50, "zz"), active(1, "q"))))
	ctx := context.Background()
	// 256 pages (16 MiB) bounds what one input can make wazero allocate;
	// a module needing more fails to compile, before and after alike.
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(256))
	f.Cleanup(func() { r.Close(ctx) })
	// wazero's validator panics on some malformed binaries (see
	// modules.Compile); such an input is not a valid module.
	compile := func(bin []byte) (err error) {
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("wazero panicked: %v", p)
			}
		}()
		cm, err := r.CompileModule(ctx, bin)
		if err == nil {
			cm.Close(ctx)
		}
		return err
	}
	f.Fuzz(func(t *testing.T, bin []byte) {
		out, err := instrument.CoalesceOnly(bin)
		if err != nil {
			return
		}
		if err := compile(bin); err != nil {
			return // not a valid module to begin with
		}
		if err := compile(out); err != nil {
			t.Fatalf("rewritten module invalid: %v", err)
		}
		want, ok1 := initialMemory(t, r, bin)
		got, ok2 := initialMemory(t, r, out)
		if ok1 != ok2 {
			t.Fatalf("instantiation: original %v, coalesced %v", ok1, ok2)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("initial memory differs")
		}
	})
}
