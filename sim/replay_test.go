package sim

import (
	"strings"
	"testing"

	"github.com/nolaproject/nola/model"
	"github.com/nolaproject/nola/nola"
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
	bad, err := Replay(1, script, nola.Mutations{SkipStoreFence: true})
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
	good, err := Replay(1, script, nola.Mutations{})
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
