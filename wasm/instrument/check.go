package instrument

import (
	"errors"
	"fmt"
)

// ErrLimit is returned (wrapped) by Check for a well-formed module that
// exceeds one of nola's limits (Limits): too many functions, locals, …
var ErrLimit = errors.New("instrument: module exceeds a limit")

// Limits bound what Check accepts. They exist because a decoder allocates
// in proportion to what a module declares, often before it has read the
// bytes that back the declaration; each limit caps one such allocation
// (see Check for the list). Zero fields take the defaults (DefaultLimits).
type Limits struct {
	// MaxTypes bounds the function types (wazero: ~100 B each).
	MaxTypes uint32
	// MaxFunctions bounds imported plus defined functions (each costs
	// wazero a few hundred bytes at compile time, machine code aside).
	MaxFunctions uint32
	// MaxImports and MaxExports bound the import and export vectors.
	MaxImports, MaxExports uint32
	// MaxGlobals bounds the defined globals.
	MaxGlobals uint32
	// MaxTables bounds the tables. (Their sizes cost nothing to compile;
	// Fuel caps them for instantiation: Options.MaxTableEntries.)
	MaxTables uint32
	// MaxElementSegments bounds the element segments, MaxElementEntries
	// their entries in total (wazero: ~50 B each at compile time, 8 B per
	// instance).
	MaxElementSegments, MaxElementEntries uint32
	// MaxDataSegments bounds the data segments (their bytes are bounded
	// by the module's size).
	MaxDataSegments uint32
	// MaxParams and MaxResults bound a function type's parameters and
	// results. Results matter: a 2-byte call (or block) pushes all of
	// them on the validator's stack, ~40 B each with the error message
	// that lists them when the function does not validate.
	MaxParams, MaxResults uint32
	// MaxFunctionBytes bounds one function body; the validator's and
	// compiler's per-function state grows with it.
	MaxFunctionBytes uint32
	// MaxLocals bounds one function's declared locals, MaxTotalLocals
	// the module's: a local costs nothing in the binary (one group
	// declares 2^32 of them in 6 bytes) but ~70 B in wazero.
	MaxLocals, MaxTotalLocals uint64
}

// DefaultLimits are the limits of a zero Limits: well above what the Go
// and C guests need (a Go guest of ~2.6 MiB has ~1,800 functions and as
// many element entries, 8 globals, ~31,000 data segments, at most 17
// locals per function and ~7,000 in all, its largest body ~29 KiB; a
// test checks they pass a quarter of every limit), and low enough that
// compiling a module costs memory roughly proportional to its size (see
// wasm/modules.Validate for the figures).
func DefaultLimits() Limits {
	return Limits{
		MaxTypes:           1 << 15,
		MaxFunctions:       1 << 16,
		MaxImports:         1 << 10,
		MaxExports:         1 << 14,
		MaxGlobals:         1 << 16,
		MaxTables:          16,
		MaxElementSegments: 1 << 14,
		MaxElementEntries:  1 << 18,
		MaxDataSegments:    1 << 18,
		MaxParams:          1000,
		MaxResults:         4,
		MaxFunctionBytes:   1 << 20,
		MaxLocals:          50_000,
		MaxTotalLocals:     1 << 18,
	}
}

// Instrumented returns l raised by what Fuel adds to a module (four
// functions, two globals, an export, two types and the wrapper blocks'),
// for checking Fuel's output.
func (l Limits) Instrumented() Limits {
	l = l.withDefaults()
	l.MaxTypes = 2*l.MaxTypes + 2 // void, (i32) -> i32; a block type per type at most
	l.MaxFunctions += addedFuncs
	l.MaxGlobals += 2
	l.MaxExports++
	return l
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	or := func(v *uint32, def uint32) {
		if *v == 0 {
			*v = def
		}
	}
	or(&l.MaxTypes, d.MaxTypes)
	or(&l.MaxFunctions, d.MaxFunctions)
	or(&l.MaxImports, d.MaxImports)
	or(&l.MaxExports, d.MaxExports)
	or(&l.MaxGlobals, d.MaxGlobals)
	or(&l.MaxTables, d.MaxTables)
	or(&l.MaxElementSegments, d.MaxElementSegments)
	or(&l.MaxElementEntries, d.MaxElementEntries)
	or(&l.MaxDataSegments, d.MaxDataSegments)
	or(&l.MaxParams, d.MaxParams)
	or(&l.MaxResults, d.MaxResults)
	or(&l.MaxFunctionBytes, d.MaxFunctionBytes)
	if l.MaxLocals == 0 {
		l.MaxLocals = d.MaxLocals
	}
	if l.MaxTotalLocals == 0 {
		l.MaxTotalLocals = d.MaxTotalLocals
	}
	return l
}

