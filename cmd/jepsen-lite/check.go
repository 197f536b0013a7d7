package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nolaproject/nola/faultinject/exectrace"
	"github.com/nolaproject/nola/linearizability"
)

// checkerResult is one checker's verdict.
type checkerResult struct {
	Name string `json:"name"`
	Ok   bool   `json:"ok"`
	// Violation: the checker found proof of a bug (a non-linearizable
	// history, a lost write, a stale execution, a wrong answer). A check
	// that fails without it is inconclusive (a budget ran out, an object
	// has no history, no final read answered): it fails the run too, but
	// it caught nothing.
	Violation bool     `json:"violation"`
	Detail    []string `json:"detail,omitempty"`
	// PerActor is each actor's verdict line.
	PerActor map[string]string `json:"per_actor,omitempty"`
	// Pages are porcupine visualizations of failing actors (file names
	// relative to the report).
	Pages []string `json:"pages,omitempty"`
}

// checkLinearizable runs porcupine per actor; an actor with no operation
// at all, or a check that ran out of budget, fails (no vacuous pass).
func checkLinearizable(w *workload, out string, budget time.Duration) checkerResult {
	res := checkerResult{Name: "linearizable (porcupine, per actor)", Ok: true, PerActor: map[string]string{}}
	w.mu.Lock()
	ops := w.hist.Ops()
	w.mu.Unlock()
	rep, err := linearizability.Check(ops, budget)
	if err != nil {
		res.Ok = false
		res.Detail = append(res.Detail, err.Error())
		return res
	}
	seen := map[string]bool{}
	for _, v := range rep.Verdicts {
		seen[v.Object] = true
		okOps := v.Ops - v.Indeterminate
		line := fmt.Sprintf("%s: %d ops (%d indeterminate)", v.Result, v.Ops, v.Indeterminate)
		switch {
		case v.Result == linearizability.Illegal:
			res.Ok, res.Violation = false, true
			page := "porcupine-" + linearizability.FileName(v.Object) + ".html"
			if err := v.WriteHTML(filepath.Join(out, page), nil); err == nil {
				res.Pages = append(res.Pages, page)
			}
			line = "NOT LINEARIZABLE: " + line + " — see " + page
		case v.Result == linearizability.Unknown:
			res.Ok = false
			line = "UNKNOWN (check budget ran out): " + line
		case okOps == 0:
			res.Ok = false
			line = "NO HISTORY: no call returned: " + line
		}
		res.PerActor[v.Object] = line
	}
	for _, a := range w.actors {
		for _, obj := range a.objects() {
			if !seen[obj] {
				res.Ok = false
				res.PerActor[obj] = "NO HISTORY: never called"
			}
		}
	}
	return res
}

