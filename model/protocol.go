package model

import (
	"bytes"
	"slices"
	"time"

	"github.com/nolaproject/nola/registry"
)

// Bounds of the state vector (a scope uses a prefix of each array).
const (
	MaxServers = 3
	MaxActors  = 2
	maxMsgs    = MaxServers*MaxActors + 2
)

// Activation phases (Act.Ph). They follow nola/activation.go: lookup
// inserts an activating entry, activate confirms (or bumps) and checks the
// lease again, then the entry is ready; invokeOn runs one execution at a
// time under the activation's lock.
const (
	phNone       uint8 = iota
	phActivating       // entry inserted; Confirm / Bump not yet answered
	phConfirmed        // store said we own it at Ep; lease not yet re-checked
	phReady            // ready, idle
	phExec             // an execution passed its start check
	phCommitting       // ... and waits for its fenced commit's answer
	phReleasing        // at capacity: waits for its Release's answer
)

// Activation flags (Act.Fl).
const (
	flTimer      uint8 = 1 << iota // a timer is armed
	flSuperseded                   // ghost: a newer activation of the actor became ready
	flOverlapped                   // ghost: another activation started an execution during this one
	flWrote                        // the running execution committed (it has effects)
	flCalled                       // the running execution sent an outgoing call
	flSetTimer                     // the running execution armed a timer
	flFromTimer                    // the running execution was started by a timer
)

// Act is one activation slot: actor a on server s.
type Act struct {
	Ph, Inc, Ep, KV, Fl uint8
	// Plan is what the running execution does before it returns: planRead
	// (nothing leaves), planWriteCall (one fenced commit, then an
	// outgoing call: the call is a commit point, so the commit precedes
	// it), planTimer (arm a timer). A timer's execution reads or writes.
	Plan uint8
}

// Execution plans (Act.Plan).
const (
	planRead uint8 = iota
	planWriteCall
	planTimer
	numPlans
	planWrite // planWriteCall without the call (Scope.Calls off)
)

// Srv is one server: its process (local state) and its records in the
// store (SInc, SRec, Age are store state, kept here for symmetry).
type Srv struct {
	Up   uint8 // process running
	Stop uint8 // graceful shutdown in progress
	Reg  uint8 // incarnation of the local lease (0: none, fenced)
	// Rem is the local lease's remaining time, in clock units, on the
	// server's own clock: deadline − now. live ⇔ Rem > 0.
	Rem    int8
	Fenced uint8 // incarnation fenced last, revoked before registering again
	Doubt  uint8 // bitmask of actors in doubt under the current incarnation
	Ghost  uint8 // bitmask: a timer of a dropped activation is still armed (TimerIgnoresFence)
	// Store side: incarnation counter inc/s, the record srv/s (0 absent,
	// else its incarnation, attached to its lease), ticks since the store
	// processed the lease's last grant or keep-alive.
	SInc, SRec, Age uint8
	Acts            [MaxActors]Act
	// Zomb[a] is the incarnation of an execution that was running when
	// its activation was fenced (it runs on until its next check fails).
	Zomb [MaxActors]uint8
}

// ActorRec is the store's record act/A, its KV and ghost history.
type ActorRec struct {
	Exists, Owner, OInc, Ep uint8 // Owner: 0 none, else server index + 1
	KV                      uint8 // the value (a counter: each commit writes base+1)
	// History ghosts (only with Scope.History): placed away from this
	// crashed owner (index+1); a release was applied since the last
	// activation.
	CrashFrom, Released uint8
}

// Message kinds.
const (
	msgNone uint8 = iota
	msgCommit
	msgCommitOK
	msgCommitFenced
	msgRelease
	msgReleaseDone
)

// Message flags.
const (
	mfWaiting    uint8 = 1 << iota // its sender waits for the answer
	mfSuperseded                   // ghost: a newer activation of the actor is ready
	mfShutdown                     // a release sent by a graceful shutdown
)

// Msg is a store request (or its answer) in flight.
type Msg struct {
	Kind, S, A, Inc, Ep, Base, Val, Fl uint8
}

// State is one state of the whole system.
type State struct {
	S [MaxServers]Srv
	A [MaxActors]ActorRec
	M [maxMsgs]Msg
	// Fault budgets still available.
	Crashes, Losses, Doubts, CapRel, Stops, Rereg uint8
}

// Mutations break one rule each, as the engine's internal/mutation switches
// of the same names do (plus two the engine has no switch for).
type Mutations struct {
	SkipDeadlineCheck bool // mutation.SkipDeadlineCheck
	SkipStoreFence    bool // mutation.SkipStoreFence
	IgnoreIncarnation bool // mutation.IgnoreIncarnation
	TimerIgnoresFence bool // mutation.TimerIgnoresFence
	BeyondRho         bool // sim.Options.BeyondRho: clocks slower than 1−ρ
	// NoBumpAfterInDoubt activates an in-doubt actor with Confirm instead
	// of Bump (the engine before its epochs).
	NoBumpAfterInDoubt bool
	// ReleaseWithoutCompare applies a Release without its compare on the
	// owner record.
	ReleaseWithoutCompare bool
}

