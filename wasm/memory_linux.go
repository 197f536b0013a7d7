//go:build linux

package wasm

import (
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
	heap   *heapMemory // the fallback, once needed
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
			if m.img != nil && !m.img.file.mapOver(b) {
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
