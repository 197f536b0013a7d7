//go:build linux

package wasm

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm/instrument"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// imagePattern is a memory image with no zero run a mapping bug could
// hide in.
func imagePattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>12 + 1)
	}
	return b
}

// mappedFrom reports whether /proc/self/maps shows the image's memfd
// mapped at buf's address.
func mappedFrom(t *testing.T, buf []byte) bool {
	t.Helper()
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	start := fmt.Sprintf("%x-", uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
	for _, l := range strings.Split(string(maps), "\n") {
		if strings.HasPrefix(l, start) && strings.Contains(l, "memfd:nola-wasm-image") {
			return true
		}
	}
	return false
}

// readSink keeps reads of guest memory from being compiled away.
var readSink byte

// pagemapEntry is /proc/self/pagemap's entry for the page at b's start.
func pagemapEntry(t *testing.T, b []byte) uint64 {
	t.Helper()
	f := pagemap()
	if f == nil {
		t.Fatal("/proc/self/pagemap cannot be read")
	}
	var e [8]byte
	off := int64(uintptr(unsafe.Pointer(unsafe.SliceData(b)))/uintptr(unix.Getpagesize())) * 8
	if _, err := f.ReadAt(e[:], off); err != nil {
		t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(e[:])
}

// A large image is mapped copy-on-write: every memory starts with its
// bytes and zeros after them, writes stay private to their memory (a fresh
// one still sees the image), growth keeps them, and the file cannot be
// changed.
func TestImageMappedCopyOnWrite(t *testing.T) {
	data := imagePattern(200<<10 + 123) // not a whole number of pages
	img := newMemImage(data, true)
	if img.file.size == 0 {
		t.Fatal("no memfd for the image: memfd_create refused?")
	}
	alloc := mmapAllocator{img: img}
	a := alloc.Allocate(4*pageSize, 8*pageSize)
	b := alloc.Allocate(4*pageSize, 8*pageSize)
	ba, bb := a.Reallocate(4*pageSize), b.Reallocate(4*pageSize)
	for name, buf := range map[string][]byte{"a": ba, "b": bb} {
		if !bytes.Equal(buf[:len(data)], data) {
			t.Fatalf("%s: memory does not start with the image", name)
		}
		if bytes.ContainsFunc(buf[len(data):], func(r rune) bool { return r != 0 }) {
			t.Fatalf("%s: memory is not zero after the image", name)
		}
		if !mappedFrom(t, buf) {
			t.Fatalf("%s: the image is not mapped from its memfd (copied instead?)", name)
		}
	}
	ba[5], ba[len(data)+1], ba[4*pageSize-1] = ^data[5], 9, 9
	if bb[5] != data[5] || bb[len(data)+1] != 0 {
		t.Fatal("a write to one memory shows in another: the mapping is shared, not private")
	}
	c := alloc.Allocate(4*pageSize, 8*pageSize)
	if bc := c.Reallocate(4 * pageSize); !bytes.Equal(bc[:len(data)], data) || bc[len(data)+1] != 0 {
		t.Fatal("a fresh memory does not see the pristine image after a write to another")
	}
	ga := a.Reallocate(8 * pageSize)
	if &ga[0] != &ba[0] || ga[5] != ^data[5] || ga[4*pageSize-1] != 9 || ga[len(data)+1] != 9 || !bytes.Equal(ga[6:len(data)], data[6:]) || ga[7*pageSize] != 0 {
		t.Fatal("growth moved or lost the memory")
	}
	// (Not through an *os.File: its finalizer would close the fd.)
	if _, err := unix.Pwrite(img.file.fd, []byte{1}, 0); err == nil {
		t.Fatal("the sealed image file accepted a write")
	}
	for _, m := range []interface{ Free() }{a, b, c} {
		m.Free()
	}
	img.close()
	if img.file.size != 0 {
		t.Fatal("close kept the file")
	}
	// Without its file an image is copied.
	d := alloc.Allocate(4*pageSize, 8*pageSize)
	defer d.Free()
	if bd := d.Reallocate(4 * pageSize); !bytes.Equal(bd[:len(data)], data) || mappedFrom(t, bd) {
		t.Fatal("after close: the image is not copied")
	}
}

// Where the image has no file (small images, memfd refused, the Go heap),
// it is copied into every memory.
func TestImageCopied(t *testing.T) {
	noImageFile = true
	t.Cleanup(func() { noImageFile = false })
	for name, c := range map[string]struct {
		data  []byte
		alloc func(*memImage) interface {
			Reallocate(uint64) []byte
			Free()
		}
	}{
		"mapping, no memfd": {imagePattern(200 << 10), func(img *memImage) interface {
			Reallocate(uint64) []byte
			Free()
		} {
			return mmapAllocator{img: img}.Allocate(4*pageSize, 8*pageSize)
		}},
		"heap": {imagePattern(200 << 10), func(img *memImage) interface {
			Reallocate(uint64) []byte
			Free()
		} {
			return &heapMemory{max: 8 * pageSize, img: img}
		}},
	} {
		img := newMemImage(c.data, name != "heap")
		if img.file.size != 0 {
			t.Fatalf("%s: image has a file", name)
		}
		m := c.alloc(img)
		buf := m.Reallocate(4 * pageSize)
		if !bytes.Equal(buf[:len(c.data)], c.data) || buf[len(c.data)] != 0 || mappedFrom(t, buf) {
			t.Fatalf("%s: memory does not start with a copy of the image", name)
		}
		buf[0] = ^buf[0]
		if g := m.Reallocate(8 * pageSize); g[0] != buf[0] || !bytes.Equal(g[1:len(c.data)], c.data[1:]) {
			t.Fatalf("%s: growth lost the memory", name)
		}
		if c.data[0] == buf[0] {
			t.Fatalf("%s: a write to the memory changed the image", name)
		}
		m.Free()
	}
	// Small images get no file even when allowed one.
	noImageFile = false
	if img := newMemImage(imagePattern(cowMinBytes-1), true); img.file.size != 0 {
		t.Fatal("a small image got a memfd")
	}
}

// freshMemory instantiates module id of a new Host configured by cfg (no
// guest code runs: the host calls _initialize itself, later) and returns a
// copy of its linear memory, whether the module has a memory image, and
// whether the memory was mapped from the image's file.
func freshMemory(t *testing.T, mods *modules.Store, cfg Config, id string) (mem []byte, image, mapped bool) {
	t.Helper()
	ctx := context.Background()
	cfg.Runtime, cfg.Modules, cfg.CompilationCache = rt.NewReal(), mods, testCache()
	h, err := New(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	c, err := h.load(ctx, "t", id)
	if err != nil {
		t.Fatal(err)
	}
	if !h.mem.reserve(c.minBytes) {
		t.Fatal("budget")
	}
	m, err := h.newModule(&instance{h: h, mod: c}, c, nil)
	if err != nil {
		t.Fatalf("%s: instantiate: %v", id, err)
	}
	// Shared or not, the instance is charged its whole initial memory.
	if used := h.mem.used.Load(); used != c.minBytes || int64(m.Memory().Size()) != c.minBytes {
		t.Fatalf("%s: charged %d bytes for a memory of %d, want %d", id, used, m.Memory().Size(), c.minBytes)
	}
	b, ok := m.Memory().Read(0, m.Memory().Size())
	if !ok {
		t.Fatal("read memory")
	}
	mem, image, mapped = bytes.Clone(b), c.image != nil, mappedFrom(t, b)
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if used := h.mem.used.Load(); used != 0 {
		t.Fatalf("%s: %d bytes still charged after close", id, used)
	}
	return mem, image, mapped
}

// A fresh instance's memory is byte for byte the same whether wazero
// applies the data segments (as compiled, or merged) or the host places
// the module's memory image (mapped copy-on-write, copied into a mapping,
// copied onto the Go heap), for the committed C guests and the Go guests.
func TestMemoryImageGivesIdenticalInitialMemory(t *testing.T) {
	r := rt.NewReal()
	mods := modules.New(memkv.New(r, memkv.Options{}), modules.Config{})
	guests := map[string][]byte{}
	for _, g := range wasmtest.CGuests {
		guests[g+"-c"] = wasmtest.C(t, g)
	}
	for _, g := range []string{"counter", "echo"} {
		guests[g+"-go"] = wasmtest.Go(t, g)
	}
	for id, bin := range guests {
		if _, err := mods.Put(context.Background(), "t", id, bin, modules.Options{}); err != nil {
			t.Fatal(err)
		}
	}
	modes := []struct {
		name       string
		cfg        Config
		noFile     bool
		image      bool
		mappedIfGo bool
	}{
		{"segments merged", Config{NoMemoryImage: true}, false, false, false},
		{"image copy-on-write", Config{}, false, true, true},
		{"image copied (no memfd)", Config{}, true, true, false},
		{"image on the heap", Config{HeapMemory: true}, false, true, false},
	}
	for id := range guests {
		want, image, _ := freshMemory(t, mods, Config{KeepDataSegments: true}, id)
		if image {
			t.Fatalf("%s: KeepDataSegments built an image", id)
		}
		if !bytes.ContainsFunc(want, func(r rune) bool { return r != 0 }) && strings.HasSuffix(id, "-go") {
			t.Fatalf("%s: the data segments wrote nothing", id)
		}
		for _, m := range modes {
			noImageFile = m.noFile
			got, image, mapped := freshMemory(t, mods, m.cfg, id)
			noImageFile = false
			if image != m.image {
				t.Fatalf("%s, %s: module has an image: %v, want %v", id, m.name, image, m.image)
			}
			if isGo := strings.HasSuffix(id, "-go"); mapped != (m.mappedIfGo && isGo) {
				t.Fatalf("%s, %s: memory mapped from the image's file: %v", id, m.name, mapped)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("%s, %s: initial memory differs from the data segments' (%d vs %d bytes)", id, m.name, len(got), len(want))
			}
		}
	}
}

// Copying skips the image's zero pages: a fresh memory is zero there
// already, and writing them would make them resident.
func TestImageCopySkipsZeroPages(t *testing.T) {
	data := make([]byte, 5*imagePage+10)
	data[2*imagePage+7] = 1 // page 2
	data[3*imagePage] = 2   // page 3
	data[5*imagePage+9] = 3 // the partial last page
	img := newMemImage(data, false)
	want := []imageRun{{2 * imagePage, 4 * imagePage}, {5 * imagePage, 5*imagePage + 10}}
	if fmt.Sprint(img.runs) != fmt.Sprint(want) {
		t.Fatalf("runs %v, want %v", img.runs, want)
	}
	buf := bytes.Repeat([]byte{0xEE}, len(data)+1)
	img.copyInto(buf)
	if !bytes.Equal(buf[2*imagePage:4*imagePage], data[2*imagePage:4*imagePage]) || !bytes.Equal(buf[5*imagePage:len(data)], data[5*imagePage:]) {
		t.Fatal("non-zero pages not copied")
	}
	if buf[0] != 0xEE || buf[imagePage] != 0xEE || buf[4*imagePage] != 0xEE || buf[len(data)] != 0xEE {
		t.Fatal("zero pages (or bytes past the image) written")
	}
}

// A Go guest started from the copy-on-write image initializes, grows its
// memory (the Go runtime does, at initialization) and runs; each instance
// keeps its own state; the Host charges each its whole memory.
func TestGoGuestRunsFromMappedImage(t *testing.T) {
	h, c := counterHost(t, "counter-go", Config{})
	if c.image == nil || c.image.file.size == 0 {
		t.Fatal("the Go guest has no mapped image")
	}
	var ins []*instance
	for _, id := range []string{"a", "b"} {
		in, err := h.instantiate(initCx{}, c, nola.Ref{Namespace: "t", ID: id})
		if err != nil {
			t.Fatal(err)
		}
		defer in.close()
		buf, _ := in.mem.Read(0, in.mem.Size())
		if int64(len(buf)) <= c.minBytes || !mappedFrom(t, buf) {
			t.Fatalf("%s: memory of %d bytes (initial %d), mapped from the image: %v", id, len(buf), c.minBytes, mappedFrom(t, buf))
		}
		ins = append(ins, in)
	}
	inc := func(in *instance) string {
		t.Helper()
		if !in.acquire() {
			t.Fatal("instance closed")
		}
		defer in.release()
		out, err := in.invoke(initCx{}, "inc", nil)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	first := inc(ins[0])
	inc(ins[0])
	third := inc(ins[0])
	if got := inc(ins[1]); got != first || got == third {
		t.Fatalf("second instance's first inc answered %q; the first's answered %q then %q", got, first, third)
	}
	rw, err := instrument.Rewrite(wasmtest.Go(t, "counter"), instrument.Options{MemoryImage: true, ExportGlobals: true})
	if err != nil {
		t.Fatal(err)
	}
	var want int64
	for _, in := range ins {
		want += InstanceOverhead + rw.InstanceBytes + int64(in.mem.Size())
	}
	if got := h.MemoryBytes(); got != want {
		t.Fatalf("charged %d bytes, want %d (memories and overhead)", got, want)
	}
}

// The image's file holds pages only where the image is not zero: an image
// is as long as its last segment's end, and a module can put one byte at
// the end of its whole initial memory (16 MiB by default). Written as
// zeros, that memory would be resident in the file for every such
// module, charged to no budget; left as holes, it reads as zeros all the
// same.
func TestImageFileSkipsZeroPages(t *testing.T) {
	const size = 4 << 20
	data := make([]byte, size)
	data[0], data[size-1] = 1, 2
	img := newMemImage(data, true)
	defer img.close()
	if img.file.size == 0 {
		t.Skip("no memfd here")
	}
	var st unix.Stat_t
	if err := unix.Fstat(img.file.fd, &st); err != nil {
		t.Fatal(err)
	}
	if held := st.Blocks * 512; held > 4*imagePage {
		t.Fatalf("the image file holds %d bytes for an image of 2 non-zero bytes", held)
	}
	buf, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(buf)
	if !img.file.mapOver(buf) {
		t.Fatal("not mapped")
	}
	if !bytes.Equal(buf, data) {
		t.Fatal("the mapped image differs from the image")
	}
}

// A memory reset to an image (recycling) reads exactly the image again,
// on each path: copying back only the pages written since the image's
// file was mapped (privatePages, which must report exactly those — a page
// only read is still the file's), mapping the file again (too many
// written pages, the reuse turned off, the memory mapped from another
// image's file before), and fresh pages with the image copied in (an
// image without a file, over a memory mapped from one).
func TestMemoryResetToImage(t *testing.T) {
	const size = 8 * pageSize
	data := imagePattern(size)
	img := newMemImage(data, true)
	other := newMemImage(imagePattern(2 * pageSize)[1:], true)
	copied := newMemImage(data, false) // no file
	defer img.close()
	defer other.close()
	if img.file.size != size || other.file.size == 0 {
		t.Fatal("no memfd for the images: memfd_create refused?")
	}
	page := unix.Getpagesize()
	for _, tc := range []struct {
		name   string
		from   *memImage
		writes []int // page indexes written before the reset
		noUse  bool
		to     *memImage // default img
	}{
		{"written pages copied back", img, []int{0, 1, 5}, false, nil},
		{"too many written pages: file mapped again", img, func() []int {
			var w []int
			for i := range privateReuse + 1 {
				w = append(w, i)
			}
			return w
		}(), false, nil},
		{"reuse off: file mapped again", img, []int{3}, true, nil},
		{"another image's file: file mapped again", other, []int{0, 4}, false, nil},
		{"no file: fresh pages, image copied", img, []int{0, 4}, false, copied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noPrivateReuse = tc.noUse
			defer func() { noPrivateReuse = false }()
			m := mmapAllocator{img: tc.from}.Allocate(size, size).(*mmapMemory)
			defer m.Free()
			buf := m.Reallocate(size)
			if tc.from == img {
				// Read a page without writing it: it stays the file's.
				// The value is kept (`_ = buf[i]` compiles to no
				// load), and the kernel must show the page present,
				// else the read proves nothing.
				readSink += buf[7*page]
				if e := pagemapEntry(t, buf[7*page:]); e&pmPresent == 0 || e&pmFileShared == 0 {
					t.Fatalf("the page read is not present as the file's (pagemap entry %#x)", e)
				}
			}
			for _, i := range tc.writes {
				buf[i*page+3] ^= 0xff
			}
			if tc.from == img && len(tc.writes) <= privateReuse {
				runs, ok := privatePages(buf, privateReuse)
				var got []int
				for _, r := range runs {
					for off := r.off; off < r.end; off += page {
						got = append(got, off/page)
					}
				}
				if !ok || fmt.Sprint(got) != fmt.Sprint(tc.writes) {
					t.Fatalf("private pages %v (ok %v), want the written ones %v", got, ok, tc.writes)
				}
			}
			to := cmp.Or(tc.to, img)
			if err := m.reset(to, size); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf, data) {
				t.Fatal("after the reset the memory is not the image")
			}
			if mapped := to.file.size > 0; (m.from == to) != mapped || mappedFrom(t, buf) != mapped {
				t.Fatalf("after the reset: marked as the image's mapping %v, mapped from a memfd %v; want %v", m.from == to, mappedFrom(t, buf), mapped)
			}
		})
	}
}
