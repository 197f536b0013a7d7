package instrument

import (
	"fmt"
	"strconv"
)

// GlobalExport prefixes the name under which Options.ExportGlobals exports
// a mutable global: GlobalExport + its index ("__nola_global_0").
const GlobalExport = "__nola_global_"

// Global is a mutable global the module defines, exported by
// Options.ExportGlobals.
type Global struct {
	Name  string // its export name (GlobalExport + Index)
	Index uint32 // its index in the module
	Type  byte   // its value type (0x7F i32, 0x7E i64, 0x7D f32, 0x7C f64, ...)
}

// Snapshot describes, for Options.ExportGlobals, whether the state of an
// instance is wholly its linear memory and Globals — so that a host may
// capture both after one instance's initialization and start later
// instances from that capture instead of initializing each.
//
// That holds when nothing else an instance owns can change: no start
// section (it would run again on the restored state), no instruction that
// changes a table or a segment's state (table.set, table.grow, table.fill,
// table.copy, table.init, elem.drop, memory.init, data.drop: tables then
// stay what the element segments made them, in every instance, and no
// segment is ever dropped), and every mutable global a number (a reference
// or vector global cannot be set from outside). Effects outside the
// instance — host calls — are for the host to detect.
type Snapshot struct {
	Globals []Global
	// Refused says why a snapshot would not be equivalent ("" if it
	// would).
	Refused string
}

func (m *module) parseGlobals(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	m.definedGlobals = n
	for i := uint32(0); i < n; i++ {
		t, err := r.valtype()
		if err != nil {
			return err
		}
		mut, err := r.byte()
		if err != nil {
			return err
		}
		if mut > 1 {
			return fail("global %d has mutability %d", i, mut)
		}
		for {
			op, err := r.instr()
			if err != nil {
				return err
			}
			if op == 0x0B {
				break
			}
		}
		if mut == 1 {
			m.mutableGlobals = append(m.mutableGlobals, Global{Name: GlobalExport + strconv.FormatUint(uint64(i), 10), Index: i, Type: t})
		}
	}
	return nil
}

// codeFacts collects what the code section does that a snapshot cannot
// capture.
type codeFacts struct {
	// first is the first such instruction met ("" if none).
	first string
	// tables: some instruction names a table (see unusedTables);
	// tableGrow: some instruction is table.grow.
	tables, tableGrow bool
}

// note records instruction op (sub: its 0xFC sub-opcode).
func (f *codeFacts) note(op byte, sub uint32) {
	switch {
	case op == 0x11, op == 0x13, op == 0x25, op == 0x26: // call_indirect, return_call_indirect, table.get, table.set
		f.tables = true
	case op == 0xFC && sub >= 12 && sub <= 17 && sub != 13: // table.init, .copy, .grow, .size, .fill (13: elem.drop)
		f.tables = true
		f.tableGrow = f.tableGrow || sub == 15
	}
	if f.first != "" {
		return
	}
	switch {
	case op == 0x26:
		f.first = "table.set"
	case op == 0xFC:
		if name, ok := stateOps[sub]; ok {
			f.first = name
		}
	}
}

// stateOps are the 0xFC instructions that change a table or a segment.
var stateOps = map[uint32]string{
	8: "memory.init", 9: "data.drop", 12: "table.init", 13: "elem.drop",
	14: "table.copy", 15: "table.grow", 17: "table.fill",
}

func snapshotRefusal(m *module, facts *codeFacts) string {
	if m.hasStart {
		return "the module has a start function"
	}
	if facts.first != "" {
		return "its code uses " + facts.first
	}
	for _, g := range m.mutableGlobals {
		switch g.Type {
		case 0x7F, 0x7E, 0x7D, 0x7C:
		default:
			return fmt.Sprintf("mutable global %d has type 0x%02x", g.Index, g.Type)
		}
	}
	return ""
}
