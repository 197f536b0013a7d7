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

func intSetModel(init []int64, step func(s []int64, i input, o output) (bool, []int64), describeState func([]int64) string) porcupine.Model {
	return porcupine.Model{
		Init: func() any { return slices.Clone(init) },
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

// Deletion (issue 14). Every model also accepts "delete" of the whole
// actor: → "ok" (Found) when the actor existed, → ∅ (not Found) when it did
// not. The counters' states use absent (−1) for "no such actor", which
// inc and get treat as 0 (a typed call creates the actor afresh); the
// register uses a deleted marker. Every model starts unsure whether the
// actor exists (it may have been created before the history began).
//
// A typed call creates the actor when it is placed, before it is sent: a
// call that then fails retryably ("did not run", left out of the history)
// may still have created it. So an absent actor may come to exist, empty,
// at any instant, and "delete → ok" is allowed from any state; what the
// models check is that after a delete nothing of the old life is seen
// again, and that "delete → ∅" only answers when the actor may be absent.

const absent = -1

// val is what inc and get see in state s: an absent actor reads as 0.
func val(s int64) int64 { return max(s, 0) }

// deleteStep is the counters' delete.
func deleteStep(s []int64, o output) (bool, []int64) {
	switch {
	case o.unknown:
		return true, set(append(slices.Clone(s), absent)...)
	case o.found:
		// Existing, or created meanwhile by a call that did not run.
		return o.value == "ok", []int64{absent}
	}
	return slices.Contains(s, absent), []int64{absent}
}

func describeInts(s []int64) string {
	parts := make([]string, len(s))
	for i, v := range s {
		parts[i] = strconv.FormatInt(v, 10)
		if v == absent {
			parts[i] = "deleted"
		}
	}
	return strings.Join(parts, ",")
}

// counterWithResetModel is an in-memory counter that may be reset to zero
// between any two operations, because a fresh activation starts from fresh
// memory. S is the set of values it may hold unless it was just reset;
// resets need no state of their own, since any operation may observe 0.
//
//	inc → v     allowed if v == 0 or v ∈ S;  S := {v+1}
//	inc → ?     S := S ∪ {s+1 : s ∈ S} ∪ {1}
//	get → v     allowed if v == 0 or v ∈ S;  S := {v}
//	get → ?     S unchanged
//	delete → ok S := {deleted} (always allowed: see above)
//	delete → ∅  allowed if deleted ∈ S;  S := {deleted}
//	delete → ?  S := S ∪ {deleted}
func counterWithResetModel() porcupine.Model {
	return intSetModel(set[int64](absent, 0), func(s []int64, i input, o output) (bool, []int64) {
		if i.name == "delete" {
			return deleteStep(s, o)
		}
		if o.unknown {
			if i.name != "inc" {
				return i.name == "get", s
			}
			next := append(slices.Clone(s), 1)
			for _, v := range s {
				next = append(next, val(v)+1)
			}
			return true, set(next...)
		}
		v, ok := parseInt(o)
		if !ok || v < 0 || (v != 0 && !slices.Contains(s, v)) {
			return false, nil
		}
		switch i.name {
		case "inc":
			return true, []int64{v + 1}
		case "get":
			return true, []int64{v}
		}
		return false, nil
	}, func(s []int64) string { return "n ∈ {" + describeInts(s) + "} (or 0 after a reset)" })
}

// counterModel is a durable counter: it starts at 0 and never resets,
// except that a delete ends it (the next life starts at 0 again).
//
//	inc → v     allowed if v−1 ∈ S;  S := {v}
//	inc → ?     S := S ∪ {s+1 : s ∈ S}
//	get → v     allowed if v ∈ S;    S := {v}
//	delete      as for counterWithResetModel
func counterModel() porcupine.Model {
	return intSetModel(set[int64](absent, 0), func(s []int64, i input, o output) (bool, []int64) {
		if i.name == "delete" {
			return deleteStep(s, o)
		}
		if o.unknown {
			if i.name != "inc" {
				return i.name == "get", s
			}
			next := slices.Clone(s)
			for _, v := range s {
				next = append(next, val(v)+1)
			}
			return true, set(next...)
		}
		v, ok := parseInt(o)
		if !ok {
			return false, nil
		}
		seen := func(want int64) bool {
			return slices.ContainsFunc(s, func(x int64) bool { return val(x) == want })
		}
		switch i.name {
		case "inc":
			return seen(v - 1), []int64{v}
		case "get":
			return seen(v), []int64{v}
		}
		return false, nil
	}, func(s []int64) string { return "n ∈ {" + describeInts(s) + "}" })
}

// deleted is the register's state "the actor does not exist".
const deleted = "\x00deleted"

// registerModel is one key of a durable map, initially absent. Its state is
// the set of values the key may hold; "" stands for absent (the workload
// never writes empty values), deleted for "the whole actor is gone" (which
// reads as absent).
//
//	put(x) → ok   S := {x}
//	put(x) → ?    S := S ∪ {x}
//	get → x       allowed if x ∈ S;  S := {x}   (∅ when absent or deleted)
//	delete        as for the counters, with deleted for absent
func registerModel() porcupine.Model {
	return porcupine.Model{
		Init: func() any { return set("", deleted) },
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
				if !o.found {
					return slices.Contains(s, "") || slices.Contains(s, deleted), []string{""}
				}
				return slices.Contains(s, o.value), []string{o.value}
			case "delete":
				switch {
				case o.unknown:
					return true, set(append(slices.Clone(s), deleted)...)
				case o.found:
					return o.value == "ok", []string{deleted}
				}
				return slices.Contains(s, deleted), []string{deleted}
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
				switch v {
				case "":
					parts[i] = "∅"
				case deleted:
					parts[i] = "deleted"
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
