package model

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"time"
)

// Reach names a situation that must occur at least once in a scope's
// exploration: proof that the model is not vacuous (a model that never
// crashes, never loses an answer or never fences would satisfy every
// safety property trivially).
type Reach uint8

// The reachability ("sometimes") properties.
const (
	ReachReactivatedAfterCrash Reach = iota // an actor becomes ready on another server after its owner's process crashed
	ReachLateCommitRejected                 // an in-doubt commit reaches the store after its sender gave up, and its fence refuses it
	ReachPauseNewIncarnation                // an execution paused past the lease resumes while its server already runs a new incarnation (and is withheld)
	ReachReleaseReactivated                 // an actor becomes ready again after a release of it was applied
	ReachTimerFired                         // a timer starts an execution
	ReachFailedFence                        // a fenced commit is refused by the store and its sender learns it
	ReachDeadlineFence                      // a server fences itself at its local deadline
	ReachLeaseLostFence                     // a server fences itself because the store says its lease is gone
	ReachBump                               // an in-doubt actor is reactivated after Bump moved its epoch
	ReachLateCommitApplied                  // an in-doubt commit lands late (before any newer activation) and is applied
	ReachOutputGateWithheld                 // the output gate withholds a result
	ReachCallSent                           // an outgoing call passes its gate
	ReachShutdownReleased                   // a graceful shutdown's release is applied
	numReach
)

var reachNames = [...]string{
	"reactivated elsewhere after a crash",
	"late in-doubt commit rejected",
	"pause past the lease, then a new incarnation",
	"release followed by reactivation",
	"timer fired",
	"failed fence (commit refused)",
	"fence at the local deadline",
	"fence on lease lost",
	"epoch bump after an in-doubt commit",
	"late in-doubt commit applied before the bump",
	"output gate withheld a result",
	"outgoing call sent",
	"graceful shutdown released an actor",
}

func (r Reach) String() string { return reachNames[r] }

// reached reports which situation transition a from s to t realises, if
// any (t is not canonicalised: its identities are s's).
func (m *Model) reached(a Action, s, t *State) (Reach, bool) {
	switch a.Kind {
	case AActivated:
		if a.X == 1 {
			r := &s.A[a.A]
			if r.CrashFrom != 0 && r.CrashFrom != a.S+1 {
				return ReachReactivatedAfterCrash, true
			}
			if r.Released != 0 {
				return ReachReleaseReactivated, true
			}
		}
	case AStoreApply:
		mm := s.M[a.X]
		switch mm.Kind {
		case msgCommit:
			applied := t.A[a.A].KV != s.A[a.A].KV
			switch {
			case mm.Fl&mfWaiting == 0 && !applied:
				return ReachLateCommitRejected, true
			case mm.Fl&mfWaiting == 0 && applied:
				return ReachLateCommitApplied, true
			case !applied:
				return ReachFailedFence, true
			}
		case msgRelease:
			if mm.Fl&mfShutdown != 0 && t.A[a.A].Owner == 0 && s.A[a.A].Owner != 0 {
				return ReachShutdownReleased, true
			}
		}
	case AZombieEnd:
		if v := &s.S[a.S]; v.Reg != 0 && v.Reg != v.Zomb[a.A] {
			return ReachPauseNewIncarnation, true
		}
	case AStart:
		if a.X&0x80 != 0 {
			return ReachTimerFired, true
		}
	case AFenceDeadline:
		return ReachDeadlineFence, true
	case AKeepAlive:
		if a.X == 1 {
			return ReachLeaseLostFence, true
		}
	case AArrive:
		if v := &s.S[a.S]; v.Doubt&(1<<a.A) != 0 && t.S[a.S].Doubt&(1<<a.A) == 0 && t.S[a.S].Acts[a.A].Ph == phConfirmed {
			return ReachBump, true
		}
	case AWithhold:
		return ReachOutputGateWithheld, true
	case ACall:
		return ReachCallSent, true
	}
	return 0, false
}

// callable reports whether every actor of the scope can be called now:
// some server runs a ready activation of it under its current, live
// incarnation, which the store records as the owner.
func (m *Model) callable(s *State) bool {
	for a := 0; a < m.sc.Actors; a++ {
		ok := false
		for si := 0; si < m.sc.Servers && !ok; si++ {
			v := &s.S[si]
			act := &v.Acts[a]
			r := &s.A[a]
			ok = act.Ph == phReady && v.Up == 1 && v.Stop == 0 && v.Reg != 0 && act.Inc == v.Reg && v.Rem > 0 &&
				v.SRec == v.Reg && r.Owner == uint8(si+1) && r.OInc == v.Reg
		}
		if !ok {
			return false
		}
	}
	return true
}

