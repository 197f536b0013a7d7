package wasm

import (
	"errors"
	"sync/atomic"

	"github.com/tetratelabs/wazero/experimental"
)

// InstanceOverhead is what the Host charges each instance besides its
// linear memory and its tables (instrument.Rewritten.InstanceBytes): the
// instance's own structures (globals, function references, the waPC
// state). A C counter activation holds ~15 KB of Go heap, the engine's
// share included.
const InstanceOverhead = 16 << 10

// pageSize is the size of a WebAssembly memory page.
const pageSize = 64 << 10

// memBudget bounds the memory of all instances of a Host together
// (Config.MemoryLimit): their linear memory and overhead each
// (InstanceOverhead and their module's tables: compiled.overhead).
// Memory is reserved before it is allocated, by compare-and-swap, so that
// concurrent growths cannot pass the limit together.
type memBudget struct {
	limit int64
	used  atomic.Int64
	// shed, if set, frees memory nothing needs — the idle recycled
	// instances (Host.shedPool) — when a reservation does not fit, and
	// reports whether it freed any: idle instances never refuse a live
	// one memory.
	shed func() bool
}

// reserve takes n bytes if they fit under the limit, shedding first if
// they do not.
func (b *memBudget) reserve(n int64) bool {
	for {
		if b.reserveNoShed(n) {
			return true
		}
		if b.shed == nil || !b.shed() {
			return false
		}
	}
}

// reserveNoShed takes n bytes if they fit under the limit.
func (b *memBudget) reserveNoShed(n int64) bool {
	for {
		u := b.used.Load()
		if n > b.limit-u {
			return false
		}
		if b.used.CompareAndSwap(u, u+n) {
			return true
		}
	}
}

func (b *memBudget) release(n int64) { b.used.Add(-n) }

// budgetAllocator gives one instantiation its linear memory, charged to the
// Host's budget. The instantiation reserves the memory's initial size
// (prepaid) beforehand, so that wazero's first allocation, which it cannot
// see fail, always succeeds; every growth after that reserves its pages
// first, and memory.grow returns -1 to the guest when they do not fit.
type budgetAllocator struct {
	b       *memBudget
	in      *instance
	inner   experimental.MemoryAllocator // nil: the Go heap
	img     *memImage                    // the module's memory image, or nil
	prepaid int64
	mems    []*budgetMemory
}

var _ experimental.MemoryAllocator = (*budgetAllocator)(nil)

func (a *budgetAllocator) Allocate(capacity, max uint64) experimental.LinearMemory {
	var inner experimental.LinearMemory
	if a.inner != nil {
		inner = a.inner.Allocate(capacity, max)
	} else {
		inner = &heapMemory{max: max, img: a.img}
	}
	m := &budgetMemory{inner: inner, in: a.in, held: a.prepaid}
	a.prepaid = 0
	a.in.lin = m // a module has one memory (CheckABI)
	a.mems = append(a.mems, m)
	return m
}

// settle gives back what the instantiation reserved and did not use.
func (a *budgetAllocator) settle() {
	a.b.release(a.prepaid)
	a.prepaid = 0
}

// freeAll frees every memory handed out, for an instantiation that failed:
// wazero drops such a module without closing it, so nothing else would.
func (a *budgetAllocator) freeAll() {
	for _, m := range a.mems {
		m.Free()
	}
	a.mems = nil
	a.settle()
}

// budgetMemory is a linear memory whose size is charged to its instance's
// Host's memBudget (in.h.mem: not a field of its own, 16 B per live
// instance with the size class). Reallocate runs on the guest's task
// (memory.grow) and Free when the instance closes, never both at once.
type budgetMemory struct {
	inner experimental.LinearMemory
	in    *instance
	held  int64 // bytes charged
}

func (m *budgetMemory) Reallocate(size uint64) []byte {
	grow := int64(size) - m.held
	if grow > 0 {
		if !m.in.h.mem.reserve(grow) {
			m.in.refusedGrowth(int64(size))
			return nil
		}
		m.held += grow
	}
	buf := m.inner.Reallocate(size)
	if buf == nil && grow > 0 {
		m.in.h.mem.release(grow)
		m.held -= grow
	}
	return buf
}

// memResetter is a linear memory that can be set back to an image
// (recycling, see recycle.go).
type memResetter interface {
	// reset makes the first size bytes of the memory, its whole current
	// length, what img holds (zeros past its data).
	reset(img *memImage, size int64) error
}

// reset sets the memory back to img (its charge does not change: the
// size is the same).
func (m *budgetMemory) reset(img *memImage, size int64) error {
	r, ok := m.inner.(memResetter)
	if !ok {
		return errors.New("the memory cannot be reset")
	}
	return r.reset(img, size)
}

func (m *budgetMemory) Free() {
	m.inner.Free()
	m.in.h.mem.release(m.held)
	m.held = 0
}

// heapMemory is linear memory on the Go heap, grown like wazero's own
// allocator (doubling, up to the maximum). The module's memory image, if
// any, is copied into its first allocation.
type heapMemory struct {
	max uint64
	img *memImage
	buf []byte
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.max {
		return nil
	}
	if m.buf == nil && m.img != nil {
		// A snapshot's image can be longer than the initial memory (the
		// instance grows to it at once): room for all of it.
		nb := make([]byte, size, max(size, uint64(len(m.img.data))))
		m.img.copyInto(nb[:cap(nb)])
		m.buf = nb
	}
	if size > uint64(cap(m.buf)) {
		nb := make([]byte, size, max(size, min(m.max, 2*uint64(cap(m.buf)))))
		if m.buf == nil {
			m.img.copyInto(nb)
		} else {
			copy(nb, m.buf)
		}
		m.buf = nb
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }

// reset zeroes the memory, all of what it allocated, and copies img in.
func (m *heapMemory) reset(img *memImage, size int64) error {
	if int64(len(m.buf)) != size || (img != nil && int64(len(img.data)) > size) {
		return errors.New("the memory is not the image's size")
	}
	clear(m.buf[:cap(m.buf)])
	img.copyInto(m.buf)
	return nil
}
