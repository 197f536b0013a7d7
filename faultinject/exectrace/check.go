package exectrace

import (
	"fmt"
	"slices"
)

// Violation is one broken rule of the activation oracle.
type Violation struct {
	Rule   string `json:"rule"`
	Actor  string `json:"actor"`
	T      int64  `json:"t"`
	Detail string `json:"detail"`
}

func (v Violation) String() string { return fmt.Sprintf("%s %s: %s", v.Rule, v.Actor, v.Detail) }

// ActorStats counts what the oracle saw of one actor.
type ActorStats struct {
	Activations int `json:"activations"`
	Executions  int `json:"executions"`
	Released    int `json:"released"`
	// Servers lists the servers that hosted it.
	Servers []string `json:"servers"`
}

// Result is the oracle's verdict.
type Result struct {
	Actors     map[string]ActorStats `json:"actors"`
	Violations []Violation           `json:"violations"`
	// Unchecked lists expected actors with no execution in any log: a
	// vacuous pass is a failure.
	Unchecked []string `json:"unchecked"`
	Records   int      `json:"records"`
	// LateReports counts activations whose first execution was stamped
	// before their Activated report (see Check).
	LateReports int `json:"late_activation_reports"`
}

// Ok reports whether every rule held and every expected actor was seen.
func (r Result) Ok() bool { return len(r.Violations) == 0 && len(r.Unchecked) == 0 }

type actKey struct {
	server string
	pid    int
	act    uint64
}

func (k actKey) String() string { return fmt.Sprintf("%s[pid %d]/act%d", k.server, k.pid, k.act) }

type exec struct {
	op         string
	start, end int64 // end 0: never ended (the process died or the log stops)
	released   bool
}

type actTrack struct {
	key         actKey
	activatedAt int64
	execs       []exec
	running     int // index+1 of the open execution
}

// Check runs the oracle over the records of every server, in any order. expected names the actors
// ("ns/id") that must have executed at least once.
//
// Timestamps are CLOCK_MONOTONIC readings taken when each event was
// reported, which is after it happened. Activations of one actor are
// ordered by their Activated stamp. The rules, for activations α older
// than β of one actor (after docs/proofs/single-activation.md; the
// simulator's oracle checks the same with a complete view):
//
//	G1.stale-start      an execution starts on α after β was activated;
//	G1.release-overlap  an execution on α releases its result after an
//	                    execution on β started;
//	G1.unknown          an execution on an activation that was never
//	                    reported activated.
//
// The engine marks an activation ready (and wakes the invocations waiting
// for it) before it reports it, so a concurrent invocation may start, and
// be stamped, before the Activated report is: on a real machine the
// activating goroutine can be preempted between the two. So an activation
// is known if any record of its process reports it, at any time, and it
// counts as activated at the earlier of that report and its first start
// (both are stamped after the moment it became ready, so the rules stay
// as strict: an earlier activation time can only add stale starts). An
// execution on an activation that no record ever reports is G1.unknown.
//
// An execution that never ended (SIGKILL) or whose result was withheld
// (the output gate refused it past the deadline) made nothing observable
// after its start, so only its start is checked. A report stamped late —
// a process paused between the check and the log write — can only make a
// release look later, so the rules err on the side of reporting.
func Check(recs []Record, expected []string) Result {
	res := Result{Actors: map[string]ActorStats{}, Records: len(recs)}
	// Log order is not event order: the engine resolves an activation
	// before it reports it, so a waiting invocation may log its start
	// first. The shared clock orders them.
	recs = slices.Clone(recs)
	slices.SortStableFunc(recs, func(a, b Record) int {
		switch {
		case a.T < b.T:
			return -1
		case a.T > b.T:
			return 1
		}
		return 0
	})
	acts := map[string]map[actKey]*actTrack{}
	// First pass: every reported activation (the earliest report, records
	// being in clock order).
	for _, r := range recs {
		if r.Kind != KindActivated {
			continue
		}
		name := r.Namespace + "/" + r.Actor
		k := actKey{r.Server, r.PID, r.Activation}
		m := acts[name]
		if m == nil {
			m = map[actKey]*actTrack{}
			acts[name] = m
		}
		if m[k] == nil {
			m[k] = &actTrack{key: k, activatedAt: r.T}
		}
	}
	for _, r := range recs {
		name := r.Namespace + "/" + r.Actor
		k := actKey{r.Server, r.PID, r.Activation}
		t := acts[name][k]
		switch r.Kind {
		case KindStart:
			if t == nil {
				res.Violations = append(res.Violations, Violation{Rule: "G1.unknown", Actor: name, T: r.T,
					Detail: fmt.Sprintf("%s started on %s, which was never reported activated", r.Op, k)})
				continue
			}
			if r.T < t.activatedAt {
				// Started before its activation's report was stamped.
				t.activatedAt = r.T
				res.LateReports++
			}
			t.execs = append(t.execs, exec{op: r.Op, start: r.T})
			t.running = len(t.execs)
		case KindEnd:
			if t == nil || t.running == 0 {
				continue
			}
			x := &t.execs[t.running-1]
			x.end, x.released = r.T, r.Released
			t.running = 0
		}
	}
	for name, m := range acts {
		order := make([]*actTrack, 0, len(m))
		st := ActorStats{}
		for _, t := range m {
			order = append(order, t)
			st.Activations++
			st.Executions += len(t.execs)
			for _, x := range t.execs {
				if x.released {
					st.Released++
				}
			}
			if !slices.Contains(st.Servers, t.key.server) {
				st.Servers = append(st.Servers, t.key.server)
			}
		}
		slices.Sort(st.Servers)
		res.Actors[name] = st
		slices.SortFunc(order, func(a, b *actTrack) int {
			switch {
			case a.activatedAt < b.activatedAt:
				return -1
			case a.activatedAt > b.activatedAt:
				return 1
			}
			return 0
		})
		for j, beta := range order {
			first := int64(-1)
			for _, x := range beta.execs {
				if first < 0 || x.start < first {
					first = x.start
				}
			}
			for _, alpha := range order[:j] {
				for _, x := range alpha.execs {
					if x.start > beta.activatedAt {
						res.Violations = append(res.Violations, Violation{Rule: "G1.stale-start", Actor: name, T: x.start,
							Detail: fmt.Sprintf("%s started on %s at %d, %v after the newer %s was activated", x.op, alpha.key, x.start, nanos(x.start-beta.activatedAt), beta.key)})
					}
					if first >= 0 && x.released && x.end > first && x.start < first {
						res.Violations = append(res.Violations, Violation{Rule: "G1.release-overlap", Actor: name, T: x.end,
							Detail: fmt.Sprintf("%s on %s ran [%d, %d] and released its result %v after an execution on the newer %s started", x.op, alpha.key, x.start, x.end, nanos(x.end-first), beta.key)})
					}
				}
			}
		}
	}
	for _, e := range expected {
		if res.Actors[e].Executions == 0 {
			res.Unchecked = append(res.Unchecked, e)
		}
	}
	slices.SortFunc(res.Violations, func(a, b Violation) int {
		switch {
		case a.T < b.T:
			return -1
		case a.T > b.T:
			return 1
		}
		return 0
	})
	return res
}

type nanos int64

func (n nanos) String() string { return fmt.Sprintf("%.3fms", float64(n)/1e6) }
