package instrument_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// withImage is the initial memory of a module whose image was taken out:
// its own (what is left of its data segments wrote) with the image
// painted at offset 0.
func withImage(tb testing.TB, r wazero.Runtime, out []byte, img *instrument.Image) ([]byte, bool) {
	tb.Helper()
	mem, ok := initialMemory(tb, r, out)
	if ok && img != nil {
		if len(img.Data) > len(mem) {
			tb.Fatalf("image of %d bytes, memory of %d", len(img.Data), len(mem))
		}
		copy(mem, img.Data)
	}
	return mem, ok
}

func TestImageSynthetic(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	big := string(bytes.Repeat([]byte{0xAB}, 100))
	for name, tc := range map[string]struct {
		bin   []byte
		image bool
		segs  int // data segments left
	}{
		"overlapping, out of order": {mod(5, onePage, 11, dataSection(active(40, "xy"), active(0, big), active(10, "qqq"), active(1000, "z"))), true, 0},
		"second page":               {mod(5, "\x01\x00\x02", 11, dataSection(active(65536, "hi"), active(0, "lo"))), true, 0},
		"empty segments":            {mod(5, onePage, 11, dataSection(active(0, ""), active(65536, ""))), true, 0},
		"memory index 0 explicit":   {mod(5, onePage, 11, dataSection("\x02\x00\x41\x00\x0b\x01a", active(1, "b"))), true, 0},
		// Passive segments stay (renumbered: nothing can name them
		// without a data count section).
		"passive": {mod(5, onePage, 11, dataSection(active(0, "a"), "\x01\x01p", active(1, "b"))), true, 1},
		// With a data count section every index stays: active segments
		// become empty passive ones.
		"data count": {mod(5, onePage, 12, "\x03", 11, dataSection(active(0, "a"), "\x01\x01p", active(1, "b"))), true, 3},
		// Left alone: a computed offset.
		"global offset": {mod(5, onePage, 6, "\x01\x7f\x00\x41\x08\x0b", 11, dataSection(active(0, "a"), "\x00\x23\x00\x0b\x01g")), false, 2},
	} {
		out, img, err := instrument.ImageOnly(tc.bin)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if (img != nil) != tc.image {
			t.Fatalf("%s: image %v, want %v", name, img != nil, tc.image)
		}
		if n := dataSegments(t, out); n != tc.segs {
			t.Errorf("%s: %d data segments left, want %d", name, n, tc.segs)
		}
		if !tc.image {
			if !bytes.Equal(out, tc.bin) {
				t.Errorf("%s: no image, yet the module changed", name)
			}
			continue
		}
		want, ok1 := initialMemory(t, r, tc.bin)
		got, ok2 := withImage(t, r, out, img)
		if !ok1 || !ok2 {
			t.Fatalf("%s: instantiation failed: original %v, stripped %v", name, ok1, ok2)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: initial memory differs", name)
		}
		if name == "overlapping, out of order" && len(img.Data) != 1001 {
			t.Errorf("%s: image of %d bytes, want 1001 (up to the last segment's end)", name, len(img.Data))
		}
	}
	// A segment outside the initial memory is refused first.
	if _, _, err := instrument.ImageOnly(mod(5, onePage, 11, dataSection(active(65535, "ab")))); err == nil {
		t.Fatal("out-of-bounds segment accepted")
	}
}

// The guests' images: every data segment goes, and the memory is the same.
func TestImageOfGuests(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	bins := map[string][]byte{}
	for _, g := range wasmtest.CGuests {
		bins[g+"-c"] = wasmtest.C(t, g)
	}
	for _, g := range wasmtest.GoGuests {
		bins[g+"-go"] = wasmtest.Go(t, g)
	}
	for name, bin := range bins {
		full, err := instrument.Rewrite(bin, instrument.Options{MemoryImage: true})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if full.Memory == nil || dataSegments(t, full.Module) != 0 {
			t.Fatalf("%s: image %v, %d data segments left", name, full.Memory != nil, dataSegments(t, full.Module))
		}
		kept, err := instrument.Fuel(bin, instrument.Options{NoCoalesce: true})
		if err != nil {
			t.Fatal(err)
		}
		want, ok1 := initialMemory(t, r, kept)
		got, ok2 := withImage(t, r, full.Module, full.Memory)
		if !ok1 || !ok2 {
			t.Fatalf("%s: instantiation failed: %v %v", name, ok1, ok2)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%s: initial memory differs", name)
		}
		t.Logf("%s: image of %d bytes, initial memory %d", name, len(full.Memory.Data), len(want))
	}
}

// Whatever the module, an extraction that succeeds leaves a valid module
// whose memory plus the image is the original's initial memory (or that
// fails to instantiate exactly when the original does).
func FuzzImage(f *testing.F) {
	for _, n := range wasmtest.CGuests {
		f.Add(wasmtest.C(f, n))
	}
	f.Add(mod(5, onePage, 11, dataSection(active(0, "abc"), active(50, "zz"), active(1, "q"))))
	f.Add(mod(5, onePage, 12, "\x03", 11, dataSection(active(0, "a"), "\x01\x01p", active(1, "b"))))
	ctx := context.Background()
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter().WithMemoryLimitPages(256))
	f.Cleanup(func() { r.Close(ctx) })
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
		out, img, err := instrument.ImageOnly(bin)
		if err != nil || compile(bin) != nil {
			return
		}
		if err := compile(out); err != nil {
			t.Fatalf("stripped module invalid: %v", err)
		}
		want, ok1 := initialMemory(t, r, bin)
		got, ok2 := withImage(t, r, out, img)
		if ok1 != ok2 {
			t.Fatalf("instantiation: original %v, stripped %v", ok1, ok2)
		}
		if !bytes.Equal(got, want) {
			t.Fatal("initial memory differs")
		}
	})
}

// An image as long as the whole initial memory for a segment or two at its
// end is not built: its bytes would be allocated at compilation and held
// for the module's life, charged to no instance's budget — 16 MiB (the
// default per-instance cap; up to 4 GiB by configuration) for a module of
// a few dozen bytes. Such a module keeps its segments, which cost their
// own bytes only.
func TestImageMostlyZerosNotBuilt(t *testing.T) {
	const pages = 256
	mem := "\x01\x00\x80\x02" // one memory, min 256 pages (16 MiB)
	bin := mod(5, mem, 11, dataSection(active(0, "a"), active(pages<<16-1, "z")))
	out, img, err := instrument.ImageOnly(bin)
	if err != nil {
		t.Fatal(err)
	}
	if img != nil {
		t.Fatalf("an image of %d bytes for 2 bytes of data", len(img.Data))
	}
	if !bytes.Equal(out, bin) {
		t.Fatal("no image, yet the module changed")
	}
	// Dense data that large still makes one.
	big := string(bytes.Repeat([]byte{1}, 2<<20))
	if _, img, err := instrument.ImageOnly(mod(5, mem, 11, dataSection(active(1<<20, big)))); err != nil || img == nil {
		t.Fatalf("dense 2 MiB segment: image %v, err %v", img != nil, err)
	}
}