// Scope is one finite instance of the model.
type Scope struct {
	Name            string
	Servers, Actors int
	MaxIncarnations int // registrations per server ID
	// Reregistrations bounds, over all servers, the registrations after
	// a server's first (after a fence, or by a restarted process); 0: only
	// MaxIncarnations bounds them.
	Reregistrations  int
	MaxKV            int  // commits per actor (the counter's largest value)
	Crashes, Losses  int  // crash faults; lost keep-alive requests or answers
	InDoubt          int  // store requests whose caller gives up (outcome unknown)
	CapacityReleases int  // releases at capacity
	Shutdowns        int  // graceful shutdowns
	Timers           bool // executions may arm timers
	Calls            bool // a writing execution then makes an outgoing call
	// History keeps the ghost fields that the reachability properties
	// "reactivated after a crash" and "release, then reactivation" need.
	History   bool
	Evictions bool // idle eviction (any time an activation is idle)
	Mutations Mutations
}

// Time. One tick is one unit of the store's lease clock; server clocks
// count D units per tick at nominal rate. See doc.go.
const (
	D       = 4 // server clock units per tick at nominal rate
	L       = 2 // lease TTL, ticks
	rhoNum  = 1 // ρ = rhoNum/D = 1/4
	deltaU  = 1 // δ, clock units (1/4 tick)
	slowAdv = D - rhoNum
)

// Budget is the local lease time a grant or keep-alive gives, in clock
// units: registry.LocalDeadline(t_send=0, L, ρ, δ), the engine's own formula.
var Budget = int8(registry.LocalDeadline(0, time.Duration(L*D), float64(rhoNum)/D, time.Duration(deltaU)))

// Model is the protocol state machine for one scope.
type Model struct {
	sc    Scope
	perms [][]int // server permutations
	aperm [][]int // actor permutations
}

// New returns the model of scope sc.
func New(sc Scope) *Model {
	return &Model{sc: sc, perms: permutations(sc.Servers), aperm: permutations(sc.Actors)}
}

// Scope returns the model's scope.
func (m *Model) Scope() Scope { return m.sc }

func permutations(n int) [][]int {
	var out [][]int
	var rec func(p []int, used int)
	rec = func(p []int, used int) {
		if len(p) == n {
			out = append(out, slices.Clone(p))
			return
		}
		for i := 0; i < n; i++ {
			if used&(1<<i) == 0 {
				rec(append(p, i), used|1<<i)
			}
		}
	}
	rec(nil, 0)
	return out
}

// Init: every server process up and unregistered, no actor created.
func (m *Model) Init() State {
	var s State
	for i := 0; i < m.sc.Servers; i++ {
		s.S[i].Up = 1
	}
	s.Crashes, s.Losses, s.Doubts = uint8(m.sc.Crashes), uint8(m.sc.Losses), uint8(m.sc.InDoubt)
	s.CapRel, s.Stops = uint8(m.sc.CapacityReleases), uint8(m.sc.Shutdowns)
	s.Rereg = uint8(m.sc.Reregistrations)
	if m.sc.Reregistrations == 0 {
		s.Rereg = 255
	}
	return s
}

// live is Server.liveAt for activation incarnation inc on server v: the
// current lease is inc's (or any, under IgnoreIncarnation) and its deadline
// has not passed (or the check is skipped).
func (m *Model) live(v *Srv, inc uint8) bool {
	if v.Up == 0 || v.Reg == 0 {
		return false
	}
	if v.Reg != inc && !m.sc.Mutations.IgnoreIncarnation {
		return false
	}
	return v.Rem > 0 || m.sc.Mutations.SkipDeadlineCheck
}

// Action is one transition's label.
type Action struct {
	Kind    ActionKind
	S, A, X uint8 // server, actor, an argument (message slot, clock choice)
}

// ActionKind enumerates the transitions.
type ActionKind uint8

// The transitions. Each names the engine function it abstracts.
const (
	ATick          ActionKind = iota + 1 // time passes one tick; X: bitmask of servers whose clock ran slow
	ARegister                            // Server.register: revoke the fenced lease, Registry.Register
	AKeepAlive                           // heartbeat: KeepAlive round trip (X: 0 renewed, 1 lease lost → fence, 2 answer lost)
	AFenceDeadline                       // heartbeat: local deadline passed → Server.fence
	ACrash                               // process dies (Halt / kill -9)
	ARestart                             // a new process under the same ID
	APlace                               // Registry.EnsureActivation writes a new owner
	AArrive                              // a request reaches S for A: lookup inserts an activation
	AActivated                           // activate: lease re-checked, actor ready
	ACapRelease                          // activate at capacity: Registry.Release sent
	AStart                               // invokeOn: start check passed (X=1: from a timer)
	ACommitSend                          // kvTxn.flush: effectAllowed, CommitKV sent
	ACommitRefused                       // flush: effectAllowed failed → commit error, activation dropped
	ASetTimer                            // Context.SetTimer: effectAllowed, timer armed
	ACall                                // Context.Invoke: commit point + call gate, call sent
	ACallRefused                         // the call gate refuses (past the deadline): the invocation fails
	AEnd                                 // output gate passed: result released
	AWithhold                            // output gate failed: result withheld, activation dropped
	AZombieEnd                           // a fenced activation's running execution fails its next check
	AEvict                               // idle eviction (ownership kept)
	AStoreApply                          // store evaluates request X (commit or release)
	AReply                               // the sender gets the answer of request X
	AGiveUp                              // the sender times out on request X: outcome unknown (in doubt)
	ALoseMsg                             // orphaned request X is lost for good
	AGhostFire                           // a dropped activation's timer fires (TimerIgnoresFence)
	AShutdown                            // Server.Shutdown: drop all, send releases
	AShutdownEnd                         // Shutdown: releases answered, lease revoked, process ends
)

