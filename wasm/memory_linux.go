//go:build linux

package wasm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"github.com/tetratelabs/wazero/experimental"
	"golang.org/x/sys/unix"
)

// mmapAllocator backs each instance's linear memory with its own anonymous
// mapping instead of the Go heap: the mapping reserves the memory's maximum
// up front (virtual address space only, MAP_NORESERVE), pages become
// resident only when the guest touches them, growing never moves the
// memory, and closing the instance returns everything to the OS at once.
// An idle C actor whose one-page memory is mostly untouched then costs a
// few resident pages, not a 64 KiB heap object that the Go GC counts (and,
// once recycled, zeroes). If the kernel refuses a mapping, the memory
// falls back to the Go heap.
//
// A module's memory image (memImage) is placed when the mapping is made:
// its file mapped over the start of the reservation, copy-on-write, or
// copied there.
type mmapAllocator struct{ img *memImage }

var _ experimental.MemoryAllocator = mmapAllocator{}

func (a mmapAllocator) Allocate(_, max uint64) experimental.LinearMemory {
	return &mmapMemory{max: max, img: a.img}
}

// mmapMemory is one instance's mapping. It is one of the few objects every
// live instance keeps (issue 16, item 7), hence the fallback behind a
// pointer, made only when the kernel refuses the mapping.
type mmapMemory struct {
	max    uint64
	img    *memImage
	buf    []byte
	mapped bool
	// from is the image whose file is mapped over the start of buf, or
	// nil: what the pages a reset finds unwritten hold.
	from *memImage
	heap *heapMemory // the fallback, once needed
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if m.buf == nil && m.heap == nil && m.max > 0 {
		// unix.MmapPtr, not syscall.Mmap: that one records every mapping
		// in a map of its own (≈ 64 B per live instance) for its Munmap.
		p, err := unix.MmapPtr(-1, 0, nil, uintptr(m.max), unix.PROT_READ|unix.PROT_WRITE,
			unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_NORESERVE)
		if err == nil {
			b := unsafe.Slice((*byte)(p), m.max)
			m.buf, m.mapped = b, true
			if m.img != nil && m.img.file.mapOver(b) {
				m.from = m.img
			} else {
				m.img.copyInto(b)
			}
		}
	}
	if m.mapped {
		return m.buf[:size]
	}
	if m.heap == nil {
		m.heap = &heapMemory{max: m.max, img: m.img}
	}
	return m.heap.Reallocate(size)
}

func (m *mmapMemory) Free() {
	if m.mapped {
		// One munmap covers the image's mapping too.
		if err := unix.MunmapPtr(unsafe.Pointer(unsafe.SliceData(m.buf)), uintptr(len(m.buf))); err != nil {
			// munmap can fail if splitting the mapping would exceed
			// vm.max_map_count: give the pages back at least (the
			// address range stays reserved).
			_ = syscall.Madvise(m.buf, syscall.MADV_DONTNEED)
		}
	}
	m.buf, m.mapped = nil, false
	if m.heap != nil {
		m.heap.Free()
	}
}

// reset sets the memory's first size bytes, its whole current length,
// back to img: the image's file mapped copy-on-write over them again
// (MAP_FIXED: the same addresses, so wazero's view of the buffer stays
// valid, and every page the guest made private is dropped), or, without
// a file, fresh zero pages mapped over them and the image copied in. The
// pages past size were never part of the guest's memory: untouched.
func (m *mmapMemory) reset(img *memImage, size int64) error {
	if !m.mapped {
		if m.heap == nil {
			return errors.New("the memory was never allocated")
		}
		return m.heap.reset(img, size)
	}
	if size > int64(len(m.buf)) || (img != nil && int64(len(img.data)) > size) {
		return errors.New("the memory is smaller than the image")
	}
	if img != nil && img.file.size == size {
		// The whole memory is the file's mapping. If it was img's
		// already, only the pages the guest wrote (now private to
		// the instance) differ from img: copying img's bytes back
		// into those — a few dozen pages for a Go counter's calls —
		// leaves them private, so the next actor's writes to the
		// same pages take no page fault. Past privateReuse pages,
		// the whole file is mapped again, dropping them.
		if m.from == img && !noPrivateReuse {
			if runs, ok := privatePages(m.buf[:size], privateReuse); ok {
				for _, r := range runs {
					copy(m.buf[r.off:r.end], img.data[r.off:r.end])
				}
				return nil
			}
		}
		if img.file.mapOver(m.buf) {
			m.from = img
			return nil
		}
	}
	if size == 0 {
		return nil
	}
	// Anonymous pages, not MADV_DONTNEED: under a file mapping (the
	// memory of an instance that started from the module's image, not
	// the snapshot's) that would bring back the file's bytes, not zeros.
	_, err := unix.MmapPtr(-1, 0, unsafe.Pointer(unsafe.SliceData(m.buf)), uintptr(size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON|unix.MAP_FIXED|unix.MAP_NORESERVE)
	if err != nil {
		return fmt.Errorf("mapping fresh pages: %w", err)
	}
	m.from = nil
	img.copyInto(m.buf[:size])
	return nil
}

// privateReuse bounds the written pages a reset copies back instead of
// mapping the image's file again (mmapMemory.reset): 64 pages, 256 KiB
// of private memory a pooled instance may keep resident.
const privateReuse = 64

// noPrivateReuse makes every reset map the whole file again: the
// benchmarks compare both, the tests check both.
var noPrivateReuse bool

// pagemap is /proc/self/pagemap, opened once (nil if it cannot be).
var pagemap = sync.OnceValue(func() *os.File {
	f, err := os.Open("/proc/self/pagemap")
	if err != nil {
		return nil
	}
	return f
})

// pagemapBufs are privatePages' read buffers (6 KB for a Go counter's
// 3 MB memory): one reset after another would otherwise allocate each.
var pagemapBufs = sync.Pool{New: func() any { return new([]byte) }}

// Bits of a /proc/self/pagemap entry (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent    = 1 << 63
	pmSwapped    = 1 << 62
	pmFileShared = 1 << 61 // a file page or shared anonymous: not a private copy
)

