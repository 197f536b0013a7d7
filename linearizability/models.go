package linearizability

import (
	"cmp"
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
//
// Every model's state is the set of states the object may be in. An
// operation of unknown outcome (indeterminate) may or may not have taken
// effect, so it adds states instead of replacing them; an operation that
// returned collapses the set to what its result proves. (When an
// indeterminate operation's window is open-ended, porcupine can also place
// it after everything else; when the window is bounded by a known horizon,
// it must be placed inside, so "did not happen" must be a state.)
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

// set is a sorted set of states.
func set[T cmp.Ordered](xs ...T) []T {
	slices.Sort(xs)
	return slices.Compact(xs)
}

func intSetModel(init int64, step func(s []int64, i input, o output) (bool, []int64), describeState func([]int64) string) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return []int64{init} },
		Step: func(state, in, out any) (bool, any) {
			ok, next := step(state.([]int64), in.(input), out.(output))
			if !ok {
				return false, state
			}
			return true, next
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
		DescribeState:     func(state any) string { return describeState(state.([]int64)) },
	}
}

func formatInts(s []int64) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.FormatInt(v, 10)
	}
	return strings.Join(parts, ",")
}

// counterWithResetModel is an in-memory counter that may be reset to zero
// between any two operations, because a fresh activation starts from fresh
// memory. S is the set of values it may hold unless it was just reset;
// resets need no state of their own, since any operation may observe 0.
//
//	inc → v   allowed if v == 0 or v ∈ S;  S := {v+1}
//	inc → ?   S := S ∪ {s+1 : s ∈ S} ∪ {1}
//	get → v   allowed if v == 0 or v ∈ S;  S := {v}
//	get → ?   S unchanged
func counterWithResetModel() porcupine.Model {
	return intSetModel(0, func(s []int64, i input, o output) (bool, []int64) {
		if o.unknown {
			if i.name != "inc" {
				return i.name == "get", s
			}
			next := append(slices.Clone(s), 1)
			for _, v := range s {
				next = append(next, v+1)
			}
			return true, set(next...)
		}
		v, ok := parseInt(o)
		if !ok || (v != 0 && !slices.Contains(s, v)) {
			return false, nil
		}
		switch i.name {
		case "inc":
			return true, []int64{v + 1}
		case "get":
			return true, []int64{v}
		}
		return false, nil
	}, func(s []int64) string { return "n ∈ {" + formatInts(s) + "} (or 0 after a reset)" })
}

// counterModel is a durable counter: it starts at 0 and never resets.
//
//	inc → v   allowed if v−1 ∈ S;  S := {v}
//	inc → ?   S := S ∪ {s+1 : s ∈ S}
//	get → v   allowed if v ∈ S;    S := {v}
func counterModel() porcupine.Model {
	return intSetModel(0, func(s []int64, i input, o output) (bool, []int64) {
		if o.unknown {
			if i.name != "inc" {
				return i.name == "get", s
			}
			next := slices.Clone(s)
			for _, v := range s {
				next = append(next, v+1)
			}
			return true, set(next...)
		}
		v, ok := parseInt(o)
		if !ok {
			return false, nil
		}
		switch i.name {
		case "inc":
			return slices.Contains(s, v-1), []int64{v}
		case "get":
			return slices.Contains(s, v), []int64{v}
		}
		return false, nil
	}, func(s []int64) string { return "n ∈ {" + formatInts(s) + "}" })
}

// registerModel is one key of a durable map, initially absent. Its state is
// the set of values the key may hold; "" stands for absent (the workload
// never writes empty values).
//
//	put(x) → ok   S := {x}
//	put(x) → ?    S := S ∪ {x}
//	get → x       allowed if x ∈ S;  S := {x}   (∅ when absent)
func registerModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return []string{""} },
		Step: func(state, in, out any) (bool, any) {
			s, i, o := state.([]string), in.(input), out.(output)
			switch i.name {
			case "put":
				if o.unknown {
					return true, set(append(slices.Clone(s), i.arg)...)
				}
				return o.value == "ok", []string{i.arg}
			case "get":
				if o.unknown {
					return true, s
				}
				v := ""
				if o.found {
					v = o.value
				}
				return slices.Contains(s, v), []string{v}
			}
			return false, s
		},
		Equal:             func(a, b any) bool { return slices.Equal(a.([]string), b.([]string)) },
		DescribeOperation: describe,
		DescribeState: func(state any) string {
			s := state.([]string)
			parts := make([]string, len(s))
			for i, v := range s {
				parts[i] = strconv.Quote(v)
				if v == "" {
					parts[i] = "∅"
				}
			}
			return "{" + strings.Join(parts, ", ") + "}"
		},
	}
}

func parseInt(o output) (int64, bool) {
	v, err := strconv.ParseInt(o.value, 10, 64)
	return v, err == nil
}