func (m *Model) addMsg(s *State, msg Msg) bool {
	for i := range s.M {
		if s.M[i].Kind == msgNone {
			s.M[i] = msg
			return true
		}
	}
	return false
}

// drop is Server.dropWith: the slot is cleared; its timer stops (under
// TimerIgnoresFence it stays armed: a ghost timer).
func (m *Model) drop(v *Srv, a int) {
	if v.Acts[a].Fl&flTimer != 0 && m.sc.Mutations.TimerIgnoresFence {
		v.Ghost |= 1 << a
	}
	v.Acts[a] = Act{}
}

// fence is Server.fence: the local lease goes; every activation is
// dropped (a running execution carries on as a zombie until its next
// check); the heartbeat will revoke the lease and register again. Requests
// whose sender was dropped lose their waiter.
func (m *Model) fence(s *State, si int) {
	v := &s.S[si]
	if m.sc.History {
		v.Fenced = v.Reg // revoked when it registers again
	} else if v.SRec == v.Reg {
		// Without History the revocation of the fenced lease is folded
		// into the fence: the store frees the actor earlier, which only
		// gives other servers more behaviours.
		v.SRec, v.Age = 0, 0
	}
	v.Reg, v.Rem, v.Doubt = 0, 0, 0
	if m.sc.Mutations.IgnoreIncarnation {
		return // the bug: activations outlive their incarnation
	}
	for a := 0; a < m.sc.Actors; a++ {
		act := &v.Acts[a]
		if (act.Ph == phExec || act.Ph == phCommitting) && m.sc.History {
			// Without History the zombie is not kept: its next check
			// fails whatever happens meanwhile, and that has no effect
			// (its commit, if any, is an orphan request below).
			v.Zomb[a] = act.Inc
		}
		if act.Ph == phCommitting || act.Ph == phReleasing {
			m.orphan(s, si, a)
		}
		if act.Ph != phNone {
			m.drop(v, a)
		}
	}
}

// orphan: the activation (s, a) no longer waits for its request.
func (m *Model) orphan(s *State, si, a int) {
	for i := range s.M {
		mm := &s.M[i]
		if mm.Kind != msgNone && int(mm.S) == si && int(mm.A) == a && mm.Fl&mfWaiting != 0 && mm.Fl&mfShutdown == 0 {
			m.unwait(s, i)
		}
	}
}

// unwait turns message i into an orphan: a request stays in flight (it may
// still land), an answer is discarded.
func (m *Model) unwait(s *State, i int) {
	mm := &s.M[i]
	if mm.Kind == msgCommit || mm.Kind == msgRelease {
		mm.Fl &^= mfWaiting
	} else {
		*mm = Msg{}
	}
}

// activated marks every other activation of actor a, and every commit of
// a in flight, superseded by the activation now ready.
func (m *Model) supersede(s *State, si, a int) {
	for j := 0; j < m.sc.Servers; j++ {
		if j == si {
			continue
		}
		if act := &s.S[j].Acts[a]; act.Ph >= phReady && act.Ph <= phCommitting {
			act.Fl |= flSuperseded
		}
	}
	for i := range s.M {
		if s.M[i].Kind == msgCommit && int(s.M[i].A) == a {
			s.M[i].Fl |= mfSuperseded
		}
	}
}

// Successors enumerates every transition of s. faults=false (used by the
// liveness check) leaves out every fault: crashes, losses, giving up,
// capacity releases, shutdowns, evictions.
func (m *Model) Successors(s *State, emit func(Action, *State, string)) {
	m.successors(s, true, emit)
}

