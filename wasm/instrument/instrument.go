// Package instrument rewrites a WASM module so that its execution can be
// bounded cheaply and deterministically: fuel metering, and a bound on the
// depth of its calls.
//
// The rewritten module has a new global, an exported mutable i32 named
// FuelExport, and a new function, the refill function. A checkpoint is
// inserted at the entry of every function and at the head of every loop:
//
//	global.get $fuel; i32.eqz; if; call $refill; end
//	global.get $fuel; i32.const 1; i32.sub; global.set $fuel
//
// so every unbounded execution (a loop iterating, recursion) burns fuel.
// Bulk instructions (memory.fill, memory.copy, ...) also burn fuel by
// their length, through two more functions, the charges (bulk.go).
// When the fuel reaches zero the refill function calls the guest's own
// import of wapc.__guest_request with the impossible arguments
// (0xFFFFFFFF, 0xFFFFFFFF) — RefillPtr. The host recognizes them, checks the
// invocation's budget and deadline, and either sets the fuel global again or
// aborts the call. A legitimate __guest_request with those pointers could
// only be for an empty operation and payload (anything else is out of
// bounds), for which writing nothing is the same as ignoring the call.
//
// A second global counts the frames of the current call, and a second
// function, the overflow function, reports a call nested deeper than
// Options.MaxCallDepth: wazero would otherwise let a recursing guest grow
// its stack to some 50 MB, outside every limit (depth.go explains how
// every function's entry and exits keep the count).
//
// Nothing existing is renumbered: the new types, globals and functions
// are appended after the existing ones (the module may import functions
// only), so calls, element segments, exports and the name section stay
// valid. The guest cannot reach the new globals: their
// indices did not exist when the original module was validated.
//
// One thing is taken out: a table that nothing can reach (no instruction
// names one, no element segment, no table export — see unusedTables). C
// linkers emit an empty one-entry table whatever the code does, and
// wazero builds an instance of it for every instance; removing the only
// tables renumbers nothing.
//
// Why not wazero's WithCloseOnContextDone: it starts a goroutine for every
// call into the guest, which costs ~0.7 µs per invocation on our machines,
// more than the rest of an invocation; the checkpoints cost a few
// instructions per loop iteration and function call. Fuel also bounds a
// runaway guest under the deterministic simulator, where virtual time stands
// still while a guest computes.
package instrument

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// FuelExport is the name of the exported fuel global.
const FuelExport = "__nola_fuel"

// RefillPtr is the sentinel both pointer arguments of __guest_request carry
// when the refill function calls it.
const RefillPtr = 0xFFFFFFFF

// Options tune the rewrite.
type Options struct {
	// InitialFuel is the fuel global's initial value (the budget before
	// the first refill, covering start functions). Default 1<<20.
	InitialFuel int32
	// MaxMemoryPages caps the module's own memory: its declared maximum
	// becomes min(declared, cap). Zero leaves it. A module whose minimum
	// exceeds the cap is rejected.
	MaxMemoryPages uint32
	// MaxTableEntries caps every table the same way (wazero keeps a
	// table's entries on the Go heap, 8 bytes each, and table.grow would
	// otherwise reach 2^32 of them). Zero means DefaultMaxTableEntries.
	MaxTableEntries uint32
	// MaxCallDepth bounds how deeply one call into the guest nests
	// function calls, each weighing one plus one per 16 of its parameters
	// and locals (see depth.go); deeper, the guest calls __guest_request
	// with OverflowPtr. Zero means DefaultMaxCallDepth; at most 1<<30.
	MaxCallDepth uint32
	// Limits bound the input module (see Check, which Fuel runs first).
	Limits Limits
	// NoCoalesce keeps the data segments as they are instead of merging
	// nearby active ones (see CoalesceGap); for comparisons.
	NoCoalesce bool
	// MemoryImage takes the active data segments out of the module into
	// one Image of the initial memory (see Rewrite), when that is provably
	// equivalent and the image is not mostly zeros beyond 1 MiB (it is
	// allocated at compilation); otherwise they are merged as without it.
	MemoryImage bool
	// ExportGlobals exports every mutable global the module defines
	// (GlobalExport names them) and reports, in Rewritten.Snapshot,
	// whether an instance's state after its initialization is wholly its
	// linear memory and those globals: what a host needs to start later
	// instances from a snapshot of one (see Snapshot).
	ExportGlobals bool
}

