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
// So each of them first calls a charge function, one for memory and one
// for tables, which takes the length (on top of the stack) and returns it
// unchanged: the stack is as it was, and nothing is declared in the
// caller. The charge takes fuel in proportion to the length, one unit per
// 64 bytes of memory (about what moving them costs next to a checkpoint)
// or per 8 table entries, saturating at zero, and calls the refill
// function, as a checkpoint does, if that emptied the fuel:
//
//	(func $charge (param $n i32) (result i32)
//	  global.get $fuel; (n >> shift); i32.sub      ;; fuel - charge (may wrap)
//	  i32.const 0
//	  global.get $fuel; (n >> shift); i32.gt_u     ;; fuel > charge
//	  select; global.set $fuel
//	  global.get $fuel; i32.eqz; if; call $refill; end
//	  local.get $n)
//
// The host checks the deadline and the budget before the instruction
// runs, so that between two looks at the clock a guest runs at most one
// slice of fuel plus one bulk instruction (bounded by the memory's or
// the table's size) — also in straight-line code, where no checkpoint
// follows (a function can hold some 30,000 memory.fills of 16 MiB). A
// charge larger than the fuel left counts as the rest of the slice only:
// the budget (MaxFuel) undercounts such a guest by at most one memory's
// worth per instruction; the deadline holds regardless. The call costs
// a few bytes at each bulk instruction (the inline form took some 30, 11
// times a module of nothing but them).

// The charges' shifts: a unit per 64 bytes, per 8 table entries.
const (
	memoryShift = 6
	tableShift  = 3
)

// chargeFor returns the charge function for 0xFC sub-opcode sub, and
// whether sub is a bulk instruction.
func (p *depthPlan) chargeFor(sub uint32) (uint32, bool) {
	switch sub {
	case 8, 10, 11: // memory.init, memory.copy, memory.fill: bytes
		return p.charge[0], true
	case 12, 14, 17: // table.init, table.copy, table.fill: entries
		return p.charge[1], true
	}
	return 0, false
}

// appendChargeBody appends a charge function's body: one code entry.
func appendChargeBody(b []byte, fuel, refill uint32, shift byte) []byte {
	charge := func(b []byte) []byte {
		b = append(b, 0x23) // global.get $fuel
		b = appendU32(b, fuel)
		return append(b, 0x20, 0x00, 0x41, shift, 0x76) // local.get $n; i32.const shift; i32.shr_u
	}
	body := []byte{0x00} // no locals
	body = charge(body)
	body = append(body, 0x6B, 0x41, 0x00) // i32.sub; i32.const 0
	body = charge(body)
	body = append(body, 0x4B, 0x1B, 0x24) // i32.gt_u; select; global.set $fuel
	body = appendU32(body, fuel)
	body = appendRefillIfEmpty(body, fuel, refill)
	body = append(body, 0x20, 0x00, 0x0B) // local.get $n; end
	b = appendU32(b, uint32(len(body)))
	return append(b, body...)
}
