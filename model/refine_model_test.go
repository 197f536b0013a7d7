package model

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The refiner restates the model's guards over an unbounded, dense-time
// state; these tests tie the two together. modelRun translates runs of
// the model itself into refiner events: every run of the unmutated model
// must be accepted step by step (the refiner is no stricter than the
// model), and every mutation's shortest counterexample must be rejected
// (it sees what the model's checker sees).

const tickDur = time.Second // one model tick of the store's clock

// modelEnv answers Live from the model state reached so far: the process
// is up, its local lease is incarnation inc and has time left (the
// engine's Lease().Valid: the deadline, whatever mutation is on).
type modelEnv struct{ st *State }

func (e modelEnv) Live(server string, inc int64) bool {
	var si int
	if _, err := fmt.Sscanf(server, "s%d", &si); err != nil {
		return false
	}
	v := &e.st.S[si]
	return v.Up == 1 && v.Reg != 0 && int64(v.Reg) == inc && v.Rem > 0
}

// modelRun feeds a run of model m to a refiner.
type modelRun struct {
	m     *Model
	st    State
	ref   *Refiner
	now   time.Duration
	nextA uint64
	act   [MaxServers][MaxActors]uint64 // the activated activation in each slot
	zomb  [MaxServers][MaxActors]uint64 // a running execution whose activation was dropped
	ghost [MaxServers][MaxActors]uint64 // a dropped activation whose timer is armed
	msg   [maxMsgs]uint64               // refiner message of each commit slot
	nextM uint64
}

func newModelRun(m *Model) *modelRun {
	r := &modelRun{m: m, st: m.Init()}
	r.ref = NewRefiner(modelEnv{&r.st})
	return r
}

func rsrv(i int) string        { return fmt.Sprintf("s%d", i) }
func ract(a int) string        { return fmt.Sprintf("a%d", a) }
func leaseOf(s, inc int) int64 { return int64(100*s + inc) }

func activated(ph uint8) bool { return ph >= phReady && ph <= phCommitting }

