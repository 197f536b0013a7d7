//go:build !linux

package wasm

import "github.com/tetratelabs/wazero/experimental"

// memoryAllocator: linear memory on the Go heap (wazero's default).
func memoryAllocator() experimental.MemoryAllocator { return nil }

// trackingAllocator is not used without the mmap allocator.
type trackingAllocator struct {
	inner experimental.MemoryAllocator
}

func (t *trackingAllocator) Allocate(capacity, max uint64) experimental.LinearMemory {
	return t.inner.Allocate(capacity, max)
}

func (t *trackingAllocator) freeAll() {}