// Rewritten is the result of Rewrite.
type Rewritten struct {
	// Module is the rewritten module.
	Module []byte
	// Memory, with Options.MemoryImage, is what the module's active data
	// segments wrote into its memory, now absent from Module: whoever
	// instantiates Module must write it at offset 0 of the fresh memory
	// before any guest code (a start function included) runs. Nil when
	// Module keeps its data segments (or has none).
	Memory *Image
	// Snapshot, with Options.ExportGlobals, describes the module's
	// mutable state for a post-initialization snapshot.
	Snapshot Snapshot
	// InstanceBytes estimates what an instance's tables, element
	// references, segments and globals take on the Go heap beside its
	// linear memory, which wazero allocates at instantiation (v1.12:
	// 8 B per table entry, up to 10 with the slack of table.grow; ~34 B
	// per element entry, ~42 passive; 24 B per data or element segment;
	// ~88 B per global): TableEntryBytes per entry of every table at its
	// minimum (GrownTableEntryBytes at its maximum if the code has
	// table.grow), ElementEntryBytes per element entry, SegmentBytes per
	// segment and GlobalBytes per global beyond the first FreeGlobals. A
	// module with 2^17 table and element entries costs ~5 MB an
	// instance, one with 2^16 globals or 2^18 data segments ~6 MB: a
	// host's memory budget must count them.
	InstanceBytes int64
}

// What Rewritten.InstanceBytes charges per table entry (of a table that
// can grow: its maximum), element entry, data or element segment, and
// global beyond the first FreeGlobals (which a host's fixed per-instance
// charge covers: guests have a few).
const (
	TableEntryBytes      = 8
	GrownTableEntryBytes = 10
	ElementEntryBytes    = 48
	SegmentBytes         = 24
	GlobalBytes          = 96
	FreeGlobals          = 16
)

// DefaultMaxTableEntries is the default table cap: 1 MiB of entries,
// far more than compilers emit (Go guests' tables hold a few thousand).
const DefaultMaxTableEntries = 1 << 17

// ErrUnsupported is returned (wrapped) for modules the rewriter cannot
// handle: malformed binaries, unknown opcodes, missing __guest_request.
var ErrUnsupported = errors.New("instrument: unsupported module")

