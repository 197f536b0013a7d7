package model

import (
	"testing"
	"time"
)

// fakeEnv is a RefEnv whose liveness the test sets.
type fakeEnv map[string]int64 // server → the incarnation live now (absent: none)

func (f fakeEnv) Live(s string, inc int64) bool { return inc != 0 && f[s] == inc }

// legalRun is a run the model allows: s0 and s1 register, actor a is
// placed on s0, confirmed and activated, runs one execution that commits
// and calls; then s0 stops being live (a pause past its deadline), its
// lease expires, a is placed on s1 and activated there.
func legalRun() []RefEvent {
	ttl := 3 * time.Second
	return []RefEvent{
		{Kind: RefGrant, Lease: 1, TTL: ttl, Now: 1},
		{Kind: RefRegister, Server: "s0", Inc: 1, Lease: 1, Applied: true, Now: 2},
		{Kind: RefGrant, Lease: 2, TTL: ttl, Now: 3},
		{Kind: RefRegister, Server: "s1", Inc: 1, Lease: 2, Applied: true, Now: 4},
		{Kind: RefPlace, Actor: "a", Owner: "s0", OwnerInc: 1, Epoch: 1, Applied: true, Now: 5},
		{Kind: RefRead, Server: "s0", Actor: "a", Found: true, Owner: "s0", OwnerInc: 1, Epoch: 1, Now: 6},
		{Kind: RefActivated, Server: "s0", Inc: 1, Actor: "a", Act: 1},
		{Kind: RefStart, Server: "s0", Inc: 1, Actor: "a", Act: 1, Op: "inc"},
		{Kind: RefCommitSend, Server: "s0", Inc: 1, Actor: "a", Epoch: 1, Msg: 1},
		{Kind: RefCommitApply, Actor: "a", Msg: 1, Applied: true, Now: 7},
		{Kind: RefCommitted, Server: "s0", Inc: 1, Actor: "a", Act: 1},
		{Kind: RefCall, Server: "s0", Inc: 1, Actor: "a", Act: 1, Op: "notify"},
		{Kind: RefEnd, Server: "s0", Inc: 1, Actor: "a", Act: 1, Applied: true},
		{Kind: RefKeepAlive, Lease: 2, Applied: true, Now: ttl + 1},
		// s0 is paused past its deadline from here on (the test's env).
		{Kind: RefKeepAlive, Lease: 2, Applied: true, Now: ttl + 10},
		{Kind: RefPlace, Actor: "a", Owner: "s1", OwnerInc: 1, Epoch: 2, Applied: true, Now: ttl + 11},
		{Kind: RefRead, Server: "s1", Actor: "a", Found: true, Owner: "s1", OwnerInc: 1, Epoch: 2, Now: ttl + 12},
		{Kind: RefActivated, Server: "s1", Inc: 1, Actor: "a", Act: 1},
		{Kind: RefStart, Server: "s1", Inc: 1, Actor: "a", Act: 1, Op: "inc"},
		{Kind: RefEnd, Server: "s1", Inc: 1, Actor: "a", Act: 1, Applied: true},
	}
}

// run feeds events to a refiner; s0 stops being live after step pauseAt.
func run(evs []RefEvent, pauseAt int) (*Refiner, *RefError) {
	env := fakeEnv{"s0": 1, "s1": 1}
	r := NewRefiner(env)
	for i, e := range evs {
		if i == pauseAt {
			delete(env, "s0")
		}
		if err := r.Step(e); err != nil {
			return r, err
		}
	}
	return r, nil
}

const pauseAt = 14

