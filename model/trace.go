package model

import (
	"fmt"
	"strings"
)

var actionNames = map[ActionKind]string{
	ATick: "tick (leases L old expire)", ARegister: "register",
	AKeepAlive:     "keep-alive",
	AFenceDeadline: "fence: local deadline passed", ACrash: "CRASH", ARestart: "process restarts",
	APlace: "placement: EnsureActivation", AArrive: "request arrives: activation inserted, Confirm/Bump read",
	AActivated:  "activate: lease re-checked",
	ACapRelease: "at capacity: Release sent", AStart: "execution starts (start check)",
	ACommitSend: "fenced commit sent", ACommitRefused: "commit refused locally (effectAllowed)",
	ASetTimer: "timer armed", ACall: "outgoing call sent", ACallRefused: "call gate refuses the call: invocation fails", AEnd: "output gate passed: result released",
	AWithhold: "output gate: result withheld, activation dropped", AZombieEnd: "fenced execution resumes and fails its check",
	AEvict: "idle eviction", AStoreApply: "store: evaluates request", AReply: "answer reaches sender",
	AGiveUp: "sender gives up: outcome unknown (in doubt)", ALoseMsg: "orphaned request lost",
	AGhostFire: "timer of a DROPPED activation fires and runs", AShutdown: "graceful shutdown: drop all, send releases",
	AShutdownEnd: "shutdown: lease revoked, process ends",
}

func srvName(i uint8) string { return fmt.Sprintf("s%d", i+1) }
func actName(a uint8) string { return fmt.Sprintf("A%d", a+1) }

// Describe renders action a taken from state s.
func (m *Model) Describe(a Action, s *State) string {
	n := actionNames[a.Kind]
	switch a.Kind {
	case ATick:
		var slow []string
		for i := 0; i < m.sc.Servers; i++ {
			if a.X&(1<<i) != 0 {
				slow = append(slow, srvName(uint8(i)))
			}
		}
		if len(slow) > 0 {
			return n + " (slow clock: " + strings.Join(slow, ",") + ")"
		}
		return n
	case ARegister, AFenceDeadline, ACrash, ARestart, AShutdown, AShutdownEnd:
		return srvName(a.S) + ": " + n
	case AKeepAlive:
		return srvName(a.S) + ": " + n + [...]string{": lease renewed", ": lease lost → FENCE", ": store renewed it, answer LOST"}[a.X]
	case APlace:
		return fmt.Sprintf("%s: %s places it on %s", actName(a.A), n, srvName(a.S))
	case AStoreApply, AReply, AGiveUp, ALoseMsg:
		mm := s.M[a.X]
		kind := map[uint8]string{msgCommit: "commit", msgCommitOK: "commit ok", msgCommitFenced: "commit fenced",
			msgRelease: "release", msgReleaseDone: "release answered"}[mm.Kind]
		return fmt.Sprintf("%s/%s: %s [%s of %s#%d epoch %d, %d→%d]", srvName(a.S), actName(a.A), n, kind,
			srvName(mm.S), mm.Inc, mm.Ep, mm.Base, mm.Val)
	case AActivated:
		if a.X == 1 {
			return fmt.Sprintf("%s/%s: %s → READY", srvName(a.S), actName(a.A), n)
		}
		return fmt.Sprintf("%s/%s: %s → lease lost, dropped", srvName(a.S), actName(a.A), n)
	case AStart:
		plan := [...]string{"read", "write then call", "arm timer", "", "write"}[a.X&0x7f]
		if a.X&0x80 != 0 {
			return fmt.Sprintf("%s/%s: %s (timer; %s)", srvName(a.S), actName(a.A), n, plan)
		}
		return fmt.Sprintf("%s/%s: %s (%s)", srvName(a.S), actName(a.A), n, plan)
	}
	return fmt.Sprintf("%s/%s: %s", srvName(a.S), actName(a.A), n)
}

// Summary renders the parts of s that traces need: each server's process
// and store records, each actor's record and activations.
func (m *Model) Summary(s *State) string {
	var b strings.Builder
	for i := 0; i < m.sc.Servers; i++ {
		v := &s.S[i]
		up := "up"
		switch {
		case v.Up == 0:
			up = "down"
		case v.Stop == 1:
			up = "stopping"
		}
		lease := "no lease"
		if v.Reg != 0 {
			lease = fmt.Sprintf("#%d rem=%d", v.Reg, v.Rem)
		}
		rec := "srv/-"
		if v.SRec != 0 {
			rec = fmt.Sprintf("srv/#%d age=%d", v.SRec, v.Age)
		}
		fmt.Fprintf(&b, "%s[%s %s %s", srvName(uint8(i)), up, lease, rec)
		for a := 0; a < m.sc.Actors; a++ {
			act := v.Acts[a]
			if act.Ph != phNone {
				ph := [...]string{"", "activating", "confirmed", "ready", "exec", "committing", "releasing"}[act.Ph]
				fmt.Fprintf(&b, " %s:%s#%d/e%d", actName(uint8(a)), ph, act.Inc, act.Ep)
				if act.Fl&flSuperseded != 0 {
					b.WriteString("(superseded)")
				}
			}
			if v.Zomb[a] != 0 {
				fmt.Fprintf(&b, " %s:zombie#%d", actName(uint8(a)), v.Zomb[a])
			}
		}
		if v.Doubt != 0 {
			fmt.Fprintf(&b, " doubt=%b", v.Doubt)
		}
		b.WriteString("] ")
	}
	for a := 0; a < m.sc.Actors; a++ {
		r := &s.A[a]
		owner := "-"
		if r.Owner != 0 {
			owner = fmt.Sprintf("%s#%d", srvName(r.Owner-1), r.OInc)
		}
		fmt.Fprintf(&b, "%s[owner %s e%d kv=%d] ", actName(uint8(a)), owner, r.Ep, r.KV)
	}
	return strings.TrimSpace(b.String())
}

// FormatTrace renders a counterexample as a numbered trace.
func (m *Model) FormatTrace(violation string, steps []Step[State, Action]) string {
	var b strings.Builder
	fmt.Fprintf(&b, "counterexample: %s in %d steps (scope %s)\n", violation, len(steps), m.sc.Name)
	prev := m.Init()
	fmt.Fprintf(&b, "  0. initial                      %s\n", m.Summary(&prev))
	for i, st := range steps {
		fmt.Fprintf(&b, "%3d. %s\n       %s\n", i+1, m.Describe(st.Action, &prev), m.Summary(&st.State))
		prev = st.State
	}
	fmt.Fprintf(&b, "     ⇒ %s\n", violation)
	return b.String()
}
