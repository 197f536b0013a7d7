package model

import (
	"fmt"
	"strings"
)

// Scopes are the instances `make model` explores exhaustively. Each has
// crashes, lost messages, in-doubt requests, releases at capacity and a
// graceful shutdown enabled; pauses and clock drift are in every scope (see
// doc.go).
func Scopes() []Scope {
	return []Scope{
		{Name: "2x1", Servers: 2, Actors: 1, MaxIncarnations: 2, Reregistrations: 1, MaxKV: 1, Crashes: 1, Losses: 1, InDoubt: 1, Timers: true, Evictions: true, Calls: true, History: true},
		{Name: "2x1-release", Servers: 2, Actors: 1, MaxIncarnations: 2, Reregistrations: 1, MaxKV: 1, Crashes: 1, CapacityReleases: 1, Shutdowns: 1, Timers: true, Calls: true, History: true},
		{Name: "3x1", Servers: 3, Actors: 1, MaxIncarnations: 2, Reregistrations: 1, MaxKV: 1, Crashes: 1, InDoubt: 1},
		{Name: "2x2", Servers: 2, Actors: 2, MaxIncarnations: 2, Reregistrations: 1, MaxKV: 1, Crashes: 1, InDoubt: 1},
	}
}

// SmallScope is the scope go test explores (a few seconds, with the
// liveness check).
func SmallScope() Scope {
	return Scope{Name: "2x1-small", Servers: 2, Actors: 1, MaxIncarnations: 2, Reregistrations: 1, MaxKV: 1, Crashes: 1, InDoubt: 1, Timers: true, Calls: true, History: true}
}

// MutationCase is one broken rule and the scope that exposes it.
type MutationCase struct {
	Name      string
	Mutations Mutations
	Scope     Scope
}

// MutationCases are the non-vacuity cases: each must yield a
// counterexample.
func MutationCases() []MutationCase {
	base := Scope{Servers: 2, Actors: 1, MaxIncarnations: 2, MaxKV: 2, Crashes: 1, Losses: 1, InDoubt: 1, CapacityReleases: 1, Timers: true, Calls: true, History: true}
	mk := func(name string, mu Mutations) MutationCase {
		sc := base
		sc.Name, sc.Mutations = "2x1+"+name, mu
		return MutationCase{Name: name, Mutations: mu, Scope: sc}
	}
	return []MutationCase{
		mk("SkipDeadlineCheck", Mutations{SkipDeadlineCheck: true}),
		mk("SkipStoreFence", Mutations{SkipStoreFence: true}),
		mk("IgnoreIncarnation", Mutations{IgnoreIncarnation: true}),
		mk("TimerIgnoresFence", Mutations{TimerIgnoresFence: true}),
		mk("BeyondRho", Mutations{BeyondRho: true}),
		// Without releases at capacity, so that the trace is the in-doubt
		// commit's (an in-doubt release breaks the same rule too).
		func() MutationCase {
			c := mk("NoBumpAfterInDoubt", Mutations{NoBumpAfterInDoubt: true})
			c.Scope.CapacityReleases = 0
			return c
		}(),
		mk("ReleaseWithoutCompare", Mutations{ReleaseWithoutCompare: true}),
	}
}

// FormatScopeTable renders the final table of a run.
func FormatScopeTable(reps []Report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-12s %12s %14s %6s %10s %10s %s\n", "scope", "states", "transitions", "depth", "wall", "heap", "result")
	for _, r := range reps {
		res := "ok"
		switch {
		case r.Violation != "":
			res = fmt.Sprintf("VIOLATION %s (trace %d steps)", r.Violation, len(r.Trace))
		case r.Truncated:
			res = "TRUNCATED"
		case r.LiveFailed != nil:
			res = "LIVENESS FAILED"
		case len(r.Unreached()) > 0:
			res = fmt.Sprintf("UNREACHED %v", r.Unreached())
		}
		fmt.Fprintf(&b, "%-12s %12d %14d %6d %10s %8.0fMiB %s\n", r.Scope.Name, r.States, r.Transitions, r.Depth,
			r.Wall.Round(1e7), float64(r.PeakBytes)/(1<<20), res)
	}
	return b.String()
}
