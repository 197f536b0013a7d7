//go:build linux

package wasm

import (
	"syscall"

	"github.com/tetratelabs/wazero/experimental"
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
type mmapAllocator struct{}

var _ experimental.MemoryAllocator = mmapAllocator{}

func (mmapAllocator) Allocate(_, max uint64) experimental.LinearMemory {
	return &mmapMemory{max: max}
}

type mmapMemory struct {
	max    uint64
	buf    []byte
	mapped bool
}

func (m *mmapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if m.buf == nil && m.max > 0 {
		b, err := syscall.Mmap(-1, 0, int(m.max), syscall.PROT_READ|syscall.PROT_WRITE,
			syscall.MAP_PRIVATE|syscall.MAP_ANON|syscall.MAP_NORESERVE)
		if err == nil {
			m.buf, m.mapped = b, true
		}
	}
	if m.mapped {
		return m.buf[:size]
	}
	// Go heap fallback: grow like wazero's own allocator.
	if size > uint64(cap(m.buf)) {
		nb := make([]byte, size, max(size, min(m.max, 2*uint64(cap(m.buf)))))
		copy(nb, m.buf)
		m.buf = nb
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *mmapMemory) Free() {
	if m.mapped {
		if err := syscall.Munmap(m.buf); err != nil {
			// munmap can fail if splitting the mapping would exceed
			// vm.max_map_count: give the pages back at least (the
			// address range stays reserved).
			_ = syscall.Madvise(m.buf, syscall.MADV_DONTNEED)
		}
	}
	m.buf, m.mapped = nil, false
}

func memoryAllocator() experimental.MemoryAllocator { return mmapAllocator{} }
