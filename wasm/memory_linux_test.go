//go:build linux

package wasm

import "testing"

func TestMmapMemoryGrowsInPlaceAndFrees(t *testing.T) {
	lm := mmapAllocator{}.Allocate(65536, 4*65536)
	m := lm.(*mmapMemory)
	b := lm.Reallocate(65536)
	if len(b) != 65536 || !m.mapped {
		t.Fatalf("first page: len %d, mapped %v", len(b), m.mapped)
	}
	b[100] = 7
	b2 := lm.Reallocate(3 * 65536)
	if len(b2) != 3*65536 || &b2[0] != &b[0] || b2[100] != 7 || b2[2*65536+5] != 0 {
		t.Fatal("growth moved or lost the memory")
	}
	if lm.Reallocate(5*65536) != nil {
		t.Fatal("grew past the maximum")
	}
	lm.Free()
	if m.buf != nil || m.mapped {
		t.Fatal("not freed")
	}
}