// recoverySteps bounds the fault-free run of the liveness check.
const recoverySteps = 80

// recoveryOrder is the recovery schedule's priority: the first kind with
// an enabled transition is taken. It lets the store and the network answer
// everything in flight, lets executions finish, restarts and registers
// processes, keeps leases alive, places and activates, and lets time pass
// only when nothing else can happen.
var recoveryOrder = []ActionKind{
	AStoreApply, AReply, AFenceDeadline, AZombieEnd,
	AWithhold, AEnd, ACommitSend, ACommitRefused, ACall, ACallRefused, ASetTimer, AShutdownEnd, ARestart, ARegister, AActivated, APlace,
	AArrive, AKeepAlive, ATick,
}

// Recover runs the fault-free recovery schedule from s and returns the
// number of steps after which every actor is callable (ok=false: not
// within recoverySteps). Registrations are not bounded by the scope here:
// the incarnation budget is a bound of the exploration, not a fault.
func (m *Model) Recover(s State) (steps int, ok bool) { return m.recoverLog(s, nil, nil) }

// recoverMemo remembers states from which the recovery schedule is known
// to succeed (every state on a successful run): most runs join one after a
// few steps, which makes the check cheap.
type recoverMemo struct {
	seed1, seed2 maphash.Seed
	ok           map[[2]uint64]struct{}
	path         [][2]uint64
}

const memoLimit = 1 << 23

func newRecoverMemo() *recoverMemo {
	return &recoverMemo{seed1: maphash.MakeSeed(), seed2: maphash.MakeSeed(), ok: map[[2]uint64]struct{}{}}
}

func (r *recoverMemo) hash(s *State) [2]uint64 {
	return [2]uint64{maphash.Comparable(r.seed1, *s), maphash.Comparable(r.seed2, *s)}
}

func (m *Model) recoverLog(s State, log func(Action, *State), memo *recoverMemo) (steps int, ok bool) {
	if memo != nil {
		memo.path = memo.path[:0]
		defer func() {
			if ok && len(memo.ok) < memoLimit {
				for _, h := range memo.path {
					memo.ok[h] = struct{}{}
				}
			}
		}()
	}
	free := *m
	free.sc.MaxIncarnations = 250
	s.Rereg = 255
	for steps = 0; steps <= recoverySteps; steps++ {
		if m.callable(&s) {
			return steps, true
		}
		if memo != nil {
			h := memo.hash(&s)
			if _, known := memo.ok[h]; known {
				return steps, true // steps: a lower bound
			}
			memo.path = append(memo.path, h)
		}
		best, bestRank := State{}, len(recoveryOrder)
		var bestAct Action
		found := false
		free.successors(&s, false, func(a Action, t *State, _ string) {
			rank := slices.Index(recoveryOrder, a.Kind)
			if rank < 0 || rank >= bestRank {
				return
			}
			switch a.Kind {
			case AArrive: // only where the store says the actor lives
				r := &s.A[a.A]
				if r.Owner != a.S+1 || r.OInc != s.S[a.S].Reg {
					return
				}
			case AKeepAlive:
				if a.X == 2 {
					return
				}
			case AActivated:
				if a.X != 1 && t.S[a.S].Acts[a.A].Ph == phNone && m.live(&s.S[a.S], s.S[a.S].Acts[a.A].Inc) {
					return
				}
			}
			best, bestRank, found, bestAct = *t, rank, true, a
		})
		if !found {
			return steps, false
		}
		if log != nil {
			log(bestAct, &s)
		}
		s = best
	}
	return steps, false
}

// Report is one scope's outcome.
type Report struct {
	Scope       Scope
	States      int64
	Transitions int64
	Depth       int
	Wall        time.Duration
	PeakBytes   uint64
	Truncated   bool
	Violation   string
	Trace       []Step[State, Action]
	// Reached[r] is the BFS depth at which situation r first occurred (−1:
	// never).
	Reached [numReach]int
	// Liveness: states from which the recovery schedule reaches a callable
	// system, the most steps it needed, and the first state it failed
	// from (if any).
	LiveChecked, LiveMaxSteps int64
	LiveFailed                *State
}

