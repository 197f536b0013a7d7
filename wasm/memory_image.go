package wasm

import "sync"

// cowMinBytes is the least data (non-zero pages) of a memory image mapped
// copy-on-write rather than copied into each instance. Mapping costs two
// system calls and a second kernel mapping per instance (vm.max_map_count
// bounds those, 65530 by default), so it pays only for large images: a
// standard-Go guest's ~1.3 MB (its snapshot's ~1.6 MB of 3 MB), not a C guest's few
// hundred bytes, which one memmove places faster — nor a C guest's
// snapshot, a whole 64 KiB page of memory that is mostly zeros.
const cowMinBytes = 64 << 10

// memImage is a module's initial linear memory, what its active data
// segments write (instrument.Image), shared by all of the module's
// instances on one Host. The compiled module has no data segments left:
// each instance's memory allocator places the image at offset 0 when it
// first allocates the memory — before wazero runs anything of the guest —
// either by mapping file copy-on-write (private pages only where the guest
// writes) or, where that is not possible, by copying data.
type memImage struct {
	data []byte
	// runs are the parts of data copyInto writes: its pages that are not
	// all zero (a fresh memory is zero already), merged when adjacent. A C
	// guest's image is mostly the zeros of its stack, below its data:
	// copying those would make pages resident for nothing.
	runs []imageRun
	file imageFile // the image as a sealed in-memory file (Linux), or none

	closeOnce sync.Once
}

// newMemImage returns the image of data; mapped asks for its file (when
// instances' memory lives in mappings and data is large enough).
func newMemImage(data []byte, mapped bool) *memImage {
	img := &memImage{data: data}
	for off := 0; off < len(data); off += imagePage {
		end := min(off+imagePage, len(data))
		if !allZero(data[off:end]) {
			if k := len(img.runs) - 1; k >= 0 && img.runs[k].end == off {
				img.runs[k].end = end
			} else {
				img.runs = append(img.runs, imageRun{off, end})
			}
		}
	}
	n := 0
	for _, r := range img.runs {
		n += r.end - r.off
	}
	if mapped && n >= cowMinBytes && !noImageFile {
		img.file = newImageFile(data, img.runs)
	}
	return img
}

// imagePage is the granularity of imageRun: the smallest page size.
const imagePage = 4 << 10

// imageRun is the range [off, end) of a memImage's data.
type imageRun struct{ off, end int }

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// copyInto writes the image at the start of a fresh, zeroed memory.
func (img *memImage) copyInto(buf []byte) {
	if img == nil {
		return
	}
	for _, r := range img.runs {
		copy(buf[r.off:r.end], img.data[r.off:r.end])
	}
}

// close releases the image's file; instances that mapped it keep their
// mappings. Called once no instance can be created from the image any
// more (the Host's runtime closed, or the compiled module unreachable).
func (img *memImage) close() {
	img.closeOnce.Do(func() {
		img.file.close()
		img.file = imageFile{}
	})
}

// noImageFile disables the copy-on-write file: the tests use it to check
// the copying fallback.
var noImageFile bool