func overLimit(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrLimit}, args...)...)
}

// Check walks every section of bin and checks every declared count and
// size against the bytes present and against l, without allocating in
// proportion to anything declared. It accepts a subset of what wazero
// v1.12 decodes (MVP plus the bulk-memory, reference-types, multi-value,
// SIMD and sign-extension encodings wazero enables by default; no GC,
// exception-handling, threads or extended-const encodings), parsing each
// structure exactly as wazero's decoder does, so that wazero only ever
// reads a count that Check has bounded. Errors wrap ErrUnsupported
// (malformed, or an encoding nola does not take) or ErrLimit.
//
// wazero's decoder (internal/wasm/binary) allocates from a declared count
// or size at these places, each bounded here by the bytes present (count
// ≤ remaining bytes / minimum encoded size of one element) and by l:
//
//	decodeUTF8 (value.go)          make([]byte, size) for every name:
//	                               custom section, import, export, name map
//	decodeValueTypes (value.go)    make([]ValueType, 0, n): params, results
//	                               (MaxParams, MaxResults)
//	decodeImportSection            make([]Import, n) (MaxImports)
//	decodeFunctionSection          make([]uint32, n) (MaxFunctions)
//	decodeTableSection             make([]Table, n) (MaxTables)
//	decodeGlobalSection            make([]Global, n) (MaxGlobals) — the
//	                               23-byte module of issue 10
//	decodeExportSection            make(map, n) and make([]Export, n)
//	                               (MaxExports)
//	decodeElementSection           make([]ElementSegment, n)
//	                               (MaxElementSegments)
//	decodeElementInitValueVector,  make([]ConstantExpression, n)
//	decodeElementConstExprVector   (MaxElementEntries in total)
//	decodeCodeSection              make([]Code, n) (= function count)
//	decodeCode (code.go)           make([]ValueType, 0, Σlocals)
//	                               (MaxLocals, MaxTotalLocals) and
//	                               make([]byte, body size) (MaxFunctionBytes)
//	decodeDataSection              make([]DataSegment, n) (MaxDataSegments)
//	decodeDataSegment (data.go)    make([]byte, size)
//	decodeTagSection               make([]Tag, n): tags are refused
//	decodeCustomSection            make([]byte, section size)
//	decodeFunctionNames,           make(NameMap, n), per function
//	decodeLocalNames (names.go)    make(NameMap, n) (MaxFunctions,
//	                               MaxLocals+MaxParams, MaxTotalLocals)
//	decodeConstantExpression       fixed 4, 8 and 16 bytes; the expression
//	                               itself (bounded by the bytes)
//
// The type section grows by append (bounded by the bytes, and MaxTypes),
// as do the validator's br_table targets (the interpreter's make for them
// runs after validation has read every target). After decoding, wazero's
// validator and compilers allocate per function, per local and per value
// pushed on their stacks; MaxFunctions, MaxTotalLocals, MaxFunctionBytes
// and MaxResults bound those. At instantiation wazero allocates tables at
// their minimum size and memory at its minimum: Fuel caps both
// (Options.MaxTableEntries, MaxMemoryPages).
func Check(bin []byte, l Limits) error {
	_, err := check(bin, l)
	return err
}

// check is Check, returning what it counted.
func check(bin []byte, l Limits) (*checker, error) {
	l = l.withDefaults()
	if len(bin) < 8 || string(bin[:4]) != "\x00asm" {
		return nil, fail("not a WASM binary")
	}
	if string(bin[4:8]) != "\x01\x00\x00\x00" {
		return nil, fail("WASM binary version %x", bin[4:8])
	}
	c := &checker{l: l}
	r := reader{b: bin, pos: 8}
	last := 0
	for !r.done() {
		id, body, err := nextSection(&r, &last)
		if err != nil {
			return nil, err
		}
		sr := &reader{b: body}
		if err := c.section(id, sr); err != nil {
			return nil, fmt.Errorf("section %d: %w", id, err)
		}
		if !sr.done() {
			return nil, fail("section %d: %d trailing bytes", id, len(body)-sr.pos)
		}
	}
	if c.codes != c.definedFuncs {
		return nil, fail("%d functions declared but %d bodies", c.definedFuncs, c.codes)
	}
	return c, nil
}