// Check explores scope sc exhaustively. With liveness, every reachable
// state also runs the recovery schedule.
func Check(sc Scope, opts Options[State, Action], liveness bool) Report {
	m := New(sc)
	rep := Report{Scope: sc}
	for i := range rep.Reached {
		rep.Reached[i] = -1
	}
	// Label runs in the checker's workers: the first depth of each
	// situation is kept under a lock (taken only when one is reached).
	var mu sync.Mutex
	opts.Label = func(a Action, from, to *State, depth int) {
		if r, ok := m.reached(a, from, to); ok {
			mu.Lock()
			if rep.Reached[r] < 0 || depth+1 < rep.Reached[r] {
				rep.Reached[r] = depth + 1
			}
			mu.Unlock()
		}
	}
	// Liveness runs in the checker's workers, each with its own memo
	// and counters, merged below.
	type live struct {
		memo         *recoverMemo
		checked, max int64
		failed       *State
		failedIdx    uint32
	}
	var lives []live
	var failedIdx uint32
	if liveness {
		lives = make([]live, WorkerCount(opts.Workers))
		for w := range lives {
			lives[w].memo = newRecoverMemo()
		}
		opts.Visit = func(w int, idx uint32, s *State) {
			l := &lives[w]
			if l.failed != nil {
				return
			}
			n, ok := m.recoverLog(*s, nil, l.memo)
			l.checked++
			if !ok {
				cp := *s
				l.failed, l.failedIdx = &cp, idx
			}
			l.max = max(l.max, int64(n))
		}
	}
	res := Explore[State, Action](m, opts)
	for _, l := range lives {
		rep.LiveChecked += l.checked
		rep.LiveMaxSteps = max(rep.LiveMaxSteps, l.max)
		if l.failed != nil && (rep.LiveFailed == nil || l.failedIdx < failedIdx) {
			rep.LiveFailed, failedIdx = l.failed, l.failedIdx
		}
	}
	rep.States, rep.Transitions, rep.Depth = res.States, res.Transitions, res.Depth
	rep.Wall, rep.PeakBytes, rep.Truncated = res.Wall, res.PeakBytes, res.Truncated
	rep.Violation, rep.Trace = res.Violation, res.Trace
	return rep
}

// Missing lists the reachability properties a report never reached.
func (r *Report) Missing() []Reach {
	var out []Reach
	for i, d := range r.Reached {
		if d < 0 {
			out = append(out, Reach(i))
		}
	}
	return out
}

// FormatReached renders the reachability table.
func (r *Report) FormatReached() string {
	var b strings.Builder
	for i, d := range r.Reached {
		if d < 0 {
			fmt.Fprintf(&b, "  %-48s NEVER\n", Reach(i))
		} else {
			fmt.Fprintf(&b, "  %-48s first at depth %d\n", Reach(i), d)
		}
	}
	return b.String()
}

// Expected lists the reachability properties scope sc must reach: those
// its budgets make possible.
func (sc Scope) Expected() []Reach {
	// ReachLeaseLostFence is not expected: with the store processing a
	// keep-alive as it is sent (the adversarial case, doc.go) a server
	// always passes its local deadline before its lease can expire, and
	// fences on the deadline first. Mutations reach it.
	out := []Reach{ReachDeadlineFence, ReachOutputGateWithheld}
	if sc.History {
		out = append(out, ReachPauseNewIncarnation)
	}
	if sc.Calls {
		out = append(out, ReachCallSent)
	}
	if sc.Crashes > 0 && sc.History {
		out = append(out, ReachReactivatedAfterCrash)
	}
	if sc.InDoubt > 0 {
		out = append(out, ReachLateCommitRejected, ReachLateCommitApplied, ReachBump)
	}
	if sc.Timers {
		out = append(out, ReachTimerFired)
	}
	if (sc.CapacityReleases > 0 || sc.Shutdowns > 0) && sc.History {
		out = append(out, ReachReleaseReactivated)
	}
	if sc.Shutdowns > 0 {
		out = append(out, ReachShutdownReleased)
	}
	// A commit refused by its fence, its sender waiting: a zombie's commit
	// after its lease expired in the store.
	out = append(out, ReachFailedFence)
	slices.Sort(out)
	return out
}

// Unreached lists the expected reachability properties r never reached.
func (r *Report) Unreached() []Reach {
	var out []Reach
	for _, x := range r.Scope.Expected() {
		if r.Reached[x] < 0 {
			out = append(out, x)
		}
	}
	return out
}