func (m *Model) successors(s *State, faults bool, emit func(Action, *State, string)) {
	sc := &m.sc
	mut := &sc.Mutations
	nS, nA := sc.Servers, sc.Actors

	// Time: the store's lease clock advances one tick; every running
	// server's clock advances slowAdv units, the slowest rate within ρ
	// (or fewer under BeyondRho). A slower clock only makes local
	// deadlines later in store time, so this is the adversarial choice
	// for safety (doc.go).
	{
		adv := int8(slowAdv)
		if mut.BeyondRho {
			adv = D / 2
		}
		t := *s
		for i := 0; i < nS; i++ {
			v := &t.S[i]
			if v.SRec != 0 {
				// The store expires the lease exactly L after the last
				// keep-alive it processed: the earliest A2 allows, the
				// adversarial choice for G1 (a later expiry only gives the
				// old owner more time to fence itself).
				if v.Age++; v.Age >= L {
					v.SRec, v.Age = 0, 0
				}
			}
			if v.Up == 0 {
				continue
			}
			if v.Reg != 0 {
				v.Rem = max(v.Rem-adv, 0)
			}
		}
		emit(Action{Kind: ATick}, &t, "")
	}

	for si := 0; si < nS; si++ {
		v := &s.S[si]
		sid := uint8(si + 1)
		if v.Up == 0 {
			// A new process under the same ID (any time later).
			t := *s
			t.S[si].Up = 1
			emit(Action{Kind: ARestart, S: uint8(si)}, &t, "")
			continue
		}

		if faults && s.Crashes > 0 {
			t := *s
			t.Crashes--
			w := &t.S[si]
			w.Up, w.Stop, w.Reg, w.Rem, w.Fenced, w.Doubt, w.Ghost = 0, 0, 0, 0, 0, 0, 0
			w.Acts, w.Zomb = [MaxActors]Act{}, [MaxActors]uint8{}
			for i := range t.M {
				if t.M[i].Kind != msgNone && t.M[i].S == uint8(si) && t.M[i].Fl&mfWaiting != 0 {
					m.unwait(&t, i)
				}
			}
			emit(Action{Kind: ACrash, S: uint8(si)}, &t, "")
		}

		// Registration (also after a fence: revoke the old lease first).
		if v.Reg == 0 && v.Stop == 0 && int(v.SInc) < sc.MaxIncarnations && (v.SInc == 0 || s.Rereg > 0) &&
			(v.SRec == 0 || (v.Fenced != 0 && v.SRec == v.Fenced)) {
			t := *s
			if v.SInc != 0 && t.Rereg != 255 {
				t.Rereg--
			}
			w := &t.S[si]
			w.SInc++
			w.SRec, w.Age, w.Reg, w.Rem, w.Fenced = w.SInc, 0, w.SInc, Budget, 0
			emit(Action{Kind: ARegister, S: uint8(si)}, &t, "")
		}
		// Heartbeat: one keep-alive round trip, sent before the deadline
		// (at least a tick after the last renewal). The store processes it
		// at the instant it is sent: the worst case for safety, since the
		// store's expiry counts from processing and the local deadline from
		// sending (doc.go). Its answer may be lost: the store renewed the
		// lease, the server does not know.
		if v.Reg != 0 && v.Rem < Budget && (v.Rem > 0 || mut.SkipDeadlineCheck) {
			t := *s
			w := &t.S[si]
			if w.SRec == w.Reg {
				w.Age, w.Rem = 0, Budget
				emit(Action{Kind: AKeepAlive, S: uint8(si)}, &t, "")
				if faults && s.Losses > 0 {
					t := *s
					t.Losses--
					t.S[si].Age = 0
					emit(Action{Kind: AKeepAlive, S: uint8(si), X: 2}, &t, "")
				}
			} else {
				m.fence(&t, si) // ErrLeaseLost
				emit(Action{Kind: AKeepAlive, S: uint8(si), X: 1}, &t, "")
			}
		}
		if v.Reg != 0 && v.Rem <= 0 && !mut.SkipDeadlineCheck {
			t := *s
			m.fence(&t, si)
			emit(Action{Kind: AFenceDeadline, S: uint8(si)}, &t, "")
		}

		// Graceful shutdown: no execution running (Shutdown waits for each
		// activation's lock); every activation dropped, then released.
		if faults && s.Stops > 0 && v.Stop == 0 && v.Reg != 0 {
			busy := false
			for a := 0; a < nA; a++ {
				if v.Acts[a].Ph >= phActivating {
					busy = busy || v.Acts[a].Ph != phReady
				}
			}
			if !busy {
				t := *s
				t.Stops--
				w := &t.S[si]
				w.Stop = 1
				ok := true
				for a := 0; a < nA; a++ {
					if act := w.Acts[a]; act.Ph == phReady {
						ok = ok && m.addMsg(&t, Msg{Kind: msgRelease, S: uint8(si), A: uint8(a), Inc: act.Inc, Ep: act.Ep, Fl: mfWaiting | mfShutdown})
						m.drop(w, a)
					}
				}
				if ok {
					emit(Action{Kind: AShutdown, S: uint8(si)}, &t, "")
				}
			}
		}
		if v.Stop == 1 {
			waiting := false
			for i := range s.M {
				waiting = waiting || (s.M[i].Kind != msgNone && s.M[i].S == uint8(si) && s.M[i].Fl&mfWaiting != 0)
			}
			if !waiting {
				t := *s
				w := &t.S[si]
				if w.SRec != 0 && w.SRec == w.Reg {
					w.SRec, w.Age = 0, 0
				}
				w.Up, w.Stop, w.Reg, w.Rem, w.Fenced, w.Doubt = 0, 0, 0, 0, 0, 0
				w.Acts, w.Zomb = [MaxActors]Act{}, [MaxActors]uint8{}
				emit(Action{Kind: AShutdownEnd, S: uint8(si)}, &t, "")
			}
		}

		for a := 0; a < nA; a++ {
			m.actorSteps(s, si, a, sid, faults, emit)
		}
	}

	// Placement (EnsureActivation) of each actor by some client.
	for a := 0; a < nA; a++ {
		r := &s.A[a]
		if r.Exists == 1 && r.Owner != 0 && s.S[r.Owner-1].SRec == r.OInc {
			continue // the owner is live: that is the answer
		}
		for ti := 0; ti < nS; ti++ {
			if s.S[ti].SRec == 0 {
				continue
			}
			t := *s
			w := &t.A[a]
			if w.Exists == 1 {
				w.Ep++
			}
			if sc.History && w.Owner != 0 && s.S[w.Owner-1].Up == 0 {
				w.CrashFrom = w.Owner
			}
			w.Exists, w.Owner, w.OInc = 1, uint8(ti+1), s.S[ti].SRec
			emit(Action{Kind: APlace, S: uint8(ti), A: uint8(a)}, &t, "")
		}
	}

	// Store requests and answers in flight.
	for i := range s.M {
		mm := s.M[i]
		if mm.Kind == msgNone {
			continue
		}
		si, a := int(mm.S), int(mm.A)
		switch mm.Kind {
		case msgCommit:
			t := *s
			r := &t.A[a]
			fenceHolds := t.S[si].SRec == mm.Inc && r.Owner == mm.S+1 && r.OInc == mm.Inc && r.Ep == mm.Ep
			viol := ""
			if fenceHolds || mut.SkipStoreFence {
				switch {
				case !fenceHolds:
					viol = "G2.fenced-commit"
				case mm.Fl&mfSuperseded != 0:
					viol = "G2.stale-commit"
				case mm.Base != r.KV:
					viol = "G2.lost-write"
				}
				r.KV = mm.Val
				if mm.Fl&mfWaiting != 0 {
					t.M[i].Kind = msgCommitOK
				} else {
					t.M[i] = Msg{}
				}
			} else if mm.Fl&mfWaiting != 0 {
				t.M[i].Kind = msgCommitFenced
			} else {
				t.M[i] = Msg{}
			}
			emit(Action{Kind: AStoreApply, S: mm.S, A: mm.A, X: uint8(i)}, &t, viol)
		case msgRelease:
			t := *s
			r := &t.A[a]
			holds := r.Owner == mm.S+1 && r.OInc == mm.Inc && r.Ep == mm.Ep
			viol := ""
			if holds || mut.ReleaseWithoutCompare {
				// G1.release-live: the proof's Lemma 3 needs the releasing
				// incarnation's activation gone first.
				if act := t.S[si].Acts[a]; act.Ph >= phReady && act.Ph <= phCommitting && act.Inc == mm.Inc {
					viol = "G1.release-live"
				}
				r.Owner, r.OInc, r.Ep = 0, 0, r.Ep+1
				if sc.History {
					r.Released = 1
				}
			}
			if mm.Fl&mfWaiting != 0 {
				t.M[i].Kind = msgReleaseDone
			} else {
				t.M[i] = Msg{}
			}
			emit(Action{Kind: AStoreApply, S: mm.S, A: mm.A, X: uint8(i)}, &t, viol)
		case msgCommitOK, msgCommitFenced:
			t := *s
			t.M[i] = Msg{}
			act := &t.S[si].Acts[a]
			if act.Ph == phCommitting {
				if mm.Kind == msgCommitOK {
					act.Ph, act.KV, act.Fl = phExec, mm.Val, act.Fl|flWrote
				} else {
					m.drop(&t.S[si], a) // ErrFenced: the activation goes
				}
			}
			emit(Action{Kind: AReply, S: mm.S, A: mm.A, X: uint8(i)}, &t, "")
		case msgReleaseDone:
			t := *s
			t.M[i] = Msg{}
			if act := &t.S[si].Acts[a]; act.Ph == phReleasing && mm.Fl&mfShutdown == 0 {
				m.drop(&t.S[si], a)
			}
			emit(Action{Kind: AReply, S: mm.S, A: mm.A, X: uint8(i)}, &t, "")
		}
		// The sender gives up: the outcome is unknown. The engine marks the
		// actor in doubt (flush; activate at capacity) and drops the
		// activation; the request may still land (or be lost).
		if faults && mm.Fl&mfWaiting != 0 && s.Doubts > 0 {
			t := *s
			t.Doubts--
			m.unwait(&t, i)
			w := &t.S[si]
			if mm.Fl&mfShutdown == 0 {
				if w.Reg == mm.Inc && w.Reg != 0 {
					w.Doubt |= 1 << a
				}
				if w.Acts[a].Ph == phCommitting || w.Acts[a].Ph == phReleasing {
					m.drop(w, a)
				}
			}
			emit(Action{Kind: AGiveUp, S: mm.S, A: mm.A, X: uint8(i)}, &t, "")
		}
		if faults && mm.Fl&mfWaiting == 0 && (mm.Kind == msgCommit || mm.Kind == msgRelease) && s.Losses > 0 {
			t := *s
			t.Losses--
			t.M[i] = Msg{}
			emit(Action{Kind: ALoseMsg, S: mm.S, A: mm.A, X: uint8(i)}, &t, "")
		}
	}
}

