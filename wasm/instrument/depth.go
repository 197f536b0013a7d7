package instrument

import "fmt"

// The call-depth bound.
//
// wazero keeps a guest's call stack in a Go byte slice that it doubles
// whenever the guest needs more, up to a ceiling of about 50 MB (the next
// doubling then fails with "stack overflow"). A guest recursing without
// end therefore makes the host allocate and copy some 150 MB per call,
// outside the memory cap, and while the compiled code runs between the
// doublings Go's garbage collector cannot stop its goroutine: every other
// goroutine that needs the collector waits. Under the race detector one
// such call took 2–6 s on our machines and let the server's lease lapse.
//
// So the rewrite counts the frames itself. A second new global holds the
// depth; every function's entry adds its weight to it, after checking
// that the sum stays within the limit, and every exit subtracts it:
//
//	global.get $depth; i32.const limit-w; i32.gt_u; if; call $overflow; end
//	global.get $depth; i32.const w; i32.add; global.set $depth
//	block (result …)      ;; the original body, whose final end closes it
//	  …
//	end
//	global.get $depth; i32.const w; i32.sub; global.set $depth
//	end
//
// Wrapping the body in a block whose results are the function's makes
// every way out of it pass the subtraction: falling off the end, and any
// branch to the function's own label, which becomes this block's (label
// indices are relative: the block sits between the body and the
// function). A return becomes a branch to the block (br depth, the
// number of constructs open around it), and return_call and
// return_call_indirect subtract before they replace the frame. Traps need
// nothing: the host discards an instance whose call did not return.
//
// A frame's size in wazero grows with the function's locals, so a
// function weighs one plus one per 16 of its parameters and locals: the
// limit bounds the stack's size roughly, not only its frames. (The values
// a function keeps on its operand stack count for nothing; a function
// with thousands of them reaches wazero's own ceiling in few frames, which
// costs one large copy, not seconds.)
//
// The overflow function calls __guest_request with (OverflowPtr,
// RefillPtr); the host aborts the call with a stack-overflow trap. A host
// that does not know the sentinel returns into an unreachable.

// DefaultMaxCallDepth is the default limit on the weighted frames of one
// call (see Options.MaxCallDepth): far deeper than guests recurse
// legitimately, a few MiB of wazero stack.
const DefaultMaxCallDepth = 1 << 16

// MaxCallDepthLimit bounds Options.MaxCallDepth so that the depth global,
// compared unsigned, never wraps.
const MaxCallDepthLimit = 1 << 30

// OverflowPtr is the operation pointer the overflow function passes to
// __guest_request (with RefillPtr as the payload pointer) when a call
// nests deeper than the limit.
const OverflowPtr = 0xFFFFFFFE

// localsPerWeight is how many parameters and locals add one to a
// function's weight.
const localsPerWeight = 16

// funcType is what the rewrite needs of a function type.
type funcType struct {
	params, results string // value types, one byte each
}

// depthPlan is what the depth bound (and the bulk charges) add to a
// module's code.
type depthPlan struct {
	fuel     uint32    // the fuel global's index
	global   uint32    // the depth global's index, fuel + 1
	refill   uint32    // the refill function's index; the overflow and
	overflow uint32    // the two charge functions follow it
	charge   [2]uint32 // memory's, tables' (bulk.go)
	limit    uint32
	// blockTypes holds each defined function's wrapper block type, as the
	// signed value the binary format encodes (-64: none; a value type's
	// byte minus 128; or a type index).
	blockTypes []int64
	// newTypes are the types () -> results the wrapper blocks need that
	// the module lacks; their indices follow the module's types (and the
	// void type, if the rewrite adds it). A function that takes
	// parameters and returns several values needs one (a block type that
	// is a type index takes its parameters from the stack), at most one
	// per type of the module's; C and Go compilers emit none.
	newTypes []string
}

