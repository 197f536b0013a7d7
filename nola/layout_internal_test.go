package nola

import (
	"testing"
	"unsafe"
)

// The fields a warm invocation touches stay within the activation's first
// two 64-byte cache lines (see the activation type), and the activation is
// a whole number of lines, so that its size class's slots are line-aligned.
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
		{"sizer", unsafe.Offsetof(a.sizer), unsafe.Sizeof(a.sizer)},
		{"typ", unsafe.Offsetof(a.typ), unsafe.Sizeof(a.typ)},
		// The table's lookup compares the key: its bytes, when they fit
		// keyBuf, are in the same lines.
		{"kp", unsafe.Offsetof(a.kp), unsafe.Sizeof(a.kp)},
		{"nsLen", unsafe.Offsetof(a.nsLen), unsafe.Sizeof(a.nsLen)},
		{"idLen", unsafe.Offsetof(a.idLen), unsafe.Sizeof(a.idLen)},
		{"keyBuf", unsafe.Offsetof(a.keyBuf), unsafe.Sizeof(a.keyBuf)},
	}
	for _, f := range hot {
		// Offsetof of a promoted field is relative to the struct that
		// declares it: add where that struct sits in the activation.
		off := unsafe.Offsetof(a.activationHot) + f.off
		if off+f.size > hotEnd {
			t.Errorf("hot field %s ends at byte %d of the activation, past its first two cache lines (%d)", f.name, off+f.size, hotEnd)
		}
	}
	// Go's size classes are multiples of 64 bytes from 64 to 768 (then 896,
	// 1024): an activation of whole lines up to 768 bytes gets a class
	// whose slots all start on a line.
	if sz := unsafe.Sizeof(a); sz%64 != 0 || sz > 768 {
		t.Errorf("activation is %d bytes: not a whole number of cache lines within 768 bytes, so its slots are not line-aligned: pad activationCold to the next line, or drop a field", sz)
	}
	t.Logf("activation: %d bytes (hot %d, cold %d)", unsafe.Sizeof(a), unsafe.Sizeof(a.activationHot), unsafe.Sizeof(a.activationCold))
}

// A Context is allocated per invocation: it stays within a 64-byte size
// class, its rarely set fields behind Context.rare.
func TestContextSizeClass(t *testing.T) {
	if sz := unsafe.Sizeof(Context{}); sz > 64 {
		t.Errorf("Context is %d bytes: past the 64-byte size class, every invocation allocates the next (80 or 96): move a rarely set field into contextRare", sz)
	}
}
