package instrument

// Fuel for bulk instructions.
//
// A checkpoint costs about as much as a few simple instructions, and fuel
// counts checkpoints; but memory.fill, memory.copy and memory.init, and
// their table counterparts, are single instructions whose cost grows with
// their length operand: up to the whole linear memory. A guest looping
// over a 4 MiB memory.copy burned one unit of fuel per copy, so a slice
// of fuel (SliceFuel units, about 0.4 ms of a tight loop) ran for tens of
// seconds, holding a guest slot, before the host could look at the clock:
// 36 s past a 100 ms deadline on our machines.
//
// So each of them first takes fuel in proportion to its length, one unit
// per 64 bytes of memory (about what moving them costs next to a
// checkpoint) or per 8 table entries, saturating at zero, and calls the
// refill function, as a checkpoint does, if that emptied the fuel:
//
//	local.tee $n                                  ;; the length, kept on the stack
//	global.get $fuel; (n >> shift); i32.sub       ;; fuel - charge (may wrap)
//	i32.const 0
//	global.get $fuel; (n >> shift); i32.gt_u      ;; fuel > charge
//	select; global.set $fuel
//	global.get $fuel; i32.eqz; if; call $refill; end
//
// The host checks the deadline and the budget before the instruction
// runs, so that between two looks at the clock a guest runs at most one
// slice of fuel plus one bulk instruction (bounded by the memory's or
// the table's size) — also in straight-line code, where no checkpoint
// follows (a function can hold some 30,000 memory.fills of 16 MiB). A
// charge larger than the fuel left counts as the rest of the slice only:
// the budget (MaxFuel) undercounts such a guest by at most one memory's
// worth per instruction; the deadline holds regardless.
//
// $n is one more i32 local, declared last so that no index changes, and
// only in functions that use a bulk instruction.

// bulkShift returns the charge's shift for 0xFC sub-opcode sub, and
// whether sub is a bulk instruction.
func bulkShift(sub uint32) (uint32, bool) {
	switch sub {
	case 8, 10, 11: // memory.init, memory.copy, memory.fill: bytes
		return 6, true
	case 12, 14, 17: // table.init, table.copy, table.fill: entries
		return 3, true
	}
	return 0, false
}

// appendCharge appends the charge for a bulk instruction whose length is
// on top of the stack, and the refill if it emptied the fuel; n is the
// scratch local.
func appendCharge(b []byte, fuel, refill, n, shift uint32) []byte {
	charge := func(b []byte) []byte {
		b = append(b, 0x23) // global.get $fuel
		b = appendU32(b, fuel)
		b = append(b, 0x20) // local.get $n
		b = appendU32(b, n)
		return append(b, 0x41, byte(shift), 0x76) // i32.const shift; i32.shr_u
	}
	b = append(b, 0x22) // local.tee $n
	b = appendU32(b, n)
	b = charge(b)
	b = append(b, 0x6B, 0x41, 0x00) // i32.sub; i32.const 0
	b = charge(b)
	b = append(b, 0x4B, 0x1B, 0x24) // i32.gt_u; select; global.set $fuel
	b = appendU32(b, fuel)
	b = append(b, 0x23) // global.get $fuel
	b = appendU32(b, fuel)
	b = append(b, 0x45, 0x04, 0x40, 0x10) // i32.eqz; if (empty); call $refill
	b = appendU32(b, refill)
	return append(b, 0x0B) // end
}

// withScratchLocal returns a function body's local declarations (decl,
// read up to its code) with one more group: one i32.
func withScratchLocal(decl []byte, groups uint32) []byte {
	r := reader{b: decl}
	_, _ = r.u32() // the group count, read before: cannot fail
	out := appendU32(make([]byte, 0, len(decl)+8), groups+1)
	out = append(out, decl[r.pos:]...)
	return append(out, 0x01, 0x7F)
}
