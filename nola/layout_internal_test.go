package nola

import (
	"testing"
	"unsafe"
)

// The fields a warm invocation touches stay within the activation's first
// two 64-byte cache lines (see the activation type), and the activation
// stays in a size class whose slots are line-aligned (320 bytes: 5 lines).
func TestActivationHotFields(t *testing.T) {
	var a activation
	const hotEnd = 128
	hot := []struct {
		name      string
		off, size uintptr
	}{
		{"state", unsafe.Offsetof(a.state), unsafe.Sizeof(a.state)},
		{"resolved", unsafe.Offsetof(a.resolved), unsafe.Sizeof(a.resolved)},
		{"lock", unsafe.Offsetof(a.lock), unsafe.Sizeof(a.lock)},
		{"inc", unsafe.Offsetof(a.inc), unsafe.Sizeof(a.inc)},
		{"actor", unsafe.Offsetof(a.actor), unsafe.Sizeof(a.actor)},
		{"lastUsed", unsafe.Offsetof(a.lastUsed), unsafe.Sizeof(a.lastUsed)},
		{"busy", unsafe.Offsetof(a.busy), unsafe.Sizeof(a.busy)},
		{"size", unsafe.Offsetof(a.size), unsafe.Sizeof(a.size)},
		{"ref.Type", unsafe.Offsetof(a.ref) + unsafe.Offsetof(a.ref.Type), unsafe.Sizeof(a.ref.Type)},
		// flush reads only len(txn.writes) when nothing was written.
		{"txn.writes", unsafe.Offsetof(a.txn) + unsafe.Offsetof(a.txn.writes), unsafe.Sizeof(a.txn.writes)},
	}
	for _, f := range hot {
		if f.off+f.size > hotEnd {
			t.Errorf("hot field %s ends at byte %d of the activation, past its first two cache lines (%d)", f.name, f.off+f.size, hotEnd)
		}
	}
	if sz := unsafe.Sizeof(a); sz <= 288 || sz > 320 {
		// Go's size classes: 288 (not line-aligned) up to 288, 320 up to
		// 320, 352 after. Recheck the alignment argument if this moves.
		t.Errorf("activation is %d bytes, out of the 320-byte size class the layout assumes", sz)
	}
}
