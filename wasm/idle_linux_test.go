//go:build linux

package wasm

import (
	"testing"
	"unsafe"
)

// A linear memory's mapping bookkeeping is one of the few objects every
// live instance keeps: its heap fallback is made only when the kernel
// refuses the mapping (a struct of 96 B with it inline).
func TestMmapMemoryIsSmall(t *testing.T) {
	if n := unsafe.Sizeof(mmapMemory{}); n > 64 {
		t.Errorf("mmapMemory is %d B, want ≤ 64 (one per live WASM actor)", n)
	}
}

// Without a mapping (the kernel refused it, or a memory of no pages) the
// memory falls back to the Go heap, made on first use.
func TestMmapMemoryFallsBackToTheHeap(t *testing.T) {
	m := &mmapMemory{max: 0}
	if b := m.Reallocate(0); len(b) != 0 || m.mapped || m.heap == nil {
		t.Fatalf("zero-page memory: %d bytes, mapped %v, fallback %v", len(b), m.mapped, m.heap)
	}
	m.Free()
}
