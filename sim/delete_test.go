package sim

import (
	"testing"
	"time"
)

// TestSeedsWithDeletes runs generated simulations whose clients also
// delete the counters they call (Client.Delete, under the same faults):
// porcupine checks the histories against the models with delete, and the
// oracle checks that no commit of a deleted life lands
// (G2.deleted-life-commit) besides its usual rules. The mutation that keeps
// the generation across deletes is caught by TestMutationsAreCaught
// (DeleteSkipsGeneration).
func TestSeedsWithDeletes(t *testing.T) {
	n := seedCount(t) / 4
	dir := DefaultHTMLDir()
	var agg Aggregate
	deletes, notFound := 0, 0
	start := time.Now()
	Sweep(1, n, 0, Options{Deletes: true, CheckBudget: seedBudget()}, func(r *Result) bool {
		agg.Add(r)
		deletes += r.Stats.Deletes
		for _, op := range r.History {
			if op.Name == "delete" && !op.Indeterminate && !op.Found {
				notFound++
			}
		}
		checkSeed(t, r, dir)
		return false
	})
	t.Log(agg.Figures(time.Since(start)))
	t.Logf("deletes: %d acknowledged, %d answered not found, in %d seeds", deletes, notFound, n)
	if deletes < n || notFound == 0 {
		t.Errorf("the workload deleted too little: %d deletes (%d not found) in %d seeds", deletes, notFound, n)
	}
}

// The oracle's G2.deleted-life-commit rule is not vacuous: with the store
// fence and the deadline check both off, an old life's late commit lands
// after its actor was deleted, and the rule reports it.
func TestDeletedLifeCommitIsCaught(t *testing.T) {
	opts, err := ParseOptions("SkipStoreFence,SkipDeadlineCheck")
	if err != nil {
		t.Fatal(err)
	}
	opts.Deletes = true
	first := uint64(0)
	Sweep(1, maxMutationSeeds, 0, opts, func(r *Result) bool {
		for _, v := range r.Violations {
			if v.Rule == "G2.deleted-life-commit" && (first == 0 || r.Config.Seed < first) {
				first = r.Config.Seed
			}
		}
		return first != 0
	})
	if first == 0 {
		t.Fatalf("no G2.deleted-life-commit in %d seeds", maxMutationSeeds)
	}
	t.Logf("G2.deleted-life-commit first reported at seed %d", first)
}

// Deletes keep runs deterministic: a seed with deletes replays bit for bit.
func TestDeletesAreDeterministic(t *testing.T) {
	opts := Options{Deletes: true}
	for _, seed := range []uint64{3, 7} {
		a, b := Run(Generate(seed, opts)), Run(Generate(seed, opts))
		if a.Hash != b.Hash || a.Stats.Deletes != b.Stats.Deletes {
			t.Fatalf("seed %d: hashes %x and %x, deletes %d and %d", seed, a.Hash, b.Hash, a.Stats.Deletes, b.Stats.Deletes)
		}
		if a.Stats.Deletes == 0 {
			t.Fatalf("seed %d ran no delete", seed)
		}
	}
}