// apply takes model transition a from the current state to t, feeding
// the refiner the events the engine would emit for it; it returns the
// first rejection.
func (r *modelRun) apply(a Action, t *State) *RefError {
	s := r.st
	r.st = *t // Live reads the state reached
	si, ai := int(a.S), int(a.A)
	sv, av := rsrv(si), ract(ai)
	var evs []RefEvent
	store := func(e RefEvent) { e.Now = r.now; evs = append(evs, e) }
	act := func(k RefKind, inc uint8, id uint64) RefEvent {
		return RefEvent{Kind: k, Server: sv, Inc: int64(inc), Actor: av, Act: id}
	}
	switch a.Kind {
	case ATick:
		r.now += tickDur
	case ARegister:
		v := &s.S[si]
		if v.Fenced != 0 && v.SRec == v.Fenced {
			store(RefEvent{Kind: RefRevoke, Lease: leaseOf(si, int(v.Fenced)), Applied: true})
		}
		inc := int(t.S[si].SInc)
		store(RefEvent{Kind: RefGrant, Lease: leaseOf(si, inc), TTL: L * tickDur})
		store(RefEvent{Kind: RefRegister, Server: sv, Inc: int64(inc), Lease: leaseOf(si, inc), Applied: true})
	case AKeepAlive:
		store(RefEvent{Kind: RefKeepAlive, Lease: leaseOf(si, int(s.S[si].Reg)), Applied: a.X != 1})
	case AShutdownEnd:
		if v := &s.S[si]; v.SRec != 0 && v.SRec == v.Reg {
			store(RefEvent{Kind: RefRevoke, Lease: leaseOf(si, int(v.Reg)), Applied: true})
		}
	case APlace:
		ti := si
		store(RefEvent{Kind: RefPlace, Actor: av, Owner: rsrv(ti), OwnerInc: int64(t.A[ai].OInc), Epoch: int64(t.A[ai].Ep), Applied: true})
	case AArrive:
		rec := s.A[ai]
		e := RefEvent{Kind: RefRead, Server: sv, Actor: av, Found: rec.Exists == 1, Epoch: int64(rec.Ep)}
		if rec.Owner != 0 {
			e.Owner, e.OwnerInc = rsrv(int(rec.Owner-1)), int64(rec.OInc)
		}
		store(e)
		if t.A[ai].Ep != rec.Ep {
			store(RefEvent{Kind: RefBump, Server: sv, Inc: int64(s.S[si].Reg), Actor: av, Epoch: int64(t.A[ai].Ep), Applied: true})
		}
	case AActivated:
		if a.X == 1 {
			r.nextA++
			r.act[si][ai] = r.nextA
			evs = append(evs, act(RefActivated, t.S[si].Acts[ai].Inc, r.nextA))
		}
	case AStart:
		e := act(RefStart, s.S[si].Acts[ai].Inc, r.act[si][ai])
		e.Timer = a.X&0x80 != 0
		evs = append(evs, e)
	case AGhostFire:
		e := act(RefStart, 0, r.ghost[si][ai])
		e.Timer, e.Inc = true, r.incOfAct(r.ghost[si][ai])
		evs = append(evs, e)
	case ACommitSend:
		x := s.S[si].Acts[ai]
		for i := range t.M {
			if t.M[i].Kind == msgCommit && s.M[i].Kind == msgNone {
				r.nextM++
				r.msg[i] = r.nextM
			}
		}
		evs = append(evs, RefEvent{Kind: RefCommitSend, Server: sv, Inc: int64(x.Inc), Actor: av, Epoch: int64(x.Ep), Msg: r.nextM})
	case AStoreApply:
		mm := s.M[a.X]
		rec := s.A[mm.A]
		switch mm.Kind {
		case msgCommit:
			holds := s.S[mm.S].SRec == mm.Inc && rec.Owner == mm.S+1 && rec.OInc == mm.Inc && rec.Ep == mm.Ep
			store(RefEvent{Kind: RefCommitApply, Actor: ract(int(mm.A)), Msg: r.msg[a.X], Applied: holds || r.m.sc.Mutations.SkipStoreFence})
		case msgRelease:
			holds := rec.Owner == mm.S+1 && rec.OInc == mm.Inc && rec.Ep == mm.Ep
			store(RefEvent{Kind: RefRelease, Server: rsrv(int(mm.S)), Inc: int64(mm.Inc), Actor: ract(int(mm.A)), Epoch: int64(rec.Ep) + 1,
				Applied: holds || r.m.sc.Mutations.ReleaseWithoutCompare})
		}
	case AReply:
		if mm := s.M[a.X]; mm.Kind == msgCommitOK && s.S[mm.S].Acts[mm.A].Ph == phCommitting {
			evs = append(evs, RefEvent{Kind: RefCommitted, Server: rsrv(int(mm.S)), Inc: int64(mm.Inc), Actor: ract(int(mm.A)), Act: r.act[mm.S][mm.A]})
		}
	case ACall:
		evs = append(evs, act(RefCall, s.S[si].Acts[ai].Inc, r.act[si][ai]))
	case ACallRefused:
		evs = append(evs, act(RefEnd, s.S[si].Acts[ai].Inc, r.act[si][ai]))
	case AEnd:
		e := act(RefEnd, s.S[si].Acts[ai].Inc, r.act[si][ai])
		e.Applied = true
		evs = append(evs, e)
	case AZombieEnd:
		evs = append(evs, act(RefEnd, s.S[si].Zomb[ai], r.zomb[si][ai]))
		r.zomb[si][ai] = 0
	}
	// Drops: an activated slot that is no longer (its running execution
	// ends unreleased, unless it carries on as a zombie).
	for i := 0; i < r.m.sc.Servers; i++ {
		for x := 0; x < r.m.sc.Actors; x++ {
			was, now := s.S[i].Acts[x], t.S[i].Acts[x]
			id := r.act[i][x]
			if id == 0 || (activated(now.Ph) && now.Inc == was.Inc) {
				continue
			}
			e := RefEvent{Server: rsrv(i), Inc: int64(was.Inc), Actor: ract(x), Act: id}
			if was.Ph == phExec || was.Ph == phCommitting {
				if t.S[i].Zomb[x] != 0 && (s.S[i].Zomb[x] == 0 || a.Kind == AKeepAlive || a.Kind == AFenceDeadline) {
					r.zomb[i][x] = id
				} else if a.Kind != ACrash {
					e.Kind = RefEnd
					evs = append(evs, e)
				}
			}
			if t.S[i].Ghost&(1<<x) != 0 && s.S[i].Ghost&(1<<x) == 0 {
				r.ghost[i][x] = id
			}
			e.Kind = RefDropped
			evs = append(evs, e)
			r.act[i][x] = 0
		}
	}
	for _, e := range evs {
		if err := r.ref.Step(e); err != nil {
			return err
		}
	}
	return nil
}