func fail(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

// Section IDs.
const (
	secCustom    = 0
	secType      = 1
	secImport    = 2
	secFunction  = 3
	secTable     = 4
	secMemory    = 5
	secGlobal    = 6
	secExport    = 7
	secStart     = 8
	secElement   = 9
	secCode      = 10
	secData      = 11
	secDataCount = 12
	secTag       = 13
)

// rank orders sections as the binary format requires.
func rank(id byte) int {
	switch id {
	case secType:
		return 1
	case secImport:
		return 2
	case secFunction:
		return 3
	case secTable:
		return 4
	case secMemory:
		return 5
	case secTag:
		return 6
	case secGlobal:
		return 7
	case secExport:
		return 8
	case secStart:
		return 9
	case secElement:
		return 10
	case secDataCount:
		return 11
	case secCode:
		return 12
	case secData:
		return 13
	}
	return 0
}

type section struct {
	id   byte
	body []byte
}

// module is what the rewrite needs to know about the input.
type module struct {
	sections       []section
	voidType       int64 // index of the type () -> (), or -1
	chargeType     int64 // index of the type (i32) -> i32, or -1
	importedFuncs  uint32
	definedFuncs   uint32
	definedGlobals uint32
	// types are the function types; funcTypes each defined function's.
	types        []funcType
	funcTypes    []uint32
	guestRequest int64 // function index of wapc.__guest_request, or -1
	exportNames  map[string]bool
	// mutableGlobals are the defined mutable globals, by index.
	mutableGlobals []Global
	hasStart       bool
	exportsTable   bool
	hasElements    bool
}

// Fuel returns bin rewritten for fuel metering (see the package comment).
// Options.MemoryImage is ignored: Fuel's output keeps its data.
func Fuel(bin []byte, opts Options) ([]byte, error) {
	opts.MemoryImage = false
	r, err := Rewrite(bin, opts)
	if err != nil {
		return nil, err
	}
	return r.Module, nil
}

// Rewrite rewrites bin for fuel metering like Fuel and, with
// Options.MemoryImage, also returns its initial memory image.
func Rewrite(bin []byte, opts Options) (Rewritten, error) {
	var res Rewritten
	if opts.InitialFuel <= 0 {
		opts.InitialFuel = 1 << 20
	}
	if err := checkCallDepth(opts.MaxCallDepth); err != nil {
		return res, err
	}
	// The walk below trusts no count either, but Check also bounds what
	// wazero will allocate compiling the output.
	ck, err := check(bin, opts.Limits)
	if err != nil {
		return res, err
	}
	m, err := parse(bin)
	if err != nil {
		return res, err
	}
	if m.guestRequest < 0 {
		return res, fail("the module does not import wapc.__guest_request")
	}
	if m.exportNames[FuelExport] {
		return res, fail("the module already exports %q", FuelExport)
	}
	if err := checkData(m); err != nil {
		return res, err
	}
	fuelGlobal := m.definedGlobals
	var facts codeFacts
	if opts.ExportGlobals {
		// The exports added must keep the output within what a host
		// compiles (Limits.Instrumented allows the fuel export alone):
		// a module valid without snapshots must stay valid with them.
		limit := cmp.Or(opts.Limits.MaxExports, DefaultLimits().MaxExports)
		if n := uint64(len(m.exportNames)) + uint64(len(m.mutableGlobals)); n > uint64(limit) {
			opts.ExportGlobals = false
			res.Snapshot.Refused = fmt.Sprintf("its %d mutable globals, exported, would exceed the limit of %d exports", len(m.mutableGlobals), limit)
		}
	}
	if opts.ExportGlobals {
		for _, g := range m.mutableGlobals {
			if m.exportNames[g.Name] {
				// Not ours to rename: no snapshot, the module as is.
				opts.ExportGlobals = false
				res.Snapshot.Refused = fmt.Sprintf("the module already exports %q", g.Name)
				break
			}
		}
	}
	if opts.ExportGlobals {
		res.Snapshot.Globals = m.mutableGlobals
	}
	addExports := func(b []byte) []byte {
		b = appendFuelExport(b, fuelGlobal)
		if opts.ExportGlobals {
			for _, g := range m.mutableGlobals {
				b = appendGlobalExport(b, g.Name, g.Index)
			}
		}
		return b
	}
	exportCount := uint32(1)
	if opts.ExportGlobals {
		exportCount += uint32(len(m.mutableGlobals))
	}
	refillFunc := m.importedFuncs + m.definedFuncs
	// The added functions: refill, overflow () -> (); the two charges
	// (i32) -> i32 (bulk.go). Their types are the module's own if it has
	// them, else appended, before the wrapper blocks' (depth.go).
	refillType := uint32(m.voidType)
	addVoid := m.voidType < 0
	firstNew := uint32(len(m.types))
	if addVoid {
		refillType = firstNew
		firstNew++
	}
	chargeType := uint32(m.chargeType)
	addCharge := m.chargeType < 0
	if addCharge {
		chargeType = firstNew
		firstNew++
	}
	depth, err := planDepth(m, fuelGlobal, refillFunc, cmp.Or(opts.MaxCallDepth, DefaultMaxCallDepth), firstNew)
	if err != nil {
		return res, err
	}
	newTypes := uint32(len(depth.newTypes))
	if addVoid {
		newTypes++
	}
	if addCharge {
		newTypes++
	}
	addTypes := func(b []byte) []byte {
		if addVoid {
			b = appendVoidType(b)
		}
		if addCharge {
			b = append(b, 0x60, 0x01, 0x7F, 0x01, 0x7F)
		}
		return depth.appendTypes(b)
	}
	addFuncs := func(b []byte) []byte {
		b = appendU32(appendU32(b, refillType), refillType)
		return appendU32(appendU32(b, chargeType), chargeType)
	}
	addGlobals := func(b []byte) []byte { return appendDepthGlobal(appendFuelGlobal(b, opts.InitialFuel)) }

	checkpoint := checkpointCode(fuelGlobal, refillFunc)
	// The table section's place in out, to take it out if no one uses
	// its tables (known only once the code has been read), and the
	// entries of its tables, at least and at most.
	var tableAt, tableEnd int
	var tablesMin, tablesMax uint64
	var dataSegments uint64 // in the output

	out := append(make([]byte, 0, outputSize(len(bin), m.definedFuncs)), bin[:8]...)
	need := map[byte]bool{secType: newTypes > 0, secFunction: true, secGlobal: true, secExport: true, secCode: true}
	emitted := map[byte]bool{}
	emitNew := func(upTo int) {
		for _, id := range []byte{secType, secFunction, secGlobal, secExport, secCode} {
			if need[id] && !emitted[id] && rank(id) < upTo {
				emitted[id] = true
				var body []byte
				switch id {
				case secType:
					body = addTypes(appendU32(nil, newTypes))
				case secFunction:
					body = addFuncs(appendU32(nil, addedFuncs))
				case secGlobal:
					body = addGlobals(appendU32(nil, 2))
				case secExport:
					body = addExports(appendU32(nil, exportCount))
				case secCode:
					body = depth.appendBodies(appendU32(nil, addedFuncs), uint32(m.guestRequest))
				}
				out = appendSection(out, id, body)
			}
		}
	}
	for _, s := range m.sections {
		if s.id != secCustom {
			emitNew(rank(s.id))
		}
		body := s.body
		switch s.id {
		case secType:
			if newTypes > 0 {
				body, err = appendToVectorN(body, newTypes, addTypes)
			}
		case secFunction:
			body, err = appendToVectorN(body, addedFuncs, addFuncs)
		case secGlobal:
			body, err = appendToVectorN(body, 2, addGlobals)
		case secExport:
			body, err = appendToVectorN(body, exportCount, addExports)
		case secMemory:
			body, err = capMemory(body, opts.MaxMemoryPages)
		case secTable:
			body, err = capTables(body, cmp.Or(opts.MaxTableEntries, DefaultMaxTableEntries))
			tableAt = len(out)
			tablesMin, tablesMax = tableSizes(body)
		case secCode:
			body, err = rewriteCode(m, body, checkpoint, depth, &facts)
		case secData:
			if opts.MemoryImage {
				stripped, img, keep, ok := extractImage(m, body)
				if ok {
					res.Memory = img
					if !keep {
						continue
					}
					body = stripped
					break
				}
			}
			if !opts.NoCoalesce {
				body = coalesceData(m, body)
			}
		}
		if err != nil {
			return res, err
		}
		emitted[s.id] = true
		out = appendSection(out, s.id, body)
		if s.id == secTable {
			tableEnd = len(out)
		}
		if s.id == secData {
			// The segments wazero will see: merged, or fewer with an
			// image (none if the section went: continue above).
			r := reader{b: body}
			n, _ := r.u32()
			dataSegments = uint64(n)
		}
	}
	emitNew(1 << 30)
	if tableEnd > 0 && unusedTables(m, &facts) {
		out = slices.Delete(out, tableAt, tableEnd)
		tablesMin, tablesMax = 0, 0
	}
	tables := tablesMin * TableEntryBytes
	if facts.tableGrow {
		tables = tablesMax * GrownTableEntryBytes
	}
	globals := uint64(m.definedGlobals) + 2 // the fuel and depth globals
	res.InstanceBytes = int64(tables + ck.elemEntries*ElementEntryBytes +
		(ck.elemSegments+dataSegments)*SegmentBytes +
		(max(globals, FreeGlobals)-FreeGlobals)*GlobalBytes)
	res.Module = out
	if opts.ExportGlobals {
		res.Snapshot.Refused = snapshotRefusal(m, &facts)
	}
	if res.Snapshot.Refused != "" {
		res.Snapshot.Globals = nil
	}
	return res, nil
}

func checkpointCode(fuel, refill uint32) []byte {
	return appendAddGlobal(appendRefillIfEmpty(nil, fuel, refill), fuel, opSub, 1)
}

// appendRefillIfEmpty appends the checkpoint's test: if the fuel is zero,
// call the refill function.
func appendRefillIfEmpty(b []byte, fuel, refill uint32) []byte {
	b = append(b, 0x23) // global.get
	b = appendU32(b, fuel)
	b = append(b, 0x45, 0x04, 0x40, 0x10) // i32.eqz; if (empty); call
	b = appendU32(b, refill)
	return append(b, 0x0B) // end
}

// i32.add and i32.sub, for appendAddGlobal.
const (
	opAdd = 0x6A
	opSub = 0x6B
)

// appendAddGlobal appends global = global op n, for an i32 global.
func appendAddGlobal(b []byte, global uint32, op byte, n int64) []byte {
	b = append(b, 0x23) // global.get
	b = appendU32(b, global)
	b = append(b, 0x41) // i32.const
	b = appendS64(b, n)
	b = append(b, op, 0x24) // op; global.set
	return appendU32(b, global)
}

func appendVoidType(b []byte) []byte { return append(b, 0x60, 0x00, 0x00) }

func appendFuelGlobal(b []byte, initial int32) []byte {
	b = append(b, 0x7F, 0x01, 0x41) // i32, mutable; init: i32.const
	b = appendS64(b, int64(initial))
	return append(b, 0x0B)
}

func appendGlobalExport(b []byte, name string, global uint32) []byte {
	b = appendU32(b, uint32(len(name)))
	b = append(b, name...)
	b = append(b, 0x03) // global
	return appendU32(b, global)
}

func appendFuelExport(b []byte, global uint32) []byte {
	b = appendU32(b, uint32(len(FuelExport)))
	b = append(b, FuelExport...)
	b = append(b, 0x03) // global
	return appendU32(b, global)
}

// appendRefillBody appends the refill function's body: one code entry,
// __guest_request(RefillPtr, RefillPtr).
func appendRefillBody(b []byte, guestRequest uint32) []byte {
	return appendRequestBody(b, guestRequest, 0x7F, false)
}

// appendRequestBody appends the body of a function that calls
// __guest_request with a sentinel: the operation pointer -1 or -2 (opPtr,
// its one-byte LEB), the payload pointer RefillPtr; with trap, an
// unreachable follows, for a host that returns.
func appendRequestBody(b []byte, guestRequest uint32, opPtr byte, trap bool) []byte {
	body := []byte{0x00, 0x41, opPtr, 0x41, 0x7F, 0x10} // no locals; i32.const op; i32.const -1; call
	body = appendU32(body, guestRequest)
	if trap {
		body = append(body, 0x00) // unreachable
	}
	body = append(body, 0x0B)
	b = appendU32(b, uint32(len(body)))
	return append(b, body...)
}

func appendSection(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = appendU32(out, uint32(len(body)))
	return append(out, body...)
}

// appendToVectorN bumps the count of a vector section body by k and
// appends k elements after its last (elems appends them all).
func appendToVectorN(body []byte, k uint32, elems func([]byte) []byte) ([]byte, error) {
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if uint64(n)+uint64(k) > 1<<32-1 {
		return nil, fail("vector of %d elements overflows", n)
	}
	out := appendU32(nil, n+k)
	out = append(out, body[r.pos:]...)
	return elems(out), nil
}

func parse(bin []byte) (*module, error) {
	if len(bin) < 8 || !bytes.Equal(bin[:4], []byte("\x00asm")) {
		return nil, fail("not a WASM binary")
	}
	if !bytes.Equal(bin[4:8], []byte{1, 0, 0, 0}) {
		return nil, fail("WASM binary version %x", bin[4:8])
	}
	m := &module{voidType: -1, chargeType: -1, guestRequest: -1, exportNames: map[string]bool{}}
	r := reader{b: bin, pos: 8}
	last := 0
	for !r.done() {
		id, body, err := nextSection(&r, &last)
		if err != nil {
			return nil, err
		}
		m.sections = append(m.sections, section{id: id, body: body})
		sr := reader{b: body}
		switch id {
		case secType:
			err = m.parseTypes(&sr)
		case secImport:
			err = m.parseImports(&sr)
		case secFunction:
			err = m.parseFunctions(&sr)
		case secGlobal:
			err = m.parseGlobals(&sr)
		case secElement:
			m.hasElements = true
		case secStart:
			m.hasStart = true
		case secExport:
			err = m.parseExports(&sr)
		}
		if err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *module) parseTypes(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	if uint64(n) > uint64(len(r.b)-r.pos)/3 { // three bytes at least each
		return fail("%d types declared in %d bytes", n, len(r.b)-r.pos)
	}
	m.types = make([]funcType, n)
	for i := uint32(0); i < n; i++ {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fail("type %d has form 0x%x (only function types are supported)", i, form)
		}
		np, err := r.u32()
		if err != nil {
			return err
		}
		params, err := r.bytes(int(np))
		if err != nil {
			return err
		}
		nr, err := r.u32()
		if err != nil {
			return err
		}
		res, err := r.bytes(int(nr))
		if err != nil {
			return err
		}
		m.types[i] = funcType{params: string(params), results: string(res)}
		if np == 0 && nr == 0 && m.voidType < 0 {
			m.voidType = int64(i)
		}
		if string(params) == "\x7f" && string(res) == "\x7f" && m.chargeType < 0 {
			m.chargeType = int64(i)
		}
	}
	return nil
}

func (m *module) parseImports(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		mod, err := r.name()
		if err != nil {
			return err
		}
		name, err := r.name()
		if err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00: // function
			if _, err := r.u32(); err != nil {
				return err
			}
			if mod == "wapc" && name == "__guest_request" {
				m.guestRequest = int64(m.importedFuncs)
			}
			m.importedFuncs++
		case 0x01, 0x02, 0x03:
			// nola's host provides functions only: a guest defines its
			// own memory, tables and globals.
			return fail("import %q.%q is a %s; only functions can be imported", mod, name, [...]string{"", "table", "memory", "global"}[kind])
		default:
			return fail("import %q.%q of kind %d", mod, name, kind)
		}
	}
	return nil
}