// checkLostWrites: for every durable counter, the final read (after every
// fault healed) must count every acknowledged increment — at least as
// many as were acknowledged, and at least the largest value an
// acknowledged increment returned — and nothing that was never attempted
// — at most acknowledged + indeterminate. Two acknowledged increments
// returning the same value mean one of them was lost.
//
// For every key of a KV map, the final read must name a value some put
// attempted (or nothing, if no put was acknowledged), and not one an
// acknowledged put overwrote for sure: a put acknowledged after the
// final value's put was acknowledged and started after it ended.
func checkLostWrites(w *workload, final map[string]string, finalErr error) (checkerResult, int) {
	res := checkerResult{Name: "no lost acknowledged write (durable actors)", Ok: true, PerActor: map[string]string{}}
	lost := 0
	if finalErr != nil {
		res.Ok = false
		res.Detail = append(res.Detail, finalErr.Error())
	}
	w.mu.Lock()
	ops := slices.Clone(w.ops)
	w.mu.Unlock()
	for _, a := range w.actors {
		if !a.durable() {
			continue
		}
		if !a.counter() {
			for _, k := range mapKeys {
				obj := a.String() + "/" + k
				line, n, violation := checkMapKey(ops, a.String(), k, final, obj)
				lost += n
				res.PerActor[obj] = line
				if !strings.HasPrefix(line, "ok") {
					res.Ok = false
				}
				res.Violation = res.Violation || violation
			}
			continue
		}
		name := a.String()
		var acked, indet int64
		var maxVal int64
		vals := map[int64]int{}
		for _, o := range ops {
			if o.Actor != name || o.Op != "inc" {
				continue
			}
			switch o.Outcome {
			case outOK:
				acked++
				v, _ := strconv.ParseInt(o.Value, 10, 64)
				maxVal = max(maxVal, v)
				vals[v]++
			case outIndet:
				indet++
			}
		}
		fv, ok := final[name]
		v, err := strconv.ParseInt(fv, 10, 64)
		if ok && err != nil {
			res.Ok, res.Violation = false, true
			res.PerActor[name] = fmt.Sprintf("final read %q is not a number", fv)
			continue
		}
		if !ok {
			res.Ok = false
			res.PerActor[name] = "NO FINAL READ"
			continue
		}
		var bad []string
		if v < acked || v < maxVal {
			bad = append(bad, fmt.Sprintf("final %d < acknowledged (%d increments, largest result %d): %d lost", v, acked, maxVal, max(acked, maxVal)-v))
			lost += int(max(acked, maxVal) - v)
		}
		if v > acked+indet {
			bad = append(bad, fmt.Sprintf("final %d > acknowledged %d + indeterminate %d: a write nobody attempted", v, acked, indet))
		}
		var dups []int64
		for val, n := range vals {
			if n > 1 {
				dups = append(dups, val)
				lost += n - 1
			}
		}
		if len(dups) > 0 {
			// Bounded: a stale write can make hundreds of duplicates.
			slices.Sort(dups)
			var eg []string
			for _, d := range dups[:min(len(dups), 5)] {
				eg = append(eg, fmt.Sprintf("%d×%d", d, vals[d]))
			}
			bad = append(bad, fmt.Sprintf("%d values were returned by more than one acknowledged increment (value×times: %s%s)",
				len(dups), strings.Join(eg, ", "), map[bool]string{true: ", …"}[len(dups) > 5]))
		}
		if len(bad) > 0 {
			res.Violation = true
		}
		if acked == 0 {
			bad = append(bad, "no acknowledged increment: nothing was checked")
		}
		if len(bad) > 0 {
			res.Ok = false
			res.PerActor[name] = fmt.Sprint(bad)
		} else {
			res.PerActor[name] = fmt.Sprintf("ok: final %d, %d acknowledged, %d indeterminate increments", v, acked, indet)
		}
	}
	return res, lost
}

// checkActivations runs the real-process activation oracle over every
// server's execution log.
func checkActivations(w *workload, traces []string) (checkerResult, exectrace.Result) {
	res := checkerResult{Name: "single activation (execution-trace oracle)", Ok: true, PerActor: map[string]string{}}
	var recs []exectrace.Record
	for _, t := range traces {
		r, err := exectrace.ReadFile(t)
		if err != nil {
			res.Ok = false
			res.Detail = append(res.Detail, err.Error())
			continue
		}
		recs = append(recs, r...)
	}
	var expected []string
	for _, a := range w.actors {
		expected = append(expected, namespace+"/"+a.id)
	}
	for _, c := range w.callers {
		expected = append(expected, namespace+"/"+c)
	}
	for _, t := range w.tickers {
		expected = append(expected, namespace+"/"+t)
	}
	for _, g := range w.greeters {
		expected = append(expected, namespace+"/"+g)
	}
	or := exectrace.Check(recs, expected)
	if !or.Ok() {
		res.Ok = false
	}
	res.Violation = len(or.Violations) > 0
	for _, v := range or.Violations {
		if len(res.Detail) < 50 {
			res.Detail = append(res.Detail, v.String())
		}
	}
	if n := len(or.Violations); n > 50 {
		res.Detail = append(res.Detail, fmt.Sprintf("… %d violations in all", n))
	}
	if or.LateReports > 0 {
		// Not a violation (see exectrace.Check): said so the reader knows
		// the oracle dated those activations by their first start.
		res.Detail = append(res.Detail, fmt.Sprintf("note: %d activations had an execution stamped before their Activated report; dated by that start", or.LateReports))
	}
	for _, u := range or.Unchecked {
		res.Detail = append(res.Detail, "NO HISTORY: "+u+" has no execution in any trace")
	}
	for name, st := range or.Actors {
		res.PerActor[name] = fmt.Sprintf("%d activations on %v, %d executions (%d released)", st.Activations, st.Servers, st.Executions, st.Released)
	}
	return res, or
}