// actorSteps are the transitions of actor a on server si.
func (m *Model) actorSteps(s *State, si, a int, sid uint8, faults bool, emit func(Action, *State, string)) {
	sc := &m.sc
	mut := &sc.Mutations
	v := &s.S[si]
	act := v.Acts[a]
	r := &s.A[a]
	as, aa := uint8(si), uint8(a)

	if v.Ghost&(1<<a) != 0 {
		// A timer of a dropped activation fires and runs on it.
		t := *s
		t.S[si].Ghost &^= 1 << a
		emit(Action{Kind: AGhostFire, S: as, A: aa}, &t, "G1.dropped-start")
	}
	if v.Zomb[a] != 0 {
		t := *s
		t.S[si].Zomb[a] = 0
		emit(Action{Kind: AZombieEnd, S: as, A: aa}, &t, "")
	}

	switch act.Ph {
	case phNone:
		// lookup: a request arrives, and the activation's Confirm (or
		// Bump, when in doubt) reads the store: lookup checks live first,
		// and the read is one linearizable store step. Clients route by
		// the owner's server ID (a route to a server that never owned the
		// actor only earns not_owner).
		if !(v.Stop == 0 && v.Reg != 0 && m.live(v, v.Reg) && r.Exists == 1 && r.Owner == sid) {
			break
		}
		inc := v.Reg
		t := *s
		w := &t.S[si]
		ta := &w.Acts[a]
		owned := r.OInc == inc || mut.IgnoreIncarnation
		if v.Doubt&(1<<a) != 0 && !mut.NoBumpAfterInDoubt {
			// Bump: owner check and CAS to epoch+1 fenced on srv/s.
			if r.OInc == inc && w.SRec == inc {
				t.A[a].Ep++
				w.Doubt &^= 1 << a
				*ta = Act{Ph: phConfirmed, Inc: inc, Ep: t.A[a].Ep}
			}
		} else if owned {
			*ta = Act{Ph: phConfirmed, Inc: inc, Ep: r.Ep}
		}
		emit(Action{Kind: AArrive, S: as, A: aa}, &t, "")
	case phConfirmed:
		t := *s
		w := &t.S[si]
		if !m.live(v, act.Inc) {
			m.drop(w, a) // lost its lease during activation
			emit(Action{Kind: AActivated, S: as, A: aa, X: 0}, &t, "")
			break
		}
		ta := &w.Acts[a]
		ta.Ph, ta.KV = phReady, r.KV
		t.A[a].CrashFrom, t.A[a].Released = 0, 0
		m.supersede(&t, si, a)
		emit(Action{Kind: AActivated, S: as, A: aa, X: 1}, &t, "")
		if faults && s.CapRel > 0 {
			t := *s
			t.CapRel--
			w := &t.S[si]
			w.Acts[a].Ph = phReleasing
			w.Acts[a].Ep = act.Ep
			if m.addMsg(&t, Msg{Kind: msgRelease, S: as, A: aa, Inc: act.Inc, Ep: act.Ep, Fl: mfWaiting}) {
				emit(Action{Kind: ACapRelease, S: as, A: aa}, &t, "")
			}
		}
	case phReady:
		// A client's invocation, or the armed timer.
		for _, timer := range []bool{false, true} {
			if timer && act.Fl&flTimer == 0 {
				continue
			}
			unfenced := timer && mut.TimerIgnoresFence
			if !m.live(v, act.Inc) && !unfenced {
				continue
			}
			if v.Stop == 1 && !timer {
				continue
			}
			for plan := planRead; plan < numPlans; plan++ {
				if plan == planWriteCall && int(act.KV) >= sc.MaxKV {
					continue
				}
				if plan == planTimer && (timer || !sc.Timers) {
					continue
				}
				eff := plan
				if plan == planWriteCall && !sc.Calls {
					eff = planWrite
				}
				t := *s
				ta := &t.S[si].Acts[a]
				ta.Ph, ta.Plan = phExec, eff
				ta.Fl &^= flWrote | flCalled | flSetTimer | flFromTimer | flOverlapped
				x := eff
				if timer {
					ta.Fl = ta.Fl&^flTimer | flFromTimer
					x |= 0x80
				}
				viol := ""
				if act.Fl&flSuperseded != 0 {
					viol = "G1.stale-start"
				}
				for j := 0; j < sc.Servers; j++ {
					if o := &t.S[j].Acts[a]; j != si && (o.Ph == phExec || o.Ph == phCommitting) {
						o.Fl |= flOverlapped
					}
				}
				emit(Action{Kind: AStart, S: as, A: aa, X: x}, &t, viol)
			}
		}
		if faults && sc.Evictions && v.Stop == 0 {
			t := *s
			m.drop(&t.S[si], a)
			emit(Action{Kind: AEvict, S: as, A: aa}, &t, "")
		}
	case phExec:
		liveNow := m.live(v, act.Inc)
		unfenced := act.Fl&flFromTimer != 0 && mut.TimerIgnoresFence
		lateEffect := ""
		if act.Fl&flSuperseded != 0 {
			lateEffect = "G1.effect-after-superseded"
		}
		switch {
		case (act.Plan == planWriteCall || act.Plan == planWrite) && act.Fl&flWrote == 0:
			t := *s
			if liveNow {
				t.S[si].Acts[a].Ph = phCommitting
				if m.addMsg(&t, Msg{Kind: msgCommit, S: as, A: aa, Inc: act.Inc, Ep: act.Ep, Base: act.KV, Val: act.KV + 1, Fl: mfWaiting}) {
					emit(Action{Kind: ACommitSend, S: as, A: aa}, &t, lateEffect)
				}
			} else {
				m.drop(&t.S[si], a)
				emit(Action{Kind: ACommitRefused, S: as, A: aa}, &t, "")
			}
			return
		case act.Plan == planWriteCall && act.Fl&flCalled == 0:
			t := *s
			ta := &t.S[si].Acts[a]
			if liveNow {
				ta.Fl |= flCalled
				emit(Action{Kind: ACall, S: as, A: aa}, &t, lateEffect)
			} else {
				// The gate refuses; the actor returns the error: the
				// invocation fails, its commit stands.
				ta.Ph, ta.Fl = phReady, ta.Fl&^(flWrote|flCalled|flSetTimer|flFromTimer|flOverlapped)
				emit(Action{Kind: ACallRefused, S: as, A: aa}, &t, "")
			}
			return
		case act.Plan == planTimer && act.Fl&flSetTimer == 0:
			t := *s
			ta := &t.S[si].Acts[a]
			if liveNow {
				ta.Fl |= flSetTimer | flTimer
				emit(Action{Kind: ASetTimer, S: as, A: aa}, &t, lateEffect)
			} else {
				ta.Fl |= flSetTimer // refused: the actor ignores the error
				emit(Action{Kind: ASetTimer, S: as, A: aa, X: 1}, &t, "")
			}
			return
		}
		t := *s
		ta := &t.S[si].Acts[a]
		if liveNow || unfenced {
			viol := ""
			if act.Fl&flOverlapped != 0 {
				viol = "G1.release-overlap"
			}
			if act.Fl&flWrote != 0 && t.A[a].KV < act.KV && viol == "" {
				// The write being acknowledged is not in the store. (Every
				// applied commit is checked to build on the store's value,
				// so the value never falls below an acknowledged one
				// afterwards: no Acked field is needed.)
				viol = "G2.ack-lost"
			}
			ta.Ph = phReady
			ta.Fl &^= flWrote | flCalled | flSetTimer | flFromTimer | flOverlapped
			emit(Action{Kind: AEnd, S: as, A: aa}, &t, viol)
		} else {
			m.drop(&t.S[si], a)
			emit(Action{Kind: AWithhold, S: as, A: aa}, &t, "")
		}
	}
}