func (m *module) parseExports(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		name, err := r.name()
		if err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		if _, err := r.u32(); err != nil {
			return err
		}
		m.exportNames[name] = true
		m.exportsTable = m.exportsTable || kind == 0x01
	}
	return nil
}

// checkData refuses active data segments that lie outside the initial
// memory: instantiation would fail on every activation (wazero checks them
// only then). Only constant offsets (i32.const) can be checked; a module
// with any other offset expression is left to instantiation.
func checkData(m *module) error {
	var mem, data []byte
	for _, s := range m.sections {
		switch s.id {
		case secMemory:
			mem = s.body
		case secData:
			data = s.body
		}
	}
	if data == nil {
		return nil
	}
	var size uint64 // bytes of memory 0 at instantiation
	if mem != nil {
		r := reader{b: mem}
		if n, err := r.u32(); err != nil || n == 0 {
			return err
		}
		if _, err := r.u32(); err != nil { // flags
			return err
		}
		lo, err := r.u32()
		if err != nil {
			return err
		}
		size = uint64(lo) << 16
	}
	r := reader{b: data}
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		switch flags {
		case 1: // passive: placed by memory.init, checked then
			if err := skipVec(&r); err != nil {
				return err
			}
			continue
		case 2:
			if _, err := r.u32(); err != nil { // memory index
				return err
			}
		case 0:
		default:
			return fail("data segment %d has flags %d", i, flags)
		}
		op, err := r.byte()
		if err != nil {
			return err
		}
		if op != 0x41 { // not i32.const: cannot evaluate here
			return nil
		}
		off, err := r.s32()
		if err != nil {
			return err
		}
		if end, err := r.byte(); err != nil || end != 0x0B {
			return nil // an extended constant expression
		}
		length, err := r.u32()
		if err != nil {
			return err
		}
		if uint64(uint32(off))+uint64(length) > size {
			return fail("data segment %d (%d bytes at %d) lies outside the initial memory of %d bytes", i, length, uint32(off), size)
		}
		if _, err := r.bytes(int(length)); err != nil {
			return err
		}
	}
	return nil
}

