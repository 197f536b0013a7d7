package instrument

// Image is the initial content of a module's linear memory that its active
// data segments write, taken out of the module by the rewrite
// (Options.MemoryImage): the host places it into each new instance's
// memory itself, before anything of the guest runs, instead of having
// wazero evaluate and copy every segment per instance.
type Image struct {
	// Data is memory from offset 0 up to the end of the last non-empty
	// active segment; the rest of the initial memory is zero. It is never
	// longer than the initial memory.
	Data []byte
}

// extractImage paints the active data segments of the data section body
// into one image, in their order (a later segment overwrites an earlier
// one, as instantiation does), and returns the section without them.
// keep reports whether the section is still needed (it has passive
// segments, or the module has a data count section); ok is false, with
// body untouched, when the image cannot be proven equivalent: a segment
// for another memory, an offset other than a plain i32.const, a module
// without a memory, or an image over maxSparseImage that is mostly zeros.
//
// Without a data count section no instruction names a segment
// (memory.init and data.drop require that section), so the active
// segments are simply dropped and the passive ones renumbered. With one,
// each active segment becomes an empty passive segment, which keeps every
// index and behaves exactly as the dropped active segment would after
// instantiation: memory.init of zero bytes at offset 0 succeeds, anything
// more traps, data.drop is a no-op.
//
// The caller has already checked (checkData) that every active segment
// lies inside the initial memory, so instantiations that failed before
// still fail (at the check) and none that succeeded fails now.
// maxSparseImage is the longest image built for segments that cover less
// than a quarter of it. The image is as long as the last segment's end: a
// module of a few bytes can put one at the end of its whole initial
// memory (up to Options.MaxMemoryPages), and that image would be
// allocated at compilation and held for the module's life, for 2 bytes of
// data. A C guest's image (its stack's zeros below its data) is some
// 16 KiB, a standard-Go guest's 1.3 MB of mostly data.
const maxSparseImage = 1 << 20

func extractImage(m *module, body []byte) (out []byte, image *Image, keep, ok bool) {
	var hasMemory, dataCount bool
	for _, s := range m.sections {
		switch s.id {
		case secDataCount:
			dataCount = true
		case secMemory:
			r := reader{b: s.body}
			n, err := r.u32()
			hasMemory = err == nil && n > 0
		}
	}
	if !hasMemory {
		return body, nil, true, false
	}
	type seg struct {
		off  uint32
		data []byte
	}
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return body, nil, true, false
	}
	var segs []seg
	var passive [][]byte   // encoded passive segments, in order
	var size, total uint64 // the image's length, the segments' bytes
	for i := uint32(0); i < n; i++ {
		start := r.pos
		flags, err := r.u32()
		if err != nil {
			return body, nil, true, false
		}
		switch flags {
		case 0:
		case 1:
			if err := skipVec(&r); err != nil {
				return body, nil, true, false
			}
			passive = append(passive, body[start:r.pos])
			continue
		case 2:
			if mem, err := r.u32(); err != nil || mem != 0 {
				return body, nil, true, false
			}
		default:
			return body, nil, true, false
		}
		if op, err := r.byte(); err != nil || op != 0x41 {
			return body, nil, true, false
		}
		off, err := r.s32()
		if err != nil {
			return body, nil, true, false
		}
		if end, err := r.byte(); err != nil || end != 0x0B {
			return body, nil, true, false
		}
		length, err := r.u32()
		if err != nil {
			return body, nil, true, false
		}
		data, err := r.bytes(int(length))
		if err != nil {
			return body, nil, true, false
		}
		if dataCount {
			passive = append(passive, []byte{0x01, 0x00}) // empty passive
		}
		if length > 0 {
			segs = append(segs, seg{off: uint32(off), data: data})
			size = max(size, uint64(uint32(off))+uint64(length))
			total += uint64(length)
		}
	}
	if !r.done() {
		return body, nil, true, false
	}
	if size > maxSparseImage && size > 4*total {
		// Mostly zeros: segments cost their own bytes, the image its
		// whole length, allocated now and kept with the module.
		return body, nil, true, false
	}
	img := &Image{Data: make([]byte, size)}
	for _, s := range segs {
		copy(img.Data[s.off:], s.data)
	}
	if !dataCount && len(passive) == 0 {
		return nil, img, false, true
	}
	out = appendU32(nil, uint32(len(passive)))
	for _, p := range passive {
		out = append(out, p...)
	}
	return out, img, true, true
}