// privatePages returns the pages of buf (page-aligned, in a private file
// mapping) that are no longer the file's — present as anonymous pages
// (written, copied on write) or swapped out — merged into runs; ok is
// false if the kernel cannot tell or there are more than limit of them.
// A page neither present nor swapped was never written: it still reads
// the file.
func privatePages(buf []byte, limit int) (runs []imageRun, ok bool) {
	f := pagemap()
	page := syscall.Getpagesize()
	if f == nil || len(buf)%page != 0 {
		return nil, false
	}
	n := len(buf) / page
	bp := pagemapBufs.Get().(*[]byte)
	defer pagemapBufs.Put(bp)
	if cap(*bp) < 8*n {
		*bp = make([]byte, 8*n)
	}
	ents := (*bp)[:8*n]
	start := int64(uintptr(unsafe.Pointer(unsafe.SliceData(buf)))/uintptr(page)) * 8
	if got, err := f.ReadAt(ents, start); err != nil || got != len(ents) {
		return nil, false
	}
	count := 0
	for i := range n {
		e := binary.LittleEndian.Uint64(ents[8*i:])
		if e&pmSwapped == 0 && (e&pmPresent == 0 || e&pmFileShared != 0) {
			continue
		}
		if count++; count > limit {
			return nil, false
		}
		off := i * page
		if k := len(runs) - 1; k >= 0 && runs[k].end == off {
			runs[k].end = off + page
		} else {
			runs = append(runs, imageRun{off, off + page})
		}
	}
	return runs, true
}

func memoryAllocator(img *memImage) experimental.MemoryAllocator { return mmapAllocator{img: img} }

// imageFile is a memory image in a memfd sealed against any change, so
// that every mapping of it sees the same bytes for the file's life.
type imageFile struct {
	fd   int   // valid when size > 0
	size int64 // data's length rounded up to whole pages (the tail is zero)
}

// newImageFile returns data's file, or the zero imageFile (none) if the
// kernel refuses one: instances then copy the image. Only runs (data's
// pages that are not all zero) are written: the rest of the file stays
// holes, which read as zeros and hold no memory — an image is as long as
// its last segment's end, which a module may put at the end of its whole
// initial memory.
func newImageFile(data []byte, runs []imageRun) imageFile {
	fd, err := unix.MemfdCreate("nola-wasm-image", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return imageFile{}
	}
	page := int64(syscall.Getpagesize())
	size := (int64(len(data)) + page - 1) / page * page
	ok := unix.Ftruncate(fd, size) == nil
	for _, r := range runs {
		for off := r.off; ok && off < r.end; {
			n, err := unix.Pwrite(fd, data[off:r.end], int64(off))
			if err != nil || n <= 0 {
				ok = false
				break
			}
			off += n
		}
	}
	if ok {
		_, err = unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
		ok = err == nil
	}
	if !ok {
		_ = unix.Close(fd)
		return imageFile{}
	}
	return imageFile{fd: fd, size: size}
}

// mapOver maps the file copy-on-write over the start of buf, a fresh
// private mapping at least f.size long. It reports false if there is no
// file or the kernel refuses (buf is then untouched).
func (f imageFile) mapOver(buf []byte) bool {
	if f.size == 0 || int64(len(buf)) < f.size {
		return false
	}
	_, err := unix.MmapPtr(f.fd, 0, unsafe.Pointer(unsafe.SliceData(buf)), uintptr(f.size),
		unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED)
	return err == nil
}

func (f imageFile) close() {
	if f.size > 0 {
		_ = unix.Close(f.fd)
	}
}