// skipVec skips a byte vector.
func skipVec(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	_, err = r.bytes(int(n))
	return err
}

// capMemory lowers the declared maximum of defined memories to maxPages.
func capMemory(body []byte, maxPages uint32) ([]byte, error) {
	if maxPages == 0 {
		return body, nil
	}
	return capVector(body, "memory", "pages", maxPages, 0)
}

// capTables lowers the declared maximum of every table to maxEntries (and
// gives one to tables that have none), so that table.grow fails in the
// guest beyond it; a table whose minimum exceeds it is rejected.
func capTables(body []byte, maxEntries uint32) ([]byte, error) {
	return capVector(body, "table", "entries", maxEntries, 1)
}

// tableSizes sums the minimum and maximum entries of a table section as
// capTables wrote it (every table with a maximum).
func tableSizes(capped []byte) (lo, hi uint64) {
	r := reader{b: capped}
	n, _ := r.u32()
	for range n {
		_, _ = r.byte() // reference type
		_, _ = r.u32()  // flags: 1
		l, _ := r.u32()
		h, _ := r.u32()
		lo, hi = lo+uint64(l), hi+uint64(h)
	}
	return lo, hi
}

// capVector rewrites a memory or table section: each entry is prefix bytes
// (a table's reference type) and limits, whose maximum becomes
// min(declared, limit) — declared, so that growing fails in the guest.
func capVector(body []byte, what, unit string, limit uint32, prefix int) ([]byte, error) {
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	out := appendU32(nil, n)
	for i := uint32(0); i < n; i++ {
		pre, err := r.bytes(prefix)
		if err != nil {
			return nil, err
		}
		flags, err := r.u32()
		if err != nil {
			return nil, err
		}
		if flags&^1 != 0 {
			return nil, fail("%s %d has flags 0x%x (shared or 64-bit ones are not supported)", what, i, flags)
		}
		lo, err := r.u32()
		if err != nil {
			return nil, err
		}
		hi := limit
		if flags&1 != 0 {
			if hi, err = r.u32(); err != nil {
				return nil, err
			}
			hi = min(hi, limit)
		}
		if lo > limit {
			return nil, fail("%s %d needs %d %s; the limit is %d", what, i, lo, unit, limit)
		}
		out = append(out, pre...)
		out = appendU32(out, 1) // flags: a maximum follows
		out = appendU32(out, lo)
		out = appendU32(out, hi)
	}
	if !r.done() {
		return nil, fail("trailing bytes in the %s section", what)
	}
	return out, nil
}