func TestRefinerAcceptsALegalRun(t *testing.T) {
	r, err := run(legalRun(), pauseAt)
	if err != nil {
		t.Fatal(err)
	}
	if st := r.Stats(); st.Steps != int64(len(legalRun())) || st.Actors != 1 || st.Servers != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestRefinerRejectsIllegalSteps: the refinement check is not vacuous.
// Each case changes one step of the legal run into one the model does not
// allow, and the refiner must reject exactly that step, for the expected
// rule.
func TestRefinerRejectsIllegalSteps(t *testing.T) {
	ttl := 3 * time.Second
	cases := []struct {
		name  string
		at    int // the step replaced (index into legalRun)
		ev    RefEvent
		pause int // when s0 stops being live
		rule  string
	}{
		{"place while the owner is live", 13, RefEvent{Kind: RefPlace, Actor: "a", Owner: "s1", OwnerInc: 1, Epoch: 2, Applied: true, Now: ttl}, pauseAt, "place"},
		{"activated without a confirming read", 5, RefEvent{Kind: RefRead, Server: "s0", Actor: "b", Now: 6}, pauseAt, "activated"},
		{"read disagrees with the store", 5, RefEvent{Kind: RefRead, Server: "s0", Actor: "a", Found: true, Owner: "s0", OwnerInc: 1, Epoch: 7, Now: 6}, pauseAt, "abstraction"},
		{"activated while not live", 6, RefEvent{Kind: RefActivated, Server: "s0", Inc: 1, Actor: "a", Act: 1}, 6, "activated"},
		{"start while not live", 7, RefEvent{Kind: RefStart, Server: "s0", Inc: 1, Actor: "a", Act: 1}, 7, "start"},
		{"commit sent while not live", 8, RefEvent{Kind: RefCommitSend, Server: "s0", Inc: 1, Actor: "a", Epoch: 1, Msg: 1}, 8, "commit-send"},
		{"commit fenced on a stale epoch", 8, RefEvent{Kind: RefCommitSend, Server: "s0", Inc: 1, Actor: "a", Epoch: 0, Msg: 1}, pauseAt, "commit-send"},
		{"result released past the deadline", 12, RefEvent{Kind: RefEnd, Server: "s0", Inc: 1, Actor: "a", Act: 1, Applied: true}, 12, "end"},
		{"call past the deadline", 11, RefEvent{Kind: RefCall, Server: "s0", Inc: 1, Actor: "a", Act: 1}, 11, "call"},
		{"store renews an expired lease", 14, RefEvent{Kind: RefKeepAlive, Lease: 1, Applied: true, Now: ttl + 10}, pauseAt, "keep-alive"},
		{"registration over a live record", 3, RefEvent{Kind: RefRegister, Server: "s0", Inc: 2, Lease: 2, Applied: true, Now: 4}, pauseAt, "register"},
		{"release while the activation is live", 12, RefEvent{Kind: RefRelease, Server: "s0", Inc: 1, Actor: "a", Epoch: 2, Applied: true, Now: 8}, pauseAt, "G1.release-live"},
		{"revoke while an activation is live", 12, RefEvent{Kind: RefRevoke, Lease: 1, Applied: true, Now: 8}, pauseAt, "G1.revoke-live"},
		// s0 never stops being live: when s1 activates a, s0's activation
		// is superseded and still live (drift beyond ρ).
		{"superseded activation still live", 19, RefEvent{Kind: RefCommitted, Server: "s1", Inc: 1, Actor: "a", Act: 1}, 99, "G1.superseded-live"},
		// The old activation starts again after the new one is ready.
		{"start on a superseded activation", 18, RefEvent{Kind: RefStart, Server: "s0", Inc: 1, Actor: "a", Act: 1}, 99, "G1.superseded-live"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			evs := legalRun()
			evs[c.at] = c.ev
			_, err := run(evs, c.pause)
			if err == nil {
				t.Fatalf("the illegal step %d (%s) was accepted", c.at+1, c.ev)
			}
			if err.Rule != c.rule {
				t.Fatalf("rejected for %q, want %q: %v", err.Rule, c.rule, err)
			}
			t.Log(err)
		})
	}
}

// TestRefinerRejectsLateCommit: a commit sent by an activation that is
// superseded before the store applies it is G2.stale-commit if applied,
// and a commit applied after its incarnation's lease expired is
// G2.fenced-commit.
func TestRefinerRejectsLateCommit(t *testing.T) {
	evs := legalRun()
	// s0's commit is still in flight (msg 1 sent at step 9) and lands
	// after s1 activated a.
	late := append(append([]RefEvent{}, evs[:9]...), evs[10:]...)
	late = append(late[:18], append([]RefEvent{{Kind: RefCommitApply, Actor: "a", Msg: 1, Applied: true, Now: 4 * time.Second}}, late[18:]...)...)
	_, err := run(late, pauseAt-1)
	if err == nil || err.Rule != "G2.fenced-commit" {
		t.Fatalf("got %v, want G2.fenced-commit", err)
	}
	// Refused, it is a legal step.
	late[18].Applied = false
	if _, err := run(late, pauseAt-1); err != nil {
		t.Fatalf("a refused late commit was rejected: %v", err)
	}
}
