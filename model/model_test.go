package model

import (
	"math/rand/v2"
	"testing"
)

// TestSmallScope explores the go-test scope exhaustively: no safety
// violation, no bound hit, every expected situation reached, and from every
// reachable state the fault-free recovery schedule makes the actor
// callable.
func TestSmallScope(t *testing.T) {
	sc := SmallScope()
	rep := Check(sc, Options[State, Action]{}, true)
	t.Logf("\n%s%s  liveness: %d states, recovery within %d steps", FormatScopeTable([]Report{rep}), rep.FormatReached(), rep.LiveChecked, rep.LiveMaxSteps)
	if rep.Violation != "" {
		t.Fatalf("%s", New(sc).FormatTrace(rep.Violation, rep.Trace))
	}
	if rep.Truncated {
		t.Fatal("exploration truncated")
	}
	if rep.LiveFailed != nil {
		t.Fatalf("liveness: recovery schedule fails from %s", New(sc).Summary(rep.LiveFailed))
	}
	if u := rep.Unreached(); len(u) > 0 {
		t.Fatalf("never reached: %v", u)
	}
	if rep.LiveChecked != rep.States {
		t.Fatalf("liveness checked %d of %d states", rep.LiveChecked, rep.States)
	}
}

// wantTrace is each mutation's shortest counterexample: the property it
// breaks and the length BFS finds (deterministic: BFS levels do not
// depend on hashing).
var wantTrace = map[string]struct {
	viol string
	len  int
}{
	"SkipDeadlineCheck":     {"G1.superseded-live", 10},
	"SkipStoreFence":        {"G2.fenced-commit", 9},
	"IgnoreIncarnation":     {"G1.superseded-live", 12},
	"TimerIgnoresFence":     {"G1.dropped-start", 10},
	"BeyondRho":             {"G1.superseded-live", 10},
	"NoBumpAfterInDoubt":    {"G2.stale-commit", 10},
	"ReleaseWithoutCompare": {"G1.release-live", 8},
}

// TestMutationsYieldCounterexamples: each broken rule is caught, with a
// shortest trace that replays from the initial state.
func TestMutationsYieldCounterexamples(t *testing.T) {
	for _, mc := range MutationCases() {
		t.Run(mc.Name, func(t *testing.T) {
			rep := Check(mc.Scope, Options[State, Action]{StopAtViolation: true}, false)
			if rep.Violation == "" {
				t.Fatalf("no counterexample in %d states: the checker cannot see this mutation", rep.States)
			}
			m := New(mc.Scope)
			t.Logf("%s", m.FormatTrace(rep.Violation, rep.Trace))
			if len(rep.Trace) == 0 {
				t.Fatal("empty trace")
			}
			w, ok := wantTrace[mc.Name]
			if !ok {
				t.Fatalf("no expected trace recorded for %s", mc.Name)
			}
			if w.viol != rep.Violation || w.len != len(rep.Trace) {
				t.Errorf("got %s in %d steps, want %s in %d", rep.Violation, len(rep.Trace), w.viol, w.len)
			}
			// Without the mutation the same scope is safe up to that depth.
			sc := mc.Scope
			sc.Mutations = Mutations{}
			clean := Check(sc, Options[State, Action]{StopAtViolation: true, MaxStates: 2 * int(rep.States)}, false)
			if clean.Violation != "" {
				t.Fatalf("the unmutated scope fails too: %s", New(sc).FormatTrace(clean.Violation, clean.Trace))
			}
		})
	}
}

// TestLocalDeadlineDiscretisation: the model's lease budget is the
// engine's formula, a server at the slowest clock within ρ passes its
// deadline no later than the tick at which the store may expire its lease,
// and beyond ρ it does not (so BeyondRho is visible at this tick size).
func TestLocalDeadlineDiscretisation(t *testing.T) {
	if Budget != int8(L*D*(D-rhoNum)/D-deltaU) {
		t.Fatalf("Budget = %d", Budget)
	}
	if rem := int(Budget) - L*slowAdv; rem > 0 {
		t.Fatalf("within ρ the server is still live (rem %d) when the store may expire its lease", rem)
	}
	if rem := int(Budget) - (L-1)*slowAdv; rem <= 0 {
		t.Fatalf("the deadline passes a whole tick early (rem %d): the model would be needlessly pessimistic", rem)
	}
	if rem := int(Budget) - L*(D/2); rem <= 0 {
		t.Fatalf("beyond ρ the server still fences in time (rem %d): BeyondRho would be invisible", rem)
	}
}