// unusedTables reports whether nothing can reach the module's tables: no
// instruction names one, no element segment fills or declares anything
// (ref.func needs one), none is exported (tables are never imported:
// parseImports). C guests' linkers emit an empty one-entry table whether
// or not the code calls indirectly, and wazero builds a table instance
// for it in every instance, ≈ 120 B of Go heap each (issue 16, item 7):
// such a table is taken out, which renumbers nothing.
func unusedTables(m *module, facts *codeFacts) bool {
	return !facts.tables && !m.hasElements && !m.exportsTable
}

// addedFuncs is the number of functions the rewrite appends: refill,
// overflow and the two charges.
const addedFuncs = 4

// outputSize estimates the rewritten size of n bytes holding funcs
// function bodies: a tenth more for the loops' checkpoints, and each
// function's entry and exit code (about 50 bytes).
func outputSize(n int, funcs uint32) int { return n + n/8 + 64*int(funcs) + 256 }

// rewriteCode inserts the checkpoints and the depth bound into every body
// of a code section and appends the refill and overflow functions' bodies.
func rewriteCode(m *module, body, checkpoint []byte, depth *depthPlan, facts *codeFacts) ([]byte, error) {
	r := reader{b: body}
	n, err := r.u32()
	if err != nil {
		return nil, err
	}
	if n != m.definedFuncs {
		return nil, fail("%d functions declared but %d bodies", m.definedFuncs, n)
	}
	out := make([]byte, 0, outputSize(len(body), n))
	out = appendU32(out, n+addedFuncs)
	var fn []byte
	for i := uint32(0); i < n; i++ {
		size, err := r.u32()
		if err != nil {
			return nil, err
		}
		code, err := r.bytes(int(size))
		if err != nil {
			return nil, err
		}
		params := uint32(len(m.types[m.funcTypes[i]].params)) // planDepth checked the index
		fn, err = rewriteBody(fn[:0], code, checkpoint, depth, int(i), params, facts)
		if err != nil {
			return nil, fmt.Errorf("function body %d: %w", i, err)
		}
		out = appendU32(out, uint32(len(fn)))
		out = append(out, fn...)
	}
	if !r.done() {
		return nil, fail("trailing bytes in the code section")
	}
	return depth.appendBodies(out, uint32(m.guestRequest)), nil
}