// checker accumulates what later sections are checked against.
type checker struct {
	l              Limits
	importedFuncs  uint32
	definedFuncs   uint32
	codes          uint32
	elemEntries    uint64
	elemSegments   uint64
	totalLocals    uint64
	totalLocalName uint64
}

func (c *checker) section(id byte, r *reader) error {
	switch id {
	case secCustom:
		return c.custom(r)
	case secType:
		return c.types(r)
	case secImport:
		return c.imports(r)
	case secFunction:
		n, err := r.count(1, "function", c.l.MaxFunctions-min(c.l.MaxFunctions, c.importedFuncs))
		if err != nil {
			return err
		}
		c.definedFuncs = n
		for range n {
			if _, err := r.u32(); err != nil {
				return err
			}
		}
		return nil
	case secTable:
		n, err := r.count(3, "table", c.l.MaxTables)
		if err != nil {
			return err
		}
		for range n {
			if err := c.table(r); err != nil {
				return err
			}
		}
		return nil
	case secMemory:
		n, err := r.count(2, "memory", 1)
		if err != nil {
			return err
		}
		for range n {
			if _, _, err := r.limits(); err != nil {
				return err
			}
		}
		return nil
	case secGlobal:
		// valtype, mutability, an expression of at least op and end.
		n, err := r.count(4, "global", c.l.MaxGlobals)
		if err != nil {
			return err
		}
		for range n {
			if err := r.globalType(); err != nil {
				return err
			}
			if err := r.constExpr(); err != nil {
				return err
			}
		}
		return nil
	case secExport:
		// name length, kind, index.
		n, err := r.count(3, "export", c.l.MaxExports)
		if err != nil {
			return err
		}
		for range n {
			if err := skipVec(r); err != nil {
				return err
			}
			kind, err := r.byte()
			if err != nil {
				return err
			}
			if kind > 3 {
				return fail("export of kind %d", kind)
			}
			if _, err := r.u32(); err != nil {
				return err
			}
		}
		return nil
	case secStart, secDataCount:
		_, err := r.u32()
		return err
	case secElement:
		return c.elements(r)
	case secCode:
		return c.code(r)
	case secData:
		return c.data(r)
	case secTag:
		return fail("tag section (exception handling is not supported)")
	}
	return fail("unknown section %d", id)
}

// count reads a vector's length and checks it against the bytes left
// (each element takes at least minSize bytes) and against limit.
func (r *reader) count(minSize int, what string, limit uint32) (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if left := len(r.b) - r.pos; uint64(n)*uint64(minSize) > uint64(left) {
		return 0, fail("%d %s entries declared in %d bytes", n, what, left)
	}
	if n > limit {
		return 0, overLimit("%d %s entries; the limit is %d", n, what, limit)
	}
	return n, nil
}

func (c *checker) custom(r *reader) error {
	name, err := r.name()
	if err != nil {
		return err
	}
	if name != "name" {
		r.pos = len(r.b)
		return nil
	}
	// wazero decodes the name section's module, function and local names
	// (and skips other subsections); it reads each structure from the
	// whole module, so each subsection must hold exactly what it says.
	for !r.done() {
		sub, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		body, err := r.bytes(int(size))
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", sub, err)
		}
		sr := &reader{b: body}
		switch sub {
		case 0:
			err = skipVec(sr)
		case 1:
			err = c.nameMap(sr, "function name", c.l.MaxFunctions)
		case 2:
			err = c.localNames(sr)
		default:
			sr.pos = len(body)
		}
		if err != nil {
			return fmt.Errorf("name subsection %d: %w", sub, err)
		}
		if !sr.done() {
			return fail("name subsection %d: trailing bytes", sub)
		}
	}
	return nil
}

