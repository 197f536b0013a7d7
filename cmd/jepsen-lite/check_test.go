package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/nolaproject/nola/faultinject/exectrace"
)

// TestCheckAnswers: right answers pass; one wrong greeting or hash, or an
// object that never answered, fails.
func TestCheckAnswers(t *testing.T) {
	hash := "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b" // sha256("1")
	base := func() *workload {
		a1, a2 := greeterCallArgs("g0", 1, 1), greeterCallArgs("g0", 2, 5)
		return &workload{greeters: []string{"g0"}, ops: []opRecord{
			// The call with a1 created g0 (indeterminate: it timed out).
			{Actor: "greeter/g0", Arg: a1, Start: 0, End: 20, Outcome: outIndet},
			{Actor: "greeter/g0", Arg: a2, Start: 5, End: 10, Outcome: outOK, Value: "hello, " + a1},
			{Actor: "worker/sha256", Outcome: outOK, Arg: "1", Value: hash},
			{Actor: "greeter/g0", Arg: greeterCallArgs("g0", 3, 9), Start: 30, End: 40, Outcome: outOK, Value: "hello, " + a1},
		}}
	}
	if r := checkAnswers(base()); !r.Ok {
		t.Fatalf("right answers failed: %v", r.PerActor)
	}
	for name, mutate := range map[string]func(w *workload){
		"wrong greeting": func(w *workload) { w.ops[1].Value = "hello, world" },
		"wrong hash":     func(w *workload) { w.ops[2].Arg = "2" },
		"no greeting":    func(w *workload) { w.ops = w.ops[2:3] },
		"no worker call": func(w *workload) { w.ops = slices.Delete(w.ops, 2, 3) },
		// A later answer names the arguments of the call it answers: they
		// were stored, or the creation ran again with them.
		"a later call's arguments": func(w *workload) { w.ops[3].Value = "hello, " + w.ops[3].Arg },
		// The first answer names a call that started after it.
		"arguments not sent yet": func(w *workload) {
			w.ops[1].Value, w.ops[3].Value = "hello, "+w.ops[3].Arg, "hello, "+w.ops[3].Arg
		},
	} {
		w := base()
		mutate(w)
		r := checkAnswers(w)
		if r.Ok {
			t.Errorf("%s: passed: %v", name, r.PerActor)
		}
		bad := false
		for _, v := range r.PerActor {
			bad = bad || strings.HasPrefix(v, "WRONG") || strings.HasPrefix(v, "NO HISTORY")
		}
		if !bad {
			t.Errorf("%s: no verdict line says why: %v", name, r.PerActor)
		}
	}
}

// TestDeletableNotLostWriteChecked: a deletable counter is left to
// porcupine (a delete drops acknowledged increments on purpose), the
// others are checked.
func TestDeletableNotLostWriteChecked(t *testing.T) {
	if (actorRef{"kvcounter", "d0"}).durable() || !(actorRef{"kvcounter", "d0"}).deletable() {
		t.Fatal("kvcounter/d0 must be deletable and not lost-write checked")
	}
	if !(actorRef{"kvcounter", "k0"}).durable() || (actorRef{"kvcounter", "k0"}).deletable() || !fenceActor.durable() {
		t.Fatal("kvcounter/k0 and the fence actor must be lost-write checked")
	}
}

// TestReportRendersModeAndRounds: the HTML report names the network mode,
// the faults it could not inject and the stale-owner rounds.
func TestReportRendersModeAndRounds(t *testing.T) {
	dir := t.TempDir()
	w := &workload{}
	s := summarize(config{}, 1, w, nil, nil, exectrace.Result{}, 0, true)
	s.NotInjected = []string{"etcd-partition (needs the netns mode)"}
	s.StaleOwner = []staleRound{{Owner: "s0", NewOwner: "s1", NewAcked: 7, FreshRead: "3", Effective: true}}
	if err := writeReport(dir, s, w); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "report.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"network namespaces", "etcd-partition (needs the netns mode)", "stale-owner rounds", "<td>s1</td>"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("report lacks %q", want)
		}
	}
	if s.Net != "netns" {
		t.Errorf("net = %q", s.Net)
	}
}

// TestInconclusiveIsNotAViolation: a check that fails because it had
// nothing to decide (no acknowledged write, no history, no final read)
// fails the run with exitInconclusive, not exitFail — make
// jepsen-mutations counts only exitFail as a caught mutation, so a run
// whose porcupine budget ran out must not pass for a catch. A real
// violation is exitFail.
func TestInconclusiveIsNotAViolation(t *testing.T) {
	k := actorRef{"kvcounter", "k0"}
	m := actorRef{"kvmap", "m0"}
	inc := func(v string) opRecord { return opRecord{Actor: k.String(), Op: "inc", Outcome: outOK, Value: v} }
	put := func(arg string, start, end int64) opRecord {
		return opRecord{Actor: m.String(), Op: "put", Key: "a", Arg: arg, Outcome: outOK, Start: start, End: end}
	}
	final := func(kv, mv string) map[string]string {
		return map[string]string{k.String(): kv, m.String() + "/a": mv, m.String() + "/b": "", m.String() + "/c": ""}
	}
	noPuts := []opRecord{put("x", 0, 1)} // keys b and c: nothing to check
	for name, c := range map[string]struct {
		ops       []opRecord
		final     map[string]string
		violation bool
	}{
		"no acknowledged write": {nil, final("0", ""), false},
		"no final read":         {append([]opRecord{inc("1")}, noPuts...), map[string]string{}, false},
		"lost increment":        {append([]opRecord{inc("1"), inc("2")}, noPuts...), final("1", "x"), true},
		"duplicate result":      {append([]opRecord{inc("1"), inc("1")}, noPuts...), final("2", "x"), true},
		"overwritten put":       {[]opRecord{inc("1"), put("x", 0, 1), put("y", 2, 3)}, final("1", "x"), true},
		"put never written":     {[]opRecord{inc("1"), put("x", 0, 1)}, final("1", "z"), true},
	} {
		w := &workload{actors: []actorRef{k, m}, ops: c.ops}
		res, _ := checkLostWrites(w, c.final, nil)
		if res.Ok {
			t.Errorf("%s: passed: %v", name, res.PerActor)
			continue
		}
		if res.Violation != c.violation {
			t.Errorf("%s: violation = %v, want %v: %v", name, res.Violation, c.violation, res.PerActor)
		}
		s := summarize(config{}, 1, &workload{}, []checkerResult{res}, nil, exectrace.Result{}, 0, false)
		want := exitInconclusive
		if c.violation {
			want = exitFail
		}
		if got := verdictCode(s); got != want {
			t.Errorf("%s: exit %d, want %d", name, got, want)
		}
	}

	// Answers: a wrong one is a violation, none at all is not.
	a := greeterCallArgs("g0", 0, 0)
	w := &workload{greeters: []string{"g0"}, ops: []opRecord{{Actor: "greeter/g0", Arg: a, Outcome: outOK, Value: "hello, " + a}}}
	if r := checkAnswers(w); r.Ok || r.Violation {
		t.Errorf("no worker answer: ok %v, violation %v", r.Ok, r.Violation)
	}
	w.ops = append(w.ops, opRecord{Actor: "worker/sha256", Outcome: outOK, Arg: "1", Value: "00"})
	if r := checkAnswers(w); r.Ok || !r.Violation {
		t.Errorf("wrong hash: ok %v, violation %v", r.Ok, r.Violation)
	}
	if verdictCode(&summary{Pass: true}) != exitPass {
		t.Error("a pass is not exit 0")
	}
}