// rewriteBody rewrites one function body (see the package comment,
// depth.go and bulk.go): the fuel checkpoint and the depth bound at its
// entry, a checkpoint at the head of every loop, a charge before every
// bulk instruction, returns turned into branches to the wrapper block,
// the depth restored before tail calls and at the end.
func rewriteBody(out, code, checkpoint []byte, depth *depthPlan, fn int, params uint32, facts *codeFacts) ([]byte, error) {
	r := reader{b: code}
	groups, err := r.u32()
	if err != nil {
		return nil, err
	}
	locals := uint64(params)
	for g := uint32(0); g < groups; g++ {
		k, err := r.u32()
		if err != nil {
			return nil, err
		}
		locals += uint64(k)
		if _, err := r.valtype(); err != nil {
			return nil, err
		}
	}
	w := depth.weight(locals)
	out = append(out, code[:r.pos]...)
	out = append(out, checkpoint...)
	out = depth.entry(out, fn, w)
	copied := r.pos
	open := uint32(0) // blocks, loops and ifs open around the reader
	ended := false
	for !r.done() {
		if ended {
			return nil, fail("code after the function's end at offset %d", r.pos)
		}
		start := r.pos
		op, err := r.instr()
		if err != nil {
			return nil, err
		}
		facts.note(op, r.fc)
		switch op {
		case 0x02, 0x04: // block, if
			open++
		case 0x03: // loop: checkpoint at its head
			open++
			out = append(out, code[copied:r.pos]...)
			out = append(out, checkpoint...)
			copied = r.pos
		case 0x0B: // end
			if open == 0 {
				ended = true // the function's: now the wrapper block's
				break
			}
			open--
		case 0x0F: // return: a branch to the wrapper block
			out = append(out, code[copied:start]...)
			out = append(out, 0x0C) // br
			out = appendU32(out, open)
			copied = r.pos
		case 0x12, 0x13: // return_call, return_call_indirect
			out = append(out, code[copied:start]...)
			out = depth.exit(out, w)
			copied = start
		case 0xD2:
			// wazero v1.12's compiler allocates a function reference at
			// every execution and keeps it until the instance closes:
			// ~32 B per iteration of a loop, unbounded. (Element
			// segments' ref.func, evaluated once, is charged in
			// InstanceBytes; compilers put function pointers there.)
			return nil, fail("ref.func in function code at offset %d is not supported (it allocates host memory at every execution)", start)
		case 0xFC:
			if charge, ok := depth.chargeFor(r.fc); ok { // fuel by length (bulk.go)
				out = append(out, code[copied:start]...)
				out = append(out, 0x10) // call
				out = appendU32(out, charge)
				copied = start
			}
		}
	}
	if !ended {
		return nil, fail("function body without its end")
	}
	out = append(out, code[copied:]...)
	out = depth.exit(out, w)
	return append(out, 0x0B), nil
}

// reader decodes the binary format.
type reader struct {
	b   []byte
	pos int
	fc  uint32 // the sub-opcode of the last 0xFC instruction
}

func (r *reader) done() bool { return r.pos >= len(r.b) }

func (r *reader) byte() (byte, error) {
	if r.pos >= len(r.b) {
		return 0, fail("unexpected end at offset %d", r.pos)
	}
	c := r.b[r.pos]
	r.pos++
	return c, nil
}

func (r *reader) bytes(n int) ([]byte, error) {
	if n < 0 || n > len(r.b)-r.pos {
		return nil, fail("unexpected end: %d bytes wanted at offset %d of %d", n, r.pos, len(r.b))
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

func (r *reader) u32() (uint32, error) {
	var v uint64
	for shift := uint(0); shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint64(c&0x7F) << shift
		if c&0x80 == 0 {
			if v > 0xFFFFFFFF {
				return 0, fail("u32 overflow at offset %d", r.pos)
			}
			return uint32(v), nil
		}
	}
	return 0, fail("u32 too long at offset %d", r.pos)
}

// s32 reads a signed 32-bit LEB128 value.
func (r *reader) s32() (int32, error) {
	var v int64
	var shift uint
	for ; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= int64(c&0x7F) << shift
		if c&0x80 == 0 {
			if shift+7 < 64 && c&0x40 != 0 {
				v |= -1 << (shift + 7)
			}
			if v < -1<<31 || v > 1<<31-1 {
				return 0, fail("s32 overflow at offset %d", r.pos)
			}
			return int32(v), nil
		}
	}
	return 0, fail("s32 too long at offset %d", r.pos)
}

// sleb skips a signed LEB128 of at most maxBits bits.
func (r *reader) sleb(maxBits uint) error {
	for shift := uint(0); shift < maxBits+7; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return err
		}
		if c&0x80 == 0 {
			return nil
		}
	}
	return fail("signed LEB128 too long at offset %d", r.pos)
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	b, err := r.bytes(int(n))
	return string(b), err
}

