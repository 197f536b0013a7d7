package instrument

import (
	"slices"
)

// CoalesceGap is the largest run of zero bytes the coalescer writes
// between two active data segments to merge them. A segment costs wazero
// an allocation and a constant-expression evaluation per instance (the Go
// compiler emits ~30,000 segments for a small guest, one per symbol), and
// ~8 bytes of binary for its header; 64 zero bytes cost one short memcpy
// per instance and at most 64 bytes of binary per merge, so merging across
// them is always cheaper at instantiation, while larger gaps (a page of
// BSS, say) would grow the module for no gain. Memory starts zeroed, so
// the zeros written are the bytes that were there.
const CoalesceGap = 64

// coalesceData returns the data section body with its active segments
// merged into as few as possible (see CoalesceGap), or body unchanged when
// merging cannot be proven equivalent. It merges only when every segment
// is active, targets memory 0 with a plain i32.const offset, and the
// module has no data count section: the binary format requires that
// section whenever code uses memory.init or data.drop, so without it no
// instruction names a segment index and renumbering is invisible.
// Passive segments (placed only by memory.init) and computed offsets
// (global.get, extended constants) leave the section untouched.
//
// Overlapping segments keep their semantics: segments are painted in
// their original order into each merged run, so a later segment still
// overwrites an earlier one. The caller has already checked (checkData)
// that every segment lies inside the initial memory, so no instantiation
// that failed before succeeds now, or the reverse.
func coalesceData(m *module, body []byte) []byte {
	for _, s := range m.sections {
		if s.id == secDataCount {
			return body
		}
	}
	type seg struct {
		off  uint32
		data []byte
	}
	r := reader{b: body}
	n, err := r.u32()
	if err != nil || n < 2 {
		return body
	}
	segs := make([]seg, 0, min(n, uint32(len(body)/3)))
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return body
		}
		switch flags {
		case 0:
		case 2:
			if mem, err := r.u32(); err != nil || mem != 0 {
				return body
			}
		default: // passive, or unknown
			return body
		}
		if op, err := r.byte(); err != nil || op != 0x41 {
			return body
		}
		off, err := r.s32()
		if err != nil {
			return body
		}
		if end, err := r.byte(); err != nil || end != 0x0B {
			return body
		}
		length, err := r.u32()
		if err != nil {
			return body
		}
		data, err := r.bytes(int(length))
		if err != nil {
			return body
		}
		if length == 0 {
			continue // in bounds (checkData), so it writes nothing
		}
		segs = append(segs, seg{off: uint32(off), data: data})
	}
	if !r.done() {
		return body
	}
	// Runs: maximal groups of segments whose intervals, sorted by start,
	// overlap or lie at most CoalesceGap apart.
	order := make([]int, len(segs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		return int(int64(segs[a].off) - int64(segs[b].off))
	})
	type run struct {
		lo, hi  uint64
		members []int
	}
	var runs []run
	for _, i := range order {
		lo := uint64(segs[i].off)
		hi := lo + uint64(len(segs[i].data))
		if k := len(runs) - 1; k >= 0 && lo <= runs[k].hi+CoalesceGap {
			runs[k].hi = max(runs[k].hi, hi)
			runs[k].members = append(runs[k].members, i)
			continue
		}
		runs = append(runs, run{lo: lo, hi: hi, members: []int{i}})
	}
	if len(runs) == int(n) {
		return body // nothing to merge
	}
	out := appendU32(make([]byte, 0, len(body)), uint32(len(runs)))
	for _, rn := range runs {
		slices.Sort(rn.members) // paint in original order: later wins
		out = append(out, 0x00, 0x41)
		out = appendS64(out, int64(int32(uint32(rn.lo))))
		out = append(out, 0x0B)
		size := int(rn.hi - rn.lo)
		out = appendU32(out, uint32(size))
		start := len(out)
		out = append(out, make([]byte, size)...)
		for _, i := range rn.members {
			copy(out[start+int(uint64(segs[i].off)-rn.lo):], segs[i].data)
		}
	}
	return out
}

// coalesceOnly applies only the data-segment rewrite to bin, with the
// same checks Fuel makes first; the tests use it to compare a module's
// initial memory with and without merging.
func coalesceOnly(bin []byte) ([]byte, error) {
	if err := Check(bin, Limits{}); err != nil {
		return nil, err
	}
	m, err := parse(bin)
	if err != nil {
		return nil, err
	}
	if err := checkData(m); err != nil {
		return nil, err
	}
	out := append([]byte(nil), bin[:8]...)
	for _, s := range m.sections {
		body := s.body
		if s.id == secData {
			body = coalesceData(m, body)
		}
		out = appendSection(out, s.id, body)
	}
	return out, nil
}