// Invariant checks the safety properties that are predicates of one
// state.
//
//	G1.superseded-live  an activation that a newer one of the same actor
//	                    has superseded is still live by its own server's
//	                    clock and incarnation (the proof's Lemma 3: when
//	                    ownership moves, the old owner's deadline has
//	                    passed or its incarnation ended).
//
// G2.ack-lost (an acknowledged write not in the store) is checked on the
// output gate's transition, G2.lost-write on every applied commit.
func (m *Model) Invariant(s *State) string {
	for si := 0; si < m.sc.Servers; si++ {
		v := &s.S[si]
		for a := 0; a < m.sc.Actors; a++ {
			act := &v.Acts[a]
			if act.Ph >= phReady && act.Ph <= phCommitting && act.Fl&flSuperseded != 0 && m.live(v, act.Inc) {
				return "G1.superseded-live"
			}
		}
	}
	return ""
}

// Canon relabels servers and actors so that the state's encoding is the
// least among all permutations: symmetric states share one representative.
// The encoding is injective (every field of State is in it), so the
// representative is a function of the symmetry class alone.
//
// Not every permutation needs encoding: the encoding starts with the
// server blocks in order, and a server's block refers to no server
// identity, so for each actor permutation only the server permutations
// that sort the blocks can give the least encoding; ties (identical
// servers) are all tried.
func (m *Model) Canon(s *State) State {
	var best State
	var bestEnc, enc [encLen]byte
	first := true
	nS := m.sc.Servers
	for _, q := range m.aperm {
		var blk [MaxServers][srvLen]byte
		for i := 0; i < nS; i++ {
			w := permuteServer(&s.S[i], q)
			w.encodeBlock(blk[i][:])
		}
		sorted := blk
		slices.SortFunc(sorted[:nS], func(x, y [srvLen]byte) int { return bytes.Compare(x[:], y[:]) })
		for _, p := range m.perms {
			ok := true
			for i := 0; i < nS && ok; i++ {
				ok = blk[i] == sorted[p[i]]
			}
			if !ok {
				continue
			}
			t := m.permute(s, p, q)
			t.encode(&enc)
			if first || bytes.Compare(enc[:], bestEnc[:]) < 0 {
				best, bestEnc, first = t, enc, false
			}
		}
	}
	return best
}