// checkMapKey is the lost-write check of one map key; it returns the
// verdict line, the number of lost acknowledged writes and whether the
// line is a violation (not merely nothing to check).
func checkMapKey(ops []opRecord, actor, key string, final map[string]string, obj string) (string, int, bool) {
	v, ok := final[obj]
	if !ok {
		return "NO FINAL READ", 0, false
	}
	var src *opRecord
	var acked, indet int
	for i := range ops {
		o := &ops[i]
		if o.Actor != actor || o.Key != key || o.Op != "put" {
			continue
		}
		switch o.Outcome {
		case outOK:
			acked++
		case outIndet:
			indet++
		default:
			continue
		}
		if o.Arg == v {
			src = o
		}
	}
	switch {
	case acked == 0:
		return "no acknowledged put: nothing was checked", 0, false
	case v == "":
		return fmt.Sprintf("final read found nothing after %d acknowledged puts: all lost", acked), acked, true
	case src == nil:
		return fmt.Sprintf("final value %q was never written", v), 0, true
	}
	if src.Outcome == outOK {
		for _, o := range ops {
			if o.Actor == actor && o.Key == key && o.Op == "put" && o.Outcome == outOK && o.Start > src.End {
				return fmt.Sprintf("final value %q, but put %q started after it was acknowledged and was acknowledged too: lost", v, o.Arg), 1, true
			}
		}
	}
	return fmt.Sprintf("ok: final %q (%s), %d acknowledged, %d indeterminate puts", v, src.Outcome, acked, indet), 0, false
}

// greeterLife is what every answer of greeter obj must be. Each call
// passes creation arguments of its own (greeterCallArgs), and the greeter
// is never deleted: one life, created by one call, so every answer must
// name the arguments of that call — the same ones throughout, sent by a
// call that had started before the first answer. An answer naming a later
// call's arguments means a later call's arguments were stored or its
// creation ran again.
func greeterLife(ops []opRecord, obj string) func(opRecord) string {
	var first *opRecord
	for i := range ops {
		if o := &ops[i]; o.Actor == obj && o.Outcome == outOK && (first == nil || o.End < first.End) {
			first = o
		}
	}
	if first != nil {
		for _, o := range ops {
			if o.Actor == obj && o.Start <= first.End && first.Value == "hello, "+o.Arg {
				return func(opRecord) string { return first.Value }
			}
		}
	}
	return func(opRecord) string { return "hello, <the arguments of a call started before the first answer>" }
}

// checkAnswers checks the calls that have no model: every answer of a
// greeter names the creation arguments it was created with, and every
// answer of the stateless sha256 worker is the hash of its payload. Each
// object must have answered at least once (no vacuous pass).
func checkAnswers(w *workload) checkerResult {
	res := checkerResult{Name: "right answers (creation arguments, stateless workers)", Ok: true, PerActor: map[string]string{}}
	w.mu.Lock()
	ops := slices.Clone(w.ops)
	w.mu.Unlock()
	want := map[string]func(o opRecord) string{
		"worker/sha256": func(o opRecord) string {
			sum := sha256.Sum256([]byte(o.Arg))
			return hex.EncodeToString(sum[:])
		},
	}
	for _, g := range w.greeters {
		want["greeter/"+g] = greeterLife(ops, "greeter/"+g)
	}
	for obj, expect := range want {
		var ok, wrong int
		var first string
		for _, o := range ops {
			if o.Actor != obj || o.Outcome != outOK {
				continue
			}
			ok++
			if e := expect(o); o.Value != e {
				wrong++
				if first == "" {
					first = fmt.Sprintf(" (first: %q, want %q, via %s at %.2fs)", o.Value, e, o.Server, time.Duration(o.Start).Seconds())
				}
			}
		}
		switch {
		case ok == 0:
			res.Ok = false
			res.PerActor[obj] = "NO HISTORY: no call answered"
		case wrong > 0:
			res.Ok, res.Violation = false, true
			res.PerActor[obj] = fmt.Sprintf("WRONG: %d of %d answers%s", wrong, ok, first)
		default:
			res.PerActor[obj] = fmt.Sprintf("ok: %d answers", ok)
		}
	}
	return res
}