// planDepth works out the wrapper block types; refill is the first added
// function's index, firstNew the index the first added block type will
// have.
func planDepth(m *module, fuel, refill, limit, firstNew uint32) (*depthPlan, error) {
	p := &depthPlan{fuel: fuel, global: fuel + 1, refill: refill, overflow: refill + 1,
		charge: [2]uint32{refill + 2, refill + 3}, limit: limit}
	if len(m.funcTypes) != int(m.definedFuncs) {
		return nil, fail("%d functions declared, %d types read", m.definedFuncs, len(m.funcTypes))
	}
	// Parameterless types by results, the first of each.
	byResults := map[string]uint32{}
	for i, t := range m.types {
		if _, ok := byResults[t.results]; !ok && t.params == "" {
			byResults[t.results] = uint32(i)
		}
	}
	p.blockTypes = make([]int64, len(m.funcTypes))
	for i, ti := range m.funcTypes {
		if int(ti) >= len(m.types) {
			return nil, fail("function %d has type %d of %d", i, ti, len(m.types))
		}
		res := m.types[ti].results
		switch {
		case len(res) == 0:
			p.blockTypes[i] = 0x40 - 128
		case len(res) == 1:
			p.blockTypes[i] = int64(res[0]) - 128
		default:
			idx, ok := byResults[res]
			if !ok {
				idx = firstNew + uint32(len(p.newTypes))
				p.newTypes = append(p.newTypes, res)
				byResults[res] = idx
			}
			p.blockTypes[i] = int64(idx)
		}
	}
	return p, nil
}

// appendTypes appends the added block types' encodings.
func (p *depthPlan) appendTypes(b []byte) []byte {
	for _, res := range p.newTypes {
		b = append(b, 0x60, 0x00)
		b = appendU32(b, uint32(len(res)))
		b = append(b, res...)
	}
	return b
}

// weight is a function's weight given its parameters and locals.
func (p *depthPlan) weight(locals uint64) uint32 {
	w := 1 + locals/localsPerWeight
	return uint32(min(w, uint64(p.limit)))
}

// entry appends a function's entry code, through the opening of its
// wrapper block.
func (p *depthPlan) entry(b []byte, fn int, w uint32) []byte {
	b = append(b, 0x23) // global.get
	b = appendU32(b, p.global)
	b = append(b, 0x41) // i32.const
	b = appendS64(b, int64(p.limit-w))
	b = append(b, 0x4B, 0x04, 0x40, 0x10) // i32.gt_u; if (empty); call
	b = appendU32(b, p.overflow)
	b = append(b, 0x0B) // end
	b = appendAddGlobal(b, p.global, opAdd, int64(w))
	b = append(b, 0x02) // block
	return appendS64(b, p.blockTypes[fn])
}

// exit appends the subtraction of w.
func (p *depthPlan) exit(b []byte, w uint32) []byte {
	return appendAddGlobal(b, p.global, opSub, int64(w))
}

// appendDepthGlobal appends the depth global: a mutable i32, 0.
func appendDepthGlobal(b []byte) []byte { return append(b, 0x7F, 0x01, 0x41, 0x00, 0x0B) }

// appendBodies appends the added functions' bodies (addedFuncs code
// entries): refill, overflow, the charges.
func (p *depthPlan) appendBodies(b []byte, guestRequest uint32) []byte {
	b = appendRefillBody(b, guestRequest)
	b = appendOverflowBody(b, guestRequest)
	b = appendChargeBody(b, p.fuel, p.refill, memoryShift)
	return appendChargeBody(b, p.fuel, p.refill, tableShift)
}

// appendOverflowBody appends the overflow function's body: one code entry,
// __guest_request(OverflowPtr, RefillPtr), then unreachable.
func appendOverflowBody(b []byte, guestRequest uint32) []byte {
	return appendRequestBody(b, guestRequest, 0x7E, true) // -2: OverflowPtr
}

// parseFunctions reads the function section: each defined function's type.
func (m *module) parseFunctions(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	if uint64(n) > uint64(len(r.b)-r.pos) { // one byte at least each
		return fail("%d functions declared in %d bytes", n, len(r.b)-r.pos)
	}
	m.definedFuncs = n
	m.funcTypes = make([]uint32, n)
	for i := range m.funcTypes {
		if m.funcTypes[i], err = r.u32(); err != nil {
			return err
		}
	}
	return nil
}

func checkCallDepth(limit uint32) error {
	if limit > MaxCallDepthLimit {
		return fmt.Errorf("%w: MaxCallDepth %d exceeds %d", ErrUnsupported, limit, MaxCallDepthLimit)
	}
	return nil
}