// TestCanonIsSymmetric: states that differ by a permutation of identities
// share a representative.
func TestCanonIsSymmetric(t *testing.T) {
	sc := Scope{Servers: 3, Actors: 2, MaxIncarnations: 2, MaxKV: 1}
	m := New(sc)
	s := m.Init()
	s.S[0].Reg, s.S[0].SRec, s.S[0].SInc, s.S[0].Rem = 1, 1, 1, 5
	s.S[0].Acts[1] = Act{Ph: phReady, Inc: 1}
	s.A[1] = ActorRec{Exists: 1, Owner: 1, OInc: 1}
	s.M[0] = Msg{Kind: msgCommit, S: 0, A: 1, Inc: 1, Val: 1, Fl: mfWaiting}
	want := m.Canon(&s)
	for _, p := range m.perms {
		for _, q := range m.aperm {
			u := m.permute(&s, p, q)
			if got := m.Canon(&u); got != want {
				t.Fatalf("perm %v %v: canon differs", p, q)
			}
		}
	}
}

// counter is a toy system for the checker: x counts to n; reaching bad is
// a violation at depth bad.
type counter struct{ n, bad int }

func (c counter) Init() int { return 0 }
func (c counter) Successors(s *int, emit func(string, *int, string)) {
	for _, d := range []int{1, 2} {
		t := (*s + d) % c.n
		emit("add", &t, "")
	}
}
func (c counter) Canon(s *int) int { return *s }
func (c counter) Invariant(s *int) string {
	if *s == c.bad {
		return "bad"
	}
	return ""
}

func TestCheckerShortestCounterexample(t *testing.T) {
	res := Explore[int, string](counter{n: 100, bad: 9}, Options[int, string]{StopAtViolation: true})
	if res.Violation != "bad" || len(res.Trace) != 5 || res.Trace[4].State != 9 {
		t.Fatalf("got %q, trace %v", res.Violation, res.Trace)
	}
	res = Explore[int, string](counter{n: 100, bad: -1}, Options[int, string]{})
	if res.States != 100 || res.Depth != 50 || res.Violation != "" {
		t.Fatalf("got %d states, depth %d", res.States, res.Depth)
	}
}

// canonBrute is the least encoding over every permutation, without
// Canon's pruning.
func canonBrute(m *Model, s *State) State {
	var best State
	var bestEnc, enc [encLen]byte
	first := true
	for _, p := range m.perms {
		for _, q := range m.aperm {
			t := m.permute(s, p, q)
			t.encode(&enc)
			if first || string(enc[:]) < string(bestEnc[:]) {
				best, bestEnc, first = t, enc, false
			}
		}
	}
	return best
}

// TestCanonPruningIsExact: on states of random runs of the 3x1 and 2x2
// scopes, Canon (which encodes only the server orders that sort the
// server blocks) equals the brute-force least encoding, and every
// permutation of a state has the same representative.
func TestCanonPruningIsExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 1))
	for _, sc := range []Scope{Scopes()[2], Scopes()[3], {Name: "3x2", Servers: 3, Actors: 2, MaxIncarnations: 2, MaxKV: 1, Crashes: 1, InDoubt: 1, Timers: true, Calls: true, History: true}} {
		m := New(sc)
		checked := 0
		for walk := 0; walk < 200; walk++ {
			s := m.Init()
			for n := 0; n < 40; n++ {
				var next []State
				m.Successors(&s, func(_ Action, u *State, _ string) { next = append(next, *u) })
				if len(next) == 0 {
					break
				}
				s = next[rng.IntN(len(next))]
				want := canonBrute(m, &s)
				if got := m.Canon(&s); got != want {
					t.Fatalf("%s: Canon differs from the brute-force minimum", sc.Name)
				}
				p, q := m.perms[rng.IntN(len(m.perms))], m.aperm[rng.IntN(len(m.aperm))]
				u := m.permute(&s, p, q)
				if got := m.Canon(&u); got != want {
					t.Fatalf("%s: perm %v %v: canon differs", sc.Name, p, q)
				}
				checked++
			}
		}
		t.Logf("%s: %d states checked", sc.Name, checked)
	}
}
