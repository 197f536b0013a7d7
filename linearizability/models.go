package linearizability

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/anishathalye/porcupine"
)

// input and output are what porcupine passes to the models.
type input struct {
	name, arg string
}

type output struct {
	value   string
	found   bool
	unknown bool
}

func (o output) String() string {
	switch {
	case o.unknown:
		return "?"
	case !o.found:
		return "∅"
	}
	return o.value
}

func describe(in, out any) string {
	i, o := in.(input), out.(output)
	return fmt.Sprintf("%s(%s) → %s", i.name, i.arg, o)
}

// Model returns the porcupine model of kind k, or false for Unchecked and
// unknown kinds.
func Model(k Kind) (porcupine.Model, bool) {
	switch k {
	case CounterWithReset:
		return counterWithResetModel(), true
	case Counter:
		return counterModel(), true
	case Register:
		return registerModel(), true
	}
	return porcupine.Model{}, false
}

// counterWithResetModel is an in-memory counter that may be reset to zero
// between any two operations, because a fresh activation starts from fresh
// memory. Its state is the set of values the counter may hold (several,
// after an increment of unknown outcome: it happened on the current memory,
// or after a reset). Resets need no state of their own: an operation may
// always observe 0.
//
//	inc → v   allowed if v == 0 or v ∈ S;  S := {v+1}
//	inc → ?   S := {s+1 : s ∈ S} ∪ {1}
//	get → v   allowed if v == 0 or v ∈ S;  S := {v}
//	get → ?   S unchanged
func counterWithResetModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return []int64{0} },
		Step: func(state, in, out any) (bool, any) {
			s, i, o := state.([]int64), in.(input), out.(output)
			switch i.name {
			case "inc":
				if o.unknown {
					next := make([]int64, 0, len(s)+1)
					next = append(next, 1)
					for _, v := range s {
						next = append(next, v+1)
					}
					slices.Sort(next)
					return true, slices.Compact(next)
				}
				v, ok := parseInt(o)
				if !ok || (v != 0 && !slices.Contains(s, v)) {
					return false, s
				}
				return true, []int64{v + 1}
			case "get":
				if o.unknown {
					return true, s
				}
				v, ok := parseInt(o)
				if !ok || (v != 0 && !slices.Contains(s, v)) {
					return false, s
				}
				return true, []int64{v}
			}
			return false, s
		},
		Equal: func(a, b any) bool { return slices.Equal(a.([]int64), b.([]int64)) },
		Hash: func(state any) uint64 {
			h := uint64(14695981039346656037)
			for _, v := range state.([]int64) {
				h = (h ^ uint64(v)) * 1099511628211
			}
			return h
		},
		DescribeOperation: describe,
		DescribeState: func(state any) string {
			s := state.([]int64)
			parts := make([]string, len(s))
			for i, v := range s {
				parts[i] = strconv.FormatInt(v, 10)
			}
			return "n ∈ {" + strings.Join(parts, ",") + "} (or 0 after a reset)"
		},
	}
}

// counterModel is a durable counter: it starts at 0 and never resets.
//
//	inc → v   allowed if v == n+1;  n := v
//	inc → ?   n := n+1
//	get → v   allowed if v == n
//
// An indeterminate increment that did not happen is linearized after every
// other operation (its return is open), where it changes nothing observed.
func counterModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return int64(0) },
		Step: func(state, in, out any) (bool, any) {
			n, i, o := state.(int64), in.(input), out.(output)
			switch i.name {
			case "inc":
				if o.unknown {
					return true, n + 1
				}
				v, ok := parseInt(o)
				return ok && v == n+1, v
			case "get":
				if o.unknown {
					return true, n
				}
				v, ok := parseInt(o)
				return ok && v == n, n
			}
			return false, n
		},
		Hash:              func(state any) uint64 { return uint64(state.(int64)) },
		DescribeOperation: describe,
		DescribeState:     func(state any) string { return "n = " + strconv.FormatInt(state.(int64), 10) },
	}
}

// regState is one key of a map: absent, or holding a value.
type regState struct {
	value string
	found bool
}

// registerModel is one key of a durable map, initially absent.
//
//	put(x) → ok   v := x      (also when the outcome is unknown)
//	get → x       allowed if x == v (∅ when absent)
func registerModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return regState{} },
		Step: func(state, in, out any) (bool, any) {
			s, i, o := state.(regState), in.(input), out.(output)
			switch i.name {
			case "put":
				if !o.unknown && o.value != "ok" {
					return false, s
				}
				return true, regState{value: i.arg, found: true}
			case "get":
				if o.unknown {
					return true, s
				}
				return o.found == s.found && (!o.found || o.value == s.value), s
			}
			return false, s
		},
		DescribeOperation: describe,
		DescribeState: func(state any) string {
			s := state.(regState)
			if !s.found {
				return "∅"
			}
			return strconv.Quote(s.value)
		},
	}
}

func parseInt(o output) (int64, bool) {
	v, err := strconv.ParseInt(o.value, 10, 64)
	return v, err == nil
}