// permuteServer is server v with actor a relabelled q[a].
func permuteServer(v *Srv, q []int) Srv {
	w := *v
	w.Doubt, w.Ghost = permuteMask(v.Doubt, q), permuteMask(v.Ghost, q)
	for a := range q {
		w.Acts[q[a]] = v.Acts[a]
		w.Zomb[q[a]] = v.Zomb[a]
	}
	return w
}

func permuteMask(b uint8, q []int) uint8 {
	var o uint8
	for a := range q {
		if b&(1<<a) != 0 {
			o |= 1 << q[a]
		}
	}
	return o
}

func msgKey(x *Msg) uint64 {
	return uint64(x.Kind)<<56 | uint64(x.S)<<48 | uint64(x.A)<<40 | uint64(x.Inc)<<32 |
		uint64(x.Ep)<<24 | uint64(x.Base)<<16 | uint64(x.Val)<<8 | uint64(x.Fl)
}

// permute maps server i to p[i] and actor a to q[a].
func (m *Model) permute(s *State, p, q []int) State {
	t := State{Crashes: s.Crashes, Losses: s.Losses, Doubts: s.Doubts, CapRel: s.CapRel, Stops: s.Stops, Rereg: s.Rereg}
	mapSrv := func(x uint8) uint8 { // index+1 encoding, 0 = none
		if x == 0 {
			return 0
		}
		return uint8(p[x-1] + 1)
	}
	for i := range p {
		t.S[p[i]] = permuteServer(&s.S[i], q)
	}
	for a := range q {
		r := s.A[a]
		r.Owner, r.CrashFrom = mapSrv(r.Owner), mapSrv(r.CrashFrom)
		t.A[q[a]] = r
	}
	n := 0
	for _, mm := range s.M {
		if mm.Kind == msgNone {
			continue
		}
		mm.S, mm.A = uint8(p[mm.S]), uint8(q[mm.A])
		t.M[n] = mm
		n++
	}
	msgs := t.M[:n]
	slices.SortFunc(msgs, func(x, y Msg) int {
		a, b := msgKey(&x), msgKey(&y)
		switch {
		case a < b:
			return -1
		case a > b:
			return 1
		}
		return 0
	})
	return t
}

