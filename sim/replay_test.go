package sim

import (
	"strings"
	"testing"

	"github.com/nolaproject/nola/internal/mutation"
	"github.com/nolaproject/nola/model"
)

// TestReplaySkipStoreFenceCounterexample: the model's shortest
// counterexample for SkipStoreFence, turned into a scripted schedule,
// makes the real engine with the same mutation commit under an expired
// lease (the oracle's G2.fenced-commit, the model's property); the same
// schedule without the mutation passes (the store refuses the late
// commit).
func TestReplaySkipStoreFenceCounterexample(t *testing.T) {
	var mc model.MutationCase
	for _, c := range model.MutationCases() {
		if c.Name == "SkipStoreFence" {
			mc = c
		}
	}
	rep := model.Check(mc.Scope, model.Options[model.State, model.Action]{StopAtViolation: true}, false)
	if rep.Violation != "G2.fenced-commit" {
		t.Fatalf("model: got %q, want G2.fenced-commit", rep.Violation)
	}
	m := model.New(mc.Scope)
	script, err := ScriptFromTrace(m, rep.Trace)
	if err != nil {
		t.Fatalf("%v\n%s", err, m.FormatTrace(rep.Violation, rep.Trace))
	}
	for i, st := range script {
		t.Logf("script %d: %v", i+1, st)
	}
	bad, err := Replay(1, script, mutation.Of(mutation.SkipStoreFence))
	if err != nil {
		t.Fatalf("mutated replay: %v\n%s", err, bad.Trace)
	}
	if !bad.Has(rep.Violation) {
		t.Fatalf("the engine with SkipStoreFence did not reproduce %s; violations %v\n%s", rep.Violation, bad.Violations, bad.Trace)
	}
	t.Logf("with the mutation: %v", bad.Violations)
	if bad.KV[0] != "1" {
		t.Fatalf("with the mutation the late commit should have landed: A1 = %q", bad.KV[0])
	}
	good, err := Replay(1, script, mutation.Set{})
	if err != nil {
		t.Fatalf("clean replay: %v\n%s", err, good.Trace)
	}
	if len(good.Violations) > 0 {
		t.Fatalf("the unmutated engine fails the same schedule: %v\n%s", good.Violations, good.Trace)
	}
	// The late commit reached the store and was refused (not lost on
	// the way: the schedule is the same).
	if good.KV[0] != "" {
		t.Fatalf("without the mutation the late commit landed: A1 = %q", good.KV[0])
	}
	if !strings.Contains(good.Trace, "commit ok=false") {
		t.Fatalf("without the mutation no commit was refused: the schedule did not deliver it\n%s", good.Trace)
	}
}

// TestReplayTimerIgnoresFenceCounterexample: the model's shortest
// counterexample for TimerIgnoresFence — a timer armed, the server cut
// off until it fences at its local deadline, the timer firing on the
// dropped activation — replayed against the real engine with the same
// mutation reproduces the model's G1.dropped-start; without the mutation
// the fence stops the timer, and nothing fires.
func TestReplayTimerIgnoresFenceCounterexample(t *testing.T) {
	var mc model.MutationCase
	for _, c := range model.MutationCases() {
		if c.Name == "TimerIgnoresFence" {
			mc = c
		}
	}
	rep := model.Check(mc.Scope, model.Options[model.State, model.Action]{StopAtViolation: true}, false)
	if rep.Violation != "G1.dropped-start" {
		t.Fatalf("model: got %q, want G1.dropped-start", rep.Violation)
	}
	m := model.New(mc.Scope)
	script, err := ScriptFromTrace(m, rep.Trace)
	if err != nil {
		t.Fatalf("%v\n%s", err, m.FormatTrace(rep.Violation, rep.Trace))
	}
	for i, st := range script {
		t.Logf("script %d: %v", i+1, st)
	}
	bad, err := Replay(1, script, mutation.Of(mutation.TimerIgnoresFence))
	if err != nil {
		t.Fatalf("mutated replay: %v\n%s", err, bad.Trace)
	}
	if !bad.Has(rep.Violation) || !bad.TimerFired {
		t.Fatalf("the engine with TimerIgnoresFence did not reproduce %s (timer fired: %v); violations %v\n%s", rep.Violation, bad.TimerFired, bad.Violations, bad.Trace)
	}
	t.Logf("with the mutation: %v", bad.Violations)
	good, err := Replay(1, script, mutation.Set{})
	if err != nil {
		t.Fatalf("clean replay: %v\n%s", err, good.Trace)
	}
	if len(good.Violations) > 0 || good.TimerFired {
		t.Fatalf("the unmutated engine fails the same schedule (timer fired: %v): %v\n%s", good.TimerFired, good.Violations, good.Trace)
	}
	// The schedule did fence the server (the timer had its chance).
	if !strings.Contains(good.Trace, "fence s0#1") {
		t.Fatalf("without the mutation the server never fenced: the schedule did not run\n%s", good.Trace)
	}
}
