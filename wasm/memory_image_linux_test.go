//go:build linux

package wasm

import (
	"bytes"
	"fmt"
	"os"
	"strings"
	"testing"
	"unsafe"
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
	if _, err := os.NewFile(uintptr(img.file.fd), "image").WriteAt([]byte{1}, 0); err == nil {
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
