package main

import (
	"strings"
	"testing"
)

// TestCheckAnswers: right answers pass; one wrong greeting or hash, or an
// object that never answered, fails.
func TestCheckAnswers(t *testing.T) {
	hash := "6b86b273ff34fce19d6b804eff5a3f5747ada4eaa22f1d49c01e52ddb7875b4b" // sha256("1")
	base := func() *workload {
		return &workload{greeters: []string{"g0"}, ops: []opRecord{
			{Actor: "greeter/g0", Outcome: outOK, Value: "hello, " + greeterArgs("g0")},
			{Actor: "greeter/g0", Outcome: outIndet},
			{Actor: "worker/sha256", Outcome: outOK, Arg: "1", Value: hash},
		}}
	}
	if r := checkAnswers(base()); !r.Ok {
		t.Fatalf("right answers failed: %v", r.PerActor)
	}
	for name, mutate := range map[string]func(w *workload){
		"wrong greeting": func(w *workload) { w.ops[0].Value = "hello, world" },
		"wrong hash":     func(w *workload) { w.ops[2].Arg = "2" },
		"no greeting":    func(w *workload) { w.ops = w.ops[1:] },
		"no worker call": func(w *workload) { w.ops = w.ops[:2] },
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
