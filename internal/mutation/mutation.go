// Package mutation names nola's deliberate protocol bugs: switches that break
// exactly one rule of the activation protocol so that a checker — the
// simulator's oracle and porcupine, the registry's schedule checker, the
// model's refinement check, jepsen-lite against real processes — can show it
// catches the violation that follows. A checker that passes with its
// mechanism broken proves nothing; these switches are how the repository
// proves the opposite.
//
// The package is internal on purpose: a program outside this module cannot
// import it, and a Set's only field is unexported, so the zero Set (no
// mutation) is the only value such a program can put in a ServerConfig or a
// registry.Options. Only the repository's own tests, the simulator and the
// nolamutation test build of cmd/nola can switch a mutation on.
//
// This is the one list of names: the simulator's -mutations flag, the test
// build's --unsafe-mutation flag and the checkers' tests all parse and print
// these names.
package mutation

import (
	"fmt"
	"strings"
)

// M is one deliberate bug.
type M uint8

// The mutations. Engine mutations break a rule of nola's servers; registry
// mutations break a rule of the store protocol (and reach it through the
// server's registry as well).
const (
	// SkipDeadlineCheck serves and commits past the local lease deadline.
	SkipDeadlineCheck M = iota
	// SkipStoreFence commits actor KV without the fence compares.
	SkipStoreFence
	// IgnoreIncarnation keeps activations across re-registration and
	// confirms ownership by server ID alone (the original NOLA's bug).
	IgnoreIncarnation
	// TimerIgnoresFence lets timers fire on a fenced activation.
	TimerIgnoresFence
	// ActorErrorHidesFailedCommit restores a bug a review found: a failed
	// commit that the actor reports with an error of its own (as WASM
	// guests must) keeps the activation, and later writes of the
	// invocation still commit.
	ActorErrorHidesFailedCommit
	// SkipCallGate sends outgoing calls without checking the lease deadline
	// right before each send.
	SkipCallGate
	// DeleteSkipsGeneration makes a delete keep the actor's generation, so
	// the next life shares the old life's KV prefix (docs/deletion.md).
	// The simulator turns deletes on with it.
	DeleteSkipsGeneration
	// SkipReleaseCompare releases actors (shedding, shutdown, release at
	// capacity) without the compare that the releasing incarnation still
	// owns them at its epoch: a late release clears another server's
	// ownership.
	SkipReleaseCompare
	// ResetEpochs makes placement and release write epoch 0, so an owner
	// record can repeat (the ABA the epochs exist to prevent). Registry
	// only (servers refuse it): the registry's schedule checker catches
	// it.
	ResetEpochs
	// CreateEveryActivation runs a Creator's hook at every activation,
	// ignoring the store's record that it ran (the exactly-once guard).
	CreateEveryActivation
	// CreateCommitsMarkerSeparately commits a Creator hook's KV writes and
	// the record that it ran in two commits instead of one: a failure
	// between them runs the hook again over its own effects.
	CreateCommitsMarkerSeparately
	// SkipCreateCompare makes registry.CreateActor's first attempt (which
	// does not read the actor record) commit without the compare that the
	// record is absent: a creation overwrites an existing actor's owner,
	// epoch and generation. It acts wherever CreateActor runs (nola's
	// Client.Create), not on the simulator's default workload; the
	// registry's schedule checker and its batch test catch it.
	SkipCreateCompare

	count
)

// String is the mutation's name as the flags spell it.
func (m M) String() string {
	switch m {
	case SkipDeadlineCheck:
		return "SkipDeadlineCheck"
	case SkipStoreFence:
		return "SkipStoreFence"
	case IgnoreIncarnation:
		return "IgnoreIncarnation"
	case TimerIgnoresFence:
		return "TimerIgnoresFence"
	case ActorErrorHidesFailedCommit:
		return "ActorErrorHidesFailedCommit"
	case SkipCallGate:
		return "SkipCallGate"
	case DeleteSkipsGeneration:
		return "DeleteSkipsGeneration"
	case SkipReleaseCompare:
		return "SkipReleaseCompare"
	case ResetEpochs:
		return "ResetEpochs"
	case CreateEveryActivation:
		return "CreateEveryActivation"
	case CreateCommitsMarkerSeparately:
		return "CreateCommitsMarkerSeparately"
	case SkipCreateCompare:
		return "SkipCreateCompare"
	}
	return fmt.Sprintf("mutation(%d)", uint8(m))
}

// Engine reports whether the mutation acts in a running server on every
// workload, so that a whole-system checker (the simulator, jepsen-lite) is
// expected to catch it. ResetEpochs acts only on registry schedules driven
// directly (registry.Options); nola.NewServer refuses it. The creation
// hook's mutations act only on actors with a creation hook, which nola's
// creation tests and the simulator's CreatorCatalog exercise (not its
// default workload).
func (m M) Engine() bool { return m < ResetEpochs }

// Server reports whether the mutation acts in a running server at all (on
// some workload): every one but ResetEpochs. NewServer refuses the others.
func (m M) Server() bool { return m != ResetEpochs }

// All lists every mutation in declaration order.
func All() []M {
	out := make([]M, 0, count)
	for m := range count {
		out = append(out, m)
	}
	return out
}

// Names lists every mutation's name in declaration order.
func Names() []string {
	out := make([]string, 0, count)
	for _, m := range All() {
		out = append(out, m.String())
	}
	return out
}

// Lookup returns the mutation called name.
func Lookup(name string) (M, bool) {
	for _, m := range All() {
		if m.String() == name {
			return m, true
		}
	}
	return 0, false
}

// Set is a set of mutations; the zero Set has none.
type Set struct{ bits uint32 }

// Of returns the set holding ms.
func Of(ms ...M) Set {
	var s Set
	for _, m := range ms {
		s = s.With(m)
	}
	return s
}

// With returns s plus m.
func (s Set) With(m M) Set {
	if m >= count {
		panic(fmt.Sprintf("mutation: unknown mutation %d", uint8(m)))
	}
	return Set{s.bits | 1<<m}
}

// Has reports whether m is in s.
func (s Set) Has(m M) bool { return s.bits&(1<<m) != 0 }

// Empty reports whether s holds no mutation.
func (s Set) Empty() bool { return s.bits == 0 }

// String lists s's names, comma-separated, as Parse reads them.
func (s Set) String() string {
	var names []string
	for _, m := range All() {
		if s.Has(m) {
			names = append(names, m.String())
		}
	}
	return strings.Join(names, ",")
}

// Parse reads comma-separated mutation names (blanks around names and empty
// names are ignored).
func Parse(spec string) (Set, error) {
	var s Set
	for _, n := range strings.Split(spec, ",") {
		n = strings.TrimSpace(n)
		if n == "" {
			continue
		}
		m, ok := Lookup(n)
		if !ok {
			return Set{}, fmt.Errorf("unknown mutation %q (known: %s)", n, strings.Join(Names(), ", "))
		}
		s = s.With(m)
	}
	return s, nil
}