const srvLen = 14 + 6*MaxActors
const encLen = MaxServers*srvLen + MaxActors*8 + maxMsgs*8 + 6

// encodeBlock writes server v's block of the encoding (srvLen bytes).
func (v *Srv) encodeBlock(c []byte) {
	c = c[:srvLen:srvLen]
	c[0], c[1], c[2], c[3], c[4], c[5], c[6] = v.Up, v.Stop, v.Reg, uint8(v.Rem), v.Fenced, v.Doubt, v.Ghost
	c[7], c[8], c[9], c[10], c[11] = v.SInc, v.SRec, v.Age, v.Acts[0].Plan, v.Acts[1].Plan
	c[12], c[13] = 0, 0
	for a := 0; a < MaxActors; a++ {
		x := &v.Acts[a]
		d := c[14+6*a : 20+6*a : 20+6*a]
		d[0], d[1], d[2], d[3], d[4], d[5] = x.Ph, x.Inc, x.Ep, x.KV, x.Fl, v.Zomb[a]
	}
}

// encode writes the state's bytes in a fixed order (the order Canon
// compares permutations by). Written out field by field: Canon encodes
// every permutation of every successor, and this is its inner loop.
func (s *State) encode(b *[encLen]byte) {
	o := 0
	for i := range s.S {
		s.S[i].encodeBlock(b[o : o+srvLen])
		o += srvLen
	}
	for i := range s.A {
		r := &s.A[i]
		c := b[o : o+8 : o+8]
		c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7] = r.Exists, r.Owner, r.OInc, r.Ep, r.KV, r.CrashFrom, r.Released, 0
		o += 8
	}
	for i := range s.M {
		mm := &s.M[i]
		c := b[o : o+8 : o+8]
		c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7] = mm.Kind, mm.S, mm.A, mm.Inc, mm.Ep, mm.Base, mm.Val, mm.Fl
		o += 8
	}
	c := b[o : o+6 : o+6]
	c[0], c[1], c[2], c[3], c[4], c[5] = s.Crashes, s.Losses, s.Doubts, s.CapRel, s.Stops, s.Rereg
}