// nameMap checks a vector of (index, name): at least 2 bytes each.
func (c *checker) nameMap(r *reader, what string, limit uint32) error {
	n, err := r.count(2, what, limit)
	if err != nil {
		return err
	}
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
		if err := skipVec(r); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) localNames(r *reader) error {
	n, err := r.count(2, "local name map", c.l.MaxFunctions)
	if err != nil {
		return err
	}
	perFunc := uint32(min(c.l.MaxLocals+uint64(c.l.MaxParams), 1<<32-1))
	for range n {
		if _, err := r.u32(); err != nil {
			return err
		}
		start := r.pos
		m, err := r.count(2, "local name", perFunc)
		if err != nil {
			return err
		}
		if c.totalLocalName += uint64(m); c.totalLocalName > c.l.MaxTotalLocals {
			return overLimit("more than %d local names", c.l.MaxTotalLocals)
		}
		r.pos = start
		if err := c.nameMap(r, "local name", perFunc); err != nil {
			return err
		}
	}
	return nil
}

func (c *checker) types(r *reader) error {
	// form, parameter count, result count.
	n, err := r.count(3, "type", c.l.MaxTypes)
	if err != nil {
		return err
	}
	for i := range n {
		form, err := r.byte()
		if err != nil {
			return err
		}
		if form != 0x60 {
			return fail("type %d has form 0x%x (only function types are supported)", i, form)
		}
		for _, lim := range [2]struct {
			what  string
			limit uint32
		}{{"parameter", c.l.MaxParams}, {"result", c.l.MaxResults}} {
			m, err := r.count(1, lim.what, lim.limit)
			if err != nil {
				return fmt.Errorf("type %d: %w", i, err)
			}
			for range m {
				if _, err := r.valtype(); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (c *checker) imports(r *reader) error {
	// module and name lengths, kind, and at least one byte of description.
	n, err := r.count(4, "import", c.l.MaxImports)
	if err != nil {
		return err
	}
	for range n {
		if err := skipVec(r); err != nil {
			return err
		}
		if err := skipVec(r); err != nil {
			return err
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0x00:
			if _, err := r.u32(); err != nil {
				return err
			}
			if c.importedFuncs++; c.importedFuncs > c.l.MaxFunctions {
				return overLimit("more than %d functions", c.l.MaxFunctions)
			}
		case 0x01:
			err = c.table(r)
		case 0x02:
			_, _, err = r.limits()
		case 0x03:
			err = r.globalType()
		default:
			return fail("import of kind %d", kind)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// table checks a table type: reference type and limits.
func (c *checker) table(r *reader) error {
	t, err := r.byte()
	if err != nil {
		return err
	}
	if t != 0x70 && t != 0x6F {
		return fail("table of type 0x%x", t)
	}
	_, _, err = r.limits()
	return err
}

// limits reads limits with flags 0 (minimum) or 1 (minimum, maximum).
func (r *reader) limits() (lo uint32, hi int64, err error) {
	flags, err := r.byte()
	if err != nil {
		return 0, 0, err
	}
	if flags > 1 {
		return 0, 0, fail("limits flags 0x%x (shared or 64-bit ones are not supported)", flags)
	}
	if lo, err = r.u32(); err != nil {
		return 0, 0, err
	}
	hi = -1
	if flags == 1 {
		h, err := r.u32()
		if err != nil {
			return 0, 0, err
		}
		hi = int64(h)
	}
	return lo, hi, nil
}

func (r *reader) globalType() error {
	if _, err := r.valtype(); err != nil {
		return err
	}
	mut, err := r.byte()
	if err != nil {
		return err
	}
	if mut > 1 {
		return fail("global mutability 0x%x", mut)
	}
	return nil
}

// constExpr skips a constant expression, accepting the instructions
// wazero's decoder takes by default.
func (r *reader) constExpr() error {
	for {
		op, err := r.byte()
		if err != nil {
			return err
		}
		switch op {
		case 0x0B: // end
			return nil
		case 0x41: // i32.const
			_, err = r.s32()
		case 0x42: // i64.const
			err = r.sleb(64)
		case 0x43:
			_, err = r.bytes(4)
		case 0x44:
			_, err = r.bytes(8)
		case 0x23, 0xD2: // global.get, ref.func
			_, err = r.u32()
		case 0xD0: // ref.null
			var t byte
			if t, err = r.byte(); err == nil && t != 0x70 && t != 0x6F {
				err = fail("ref.null of type 0x%x", t)
			}
		case 0xFD: // v128.const: wazero reads the sub-opcode as one byte
			var sub byte
			if sub, err = r.byte(); err == nil {
				if sub != 0x0C {
					return fail("vector opcode 0x%x in a constant expression", sub)
				}
				_, err = r.bytes(16)
			}
		default:
			return fail("opcode 0x%02x in a constant expression", op)
		}
		if err != nil {
			return err
		}
	}
}

func (c *checker) elements(r *reader) error {
	// Shortest segment: flags 1, element kind, empty vector.
	n, err := r.count(3, "element segment", c.l.MaxElementSegments)
	if err != nil {
		return err
	}
	c.elemSegments = uint64(n)
	for i := range n {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		if flags > 7 {
			return fail("element segment %d has flags %d", i, flags)
		}
		if flags&3 == 2 { // explicit table index
			if _, err := r.u32(); err != nil {
				return err
			}
		}
		if flags&1 == 0 { // active: offset expression
			if err := r.constExpr(); err != nil {
				return err
			}
		}
		if flags&3 != 0 { // element kind (flags&4 == 0) or reference type
			t, err := r.byte()
			if err != nil {
				return err
			}
			if flags&4 == 0 && t != 0x00 {
				return fail("element segment %d has element kind 0x%x", i, t)
			}
			if flags&4 != 0 && t != 0x70 && t != 0x6F {
				return fail("element segment %d has reference type 0x%x", i, t)
			}
		}
		// Function indices take at least 1 byte, expressions 2.
		size := 1
		if flags&4 != 0 {
			size = 2
		}
		left := c.l.MaxElementEntries - uint32(min(c.elemEntries, uint64(c.l.MaxElementEntries)))
		m, err := r.count(size, "element", left)
		if err != nil {
			return fmt.Errorf("element segment %d: %w", i, err)
		}
		c.elemEntries += uint64(m)
		for range m {
			if flags&4 == 0 {
				_, err = r.u32()
			} else {
				err = r.constExpr()
			}
			if err != nil {
				return err
			}
		}
	}
	return nil
}

func (c *checker) code(r *reader) error {
	// size, local group count, end.
	n, err := r.count(3, "function body", c.l.MaxFunctions)
	if err != nil {
		return err
	}
	if n != c.definedFuncs {
		return fail("%d functions declared but %d bodies", c.definedFuncs, n)
	}
	c.codes = n
	for i := range n {
		size, err := r.u32()
		if err != nil {
			return err
		}
		body, err := r.bytes(int(size))
		if err != nil {
			return fmt.Errorf("function body %d: %w", i, err)
		}
		if size > c.l.MaxFunctionBytes {
			return overLimit("function body %d has %d bytes; the limit is %d", i, size, c.l.MaxFunctionBytes)
		}
		br := &reader{b: body}
		groups, err := br.count(2, "local group", 1<<32-1)
		if err != nil {
			return fmt.Errorf("function body %d: %w", i, err)
		}
		var locals uint64
		for range groups {
			k, err := br.u32()
			if err != nil {
				return err
			}
			if _, err := br.valtype(); err != nil {
				return err
			}
			if locals += uint64(k); locals > c.l.MaxLocals {
				return overLimit("function body %d declares more than %d locals", i, c.l.MaxLocals)
			}
		}
		if c.totalLocals += locals; c.totalLocals > c.l.MaxTotalLocals {
			return overLimit("the functions declare more than %d locals in total", c.l.MaxTotalLocals)
		}
		if br.done() {
			return fail("function body %d has no instructions", i)
		}
	}
	return nil
}

func (c *checker) data(r *reader) error {
	// Shortest segment: flags 1, empty vector.
	n, err := r.count(2, "data segment", c.l.MaxDataSegments)
	if err != nil {
		return err
	}
	for i := range n {
		flags, err := r.u32()
		if err != nil {
			return err
		}
		switch flags {
		case 0:
			err = r.constExpr()
		case 1:
		case 2:
			if _, err = r.u32(); err == nil {
				err = r.constExpr()
			}
		default:
			return fail("data segment %d has flags %d", i, flags)
		}
		if err != nil {
			return err
		}
		if err := skipVec(r); err != nil {
			return fmt.Errorf("data segment %d: %w", i, err)
		}
	}
	return nil
}