func (r *reader) valtype() (byte, error) {
	t, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch t {
	case 0x7F, 0x7E, 0x7D, 0x7C, 0x7B, 0x70, 0x6F:
		return t, nil
	}
	return 0, fail("value type 0x%x", t)
}

func (r *reader) memarg() error {
	align, err := r.u32()
	if err != nil {
		return err
	}
	if align&0x40 != 0 { // multi-memory: a memory index follows
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	_, err = r.u32()
	return err
}

// instr skips one instruction and returns its opcode.
func (r *reader) instr() (byte, error) {
	op, err := r.byte()
	if err != nil {
		return 0, err
	}
	switch {
	case op == 0x00, op == 0x01, op == 0x05, op == 0x0B, op == 0x0F, op == 0x1A, op == 0x1B,
		op >= 0x45 && op <= 0xC4, op == 0xD1:
		return op, nil
	case op >= 0x02 && op <= 0x04: // block, loop, if: block type
		return op, r.sleb(33)
	case op == 0x0C, op == 0x0D, op == 0x10, op == 0x12, op == 0xD2,
		op >= 0x20 && op <= 0x26, op == 0x3F, op == 0x40:
		_, err = r.u32()
		return op, err
	case op == 0x0E: // br_table
		n, err := r.u32()
		if err != nil {
			return op, err
		}
		for i := uint64(0); i <= uint64(n); i++ {
			if _, err := r.u32(); err != nil {
				return op, err
			}
		}
		return op, nil
	case op == 0x11, op == 0x13: // call_indirect, return_call_indirect
		if _, err := r.u32(); err != nil {
			return op, err
		}
		_, err = r.u32()
		return op, err
	case op == 0x1C: // select t*
		n, err := r.u32()
		if err != nil {
			return op, err
		}
		for i := uint32(0); i < n; i++ {
			if _, err := r.valtype(); err != nil {
				return op, err
			}
		}
		return op, nil
	case op >= 0x28 && op <= 0x3E:
		return op, r.memarg()
	case op == 0x41:
		return op, r.sleb(32)
	case op == 0x42:
		return op, r.sleb(64)
	case op == 0x43:
		_, err = r.bytes(4)
		return op, err
	case op == 0x44:
		_, err = r.bytes(8)
		return op, err
	case op == 0xD0: // ref.null heaptype
		return op, r.sleb(33)
	case op == 0xFC:
		return op, r.prefixFC()
	case op == 0xFD:
		return op, r.prefixFD()
	case op == 0xFE:
		return op, r.prefixFE()
	}
	return op, fail("opcode 0x%02x at offset %d", op, r.pos-1)
}

func (r *reader) prefixFC() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	r.fc = sub
	n := 0
	switch {
	case sub <= 7:
	case sub == 9, sub == 11, sub == 13, sub == 15, sub == 16, sub == 17:
		n = 1
	case sub == 8, sub == 10, sub == 12, sub == 14:
		n = 2
	default:
		return fail("opcode 0xFC %d at offset %d", sub, r.pos)
	}
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

func (r *reader) prefixFD() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	switch {
	case sub <= 11, sub == 92, sub == 93:
		return r.memarg()
	case sub == 12, sub == 13:
		_, err = r.bytes(16)
		return err
	case sub >= 21 && sub <= 34:
		_, err = r.byte()
		return err
	case sub >= 84 && sub <= 91:
		if err := r.memarg(); err != nil {
			return err
		}
		_, err = r.byte()
		return err
	case sub <= 0x113:
		return nil
	}
	return fail("opcode 0xFD %d at offset %d", sub, r.pos)
}

func (r *reader) prefixFE() error {
	sub, err := r.u32()
	if err != nil {
		return err
	}
	if sub == 0x03 { // atomic.fence
		_, err = r.byte()
		return err
	}
	if sub > 0x4E {
		return fail("opcode 0xFE %d at offset %d", sub, r.pos)
	}
	return r.memarg()
}

func appendU32(b []byte, v uint32) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if v == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

func appendS64(b []byte, v int64) []byte {
	for {
		c := byte(v & 0x7F)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// nextSection reads the next section's header and body from r and checks
// that its ID is known and in order after the last non-custom section
// (whose rank *last holds, and which it updates).
func nextSection(r *reader, last *int) (id byte, body []byte, err error) {
	if id, err = r.byte(); err != nil {
		return 0, nil, err
	}
	size, err := r.u32()
	if err != nil {
		return 0, nil, err
	}
	if body, err = r.bytes(int(size)); err != nil {
		return 0, nil, fmt.Errorf("section %d: %w", id, err)
	}
	if id != secCustom {
		rk := rank(id)
		if rk == 0 {
			return 0, nil, fail("unknown section %d", id)
		}
		if rk <= *last {
			return 0, nil, fail("section %d out of order", id)
		}
		*last = rk
	}
	return id, body, nil
}