// incOfAct finds the incarnation a refiner activation was created under.
func (r *modelRun) incOfAct(id uint64) int64 {
	for _, x := range r.ref.actors {
		for k := range x.acts {
			if k.id == id {
				return k.inc
			}
		}
	}
	return 0
}

// TestRefinerAcceptsModelRuns: random runs of the model (every fault
// enabled, no mutation) translated into refiner events are accepted at
// every step.
func TestRefinerAcceptsModelRuns(t *testing.T) {
	scopes := []Scope{SmallScope(), MutationCases()[0].Scope}
	scopes[1].Mutations, scopes[1].Name = Mutations{}, "2x1-mutation-base"
	sc3 := Scopes()[2] // 3x1 (no History: fences revoke at once)
	sc3.History = true
	scopes = append(scopes, sc3, Scope{Name: "2x2-walk", Servers: 2, Actors: 2, MaxIncarnations: 3, MaxKV: 2, Crashes: 1, Losses: 1, InDoubt: 2,
		CapacityReleases: 1, Shutdowns: 1, Timers: true, Calls: true, History: true, Evictions: true})
	rng := rand.New(rand.NewPCG(13, 5))
	all := map[RefKind]bool{}
	for _, sc := range scopes {
		m := New(sc)
		steps, kinds := 0, map[RefKind]bool{}
		for walk := 0; walk < 1500; walk++ {
			r := newModelRun(m)
			for n := 0; n < 80; n++ {
				type succ struct {
					a Action
					t State
				}
				var next []succ
				cur := r.st
				m.Successors(&cur, func(a Action, t *State, _ string) { next = append(next, succ{a, *t}) })
				if len(next) == 0 {
					break
				}
				c := next[rng.IntN(len(next))]
				if err := r.apply(c.a, &c.t); err != nil {
					t.Fatalf("%s walk %d step %d (%s): %v", sc.Name, walk, n+1, m.Describe(c.a, &cur), err)
				}
				steps++
			}
			for k, n := range r.ref.Stats().ByKind {
				if n > 0 {
					kinds[RefKind(k)], all[RefKind(k)] = true, true
				}
			}
		}
		t.Logf("%s: %d model steps accepted; refiner event kinds seen: %d", sc.Name, steps, len(kinds))
	}
	for k := RefGrant; k <= RefCommitted; k++ {
		if !all[k] {
			t.Errorf("no model run produced a %s step", k)
		}
	}
}

// TestRefinerRejectsModelCounterexamples: each mutation's shortest
// counterexample, translated, is rejected by the refiner.
func TestRefinerRejectsModelCounterexamples(t *testing.T) {
	for _, mc := range MutationCases() {
		t.Run(mc.Name, func(t *testing.T) {
			rep := Check(mc.Scope, Options[State, Action]{StopAtViolation: true}, false)
			if rep.Violation == "" {
				t.Fatal("no counterexample")
			}
			m := New(mc.Scope)
			r := newModelRun(m)
			for i, st := range rep.Trace {
				cur := r.st
				if err := r.apply(st.Action, &st.State); err != nil {
					t.Logf("model: %s in %d steps; refiner rejects step %d (%s): %v", rep.Violation, len(rep.Trace), i+1, m.Describe(st.Action, &cur), err)
					return
				}
			}
			t.Fatalf("the refiner accepts the whole %d-step counterexample of %s", len(rep.Trace), rep.Violation)
		})
	}
}
