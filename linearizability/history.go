// Package linearizability records client histories of nola actors and checks
// them against sequential models with porcupine.
//
// A history is a list of operations, each a call and a return on one object
// (an actor, or one key of an actor's KV) with timestamps from one clock
// (virtual time under simulation, a monotonic clock on real processes) and
// the client that made it. An operation whose outcome the client could not
// learn — a timeout, a cut connection, any error that does not prove the
// operation did not run — is recorded as indeterminate, as Jepsen does: it
// may or may not have taken effect, at any instant after its call. It is
// never dropped and never assumed. An operation that certainly did not run
// (a retryable error) carries no information and is left out of the check.
// A simulator, which sees when an operation took effect, may bound that
// window (Op.Onset, Op.Horizon); the models keep allowing "it did not
// happen", so the bound narrows the search without deciding the outcome.
//
// The models (see models.go):
//   - CounterWithReset, for in-memory actors: "inc" returns the value before
//     incrementing, and the counter may restart from zero between any two
//     operations (a new activation starts from fresh memory);
//   - Counter, for a counter kept in an actor's durable KV: "inc" returns
//     the new value, "get" the current one; it never resets;
//   - Register, for one key of an actor's KV: "put" and "get", never reset.
//
// Check partitions a history by object (linearizability is local: a history
// is linearizable iff every object's sub-history is), checks each partition
// with its model under a time budget, and keeps what porcupine needs to draw
// any partition as a self-contained HTML page.
package linearizability

import (
	"fmt"
	"slices"
	"strings"
)

// Kind selects the model an object's operations are checked against.
type Kind string

// The models.
const (
	// CounterWithReset: in-memory counter. "inc" → the value before the
	// increment; "get" → the value. Resets to 0 are allowed anywhere.
	CounterWithReset Kind = "counter-with-reset"
	// Counter: durable counter. "inc" → the value after the increment;
	// "get" → the value. Starts at 0 and never resets.
	Counter Kind = "counter"
	// Register: one key of a durable map. "put" with Arg → "ok"; "get" →
	// the value (Found false when absent). Starts absent, never resets.
	Register Kind = "register"
	// Unchecked: recorded for the record (and the HTML pages) only.
	Unchecked Kind = "unchecked"
)

// Op is one operation of a history.
type Op struct {
	// Client identifies the caller (zero-based: porcupine draws one row
	// per client).
	Client int
	// Object is the partition the operation belongs to: an actor ID, or
	// actor ID + "/" + key for a map. Every operation of one object must
	// have the same Kind.
	Object string
	Kind   Kind
	// Name is the operation ("inc", "get", "put"); Arg its argument.
	Name string
	Arg  string
	// Value and Found are the result; meaningless when Indeterminate.
	Value string
	Found bool
	// Call and Return are timestamps on the history's clock. For an
	// indeterminate operation Return is ignored: it may take effect at
	// any time after Call.
	Call, Return int64
	// Indeterminate marks an operation whose outcome is unknown.
	Indeterminate bool
	// Onset and Horizon, for an indeterminate operation, bound when it
	// can have taken effect — not before Onset, not after Horizon — when
	// something with a full view of the system knows it: a simulator that
	// saw every instant the operation changed something. Zero leaves that
	// side unbounded (all a client knows: after its call, at any time).
	// They narrow where the checker may place the operation; they never
	// decide whether it happened.
	Onset, Horizon int64
	// Info is shown in the visualization (the error, the server…).
	Info string
}

func (o Op) String() string {
	res := o.Value
	switch {
	case o.Indeterminate:
		res = "?"
	case o.Kind == Register && o.Name == "get" && !o.Found:
		res = "∅"
	}
	arg := ""
	if o.Arg != "" {
		arg = o.Arg
	}
	return fmt.Sprintf("c%d %s.%s(%s) -> %s [%d, %d]", o.Client, o.Object, o.Name, arg, res, o.Call, o.Return)
}

// History collects operations. The zero value is ready to use. It is not
// safe for concurrent use: under simulation only one task runs at a time;
// real-process recorders must lock around it.
type History struct {
	ops []Op
	// skipped counts operations that certainly did not run.
	skipped int
}

// Pending is a call whose return has not been recorded yet.
type Pending struct {
	h *History
	i int
}

// Call records the start of an operation at time now.
func (h *History) Call(client int, object string, kind Kind, name, arg string, now int64) Pending {
	h.ops = append(h.ops, Op{Client: client, Object: object, Kind: kind, Name: name, Arg: arg, Call: now, Indeterminate: true})
	return Pending{h: h, i: len(h.ops) - 1}
}

// ID identifies the operation within its history (see History.SetHorizon).
func (p Pending) ID() int { return p.i }

// SetEffectWindow records when operation id can have taken effect (see
// Op.Onset and Op.Horizon).
func (h *History) SetEffectWindow(id int, onset, horizon int64) {
	h.ops[id].Onset, h.ops[id].Horizon = onset, horizon
}

// Get returns operation id as recorded so far.
func (h *History) Get(id int) Op { return h.ops[id] }

// Len returns the number of operations recorded, including those that did
// not run.
func (h *History) Len() int { return len(h.ops) }

// Ok records a successful return with its result.
func (p Pending) Ok(value string, found bool, now int64, info string) {
	op := &p.h.ops[p.i]
	op.Value, op.Found, op.Return, op.Indeterminate, op.Info = value, found, now, false, info
}

// Indeterminate records a return whose outcome is unknown.
func (p Pending) Indeterminate(now int64, info string) {
	op := &p.h.ops[p.i]
	op.Return, op.Indeterminate, op.Info = now, true, info
}

// Failed records a return that proves the operation did not take effect:
// it is removed from the history (it constrains nothing).
func (p Pending) Failed(now int64, info string) {
	op := &p.h.ops[p.i]
	op.Return, op.Info = now, "did not run: "+info
	op.Kind = "" // marks it for removal in Ops
	p.h.skipped++
}

// Ops returns the recorded operations, without those that did not run.
// Operations still pending (never returned) are indeterminate.
func (h *History) Ops() []Op {
	out := make([]Op, 0, len(h.ops)-h.skipped)
	for _, o := range h.ops {
		if o.Kind != "" {
			out = append(out, o)
		}
	}
	return out
}

// Skipped returns how many operations certainly did not run.
func (h *History) Skipped() int { return h.skipped }

// Add appends a complete operation (for histories built by hand).
func (h *History) Add(op Op) { h.ops = append(h.ops, op) }

// Partition groups ops by object, objects in name order, each partition in
// call order.
func Partition(ops []Op) map[string][]Op {
	out := map[string][]Op{}
	for _, o := range ops {
		out[o.Object] = append(out[o.Object], o)
	}
	for _, p := range out {
		slices.SortStableFunc(p, func(a, b Op) int {
			switch {
			case a.Call < b.Call:
				return -1
			case a.Call > b.Call:
				return 1
			}
			return 0
		})
	}
	return out
}

// Objects returns the keys of a partition map in order.
func Objects(parts map[string][]Op) []string {
	keys := make([]string, 0, len(parts))
	for k := range parts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// Format renders ops one a line, for logs.
func Format(ops []Op) string {
	var b strings.Builder
	for _, o := range ops {
		b.WriteString(o.String())
		if o.Info != "" {
			b.WriteString("  ")
			b.WriteString(o.Info)
		}
		b.WriteByte('\n')
	}
	return b.String()
}
