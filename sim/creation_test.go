package sim

import (
	"testing"

	"github.com/nolaproject/nola/internal/mutation"
)

// creatorSeeds bounds the creation hook's sweeps.
const creatorSeeds = 60

// TestCreatorsUnderTheSimulator runs the default mix plus KVCreator — a
// durable counter whose creation hook sets it to its creation argument —
// under the simulator's faults: every history must stay a counter from 0
// without reset (porcupine), so the hook ran to a commit exactly once and
// its argument survived every crash, with the oracle's checks as usual.
// Then each break of the exactly-once guard must be caught: running the
// hook at every activation resets counters at the first reactivation.
func TestCreatorsUnderTheSimulator(t *testing.T) {
	n := creatorSeeds
	if testing.Short() {
		n = 10
	}
	created := 0
	Sweep(1, n, 0, Options{Catalog: CreatorCatalog()}, func(r *Result) bool {
		checkSeed(t, r, DefaultHTMLDir())
		kinds := actorKinds(&r.Config)
		for _, a := range r.Config.Actors {
			if kinds[a.ID].Type == TypeKVCreator {
				created++
			}
		}
		return false
	})
	if created == 0 {
		t.Fatal("no seed placed a KVCreator")
	}
	t.Logf("%d seeds, %d KVCreator actors, every history linearizable", n, created)
	opts := Options{Catalog: CreatorCatalog()}
	if a, b := Run(Generate(3, opts)), Run(Generate(3, opts)); a.Hash != b.Hash {
		t.Errorf("seed 3 with creators: trace hashes %x and %x differ", a.Hash, b.Hash)
	}

	var first *Result
	Sweep(1, 200, 0, Options{Catalog: CreatorCatalog(), Mutations: Mutations{set: mutation.Of(mutation.CreateEveryActivation)}}, func(r *Result) bool {
		if r.Failed() && (first == nil || r.Config.Seed < first.Config.Seed) {
			first = r
		}
		return first != nil
	})
	if first == nil {
		t.Fatal("CreateEveryActivation was not caught in 200 seeds")
	}
	if first.Err != nil {
		t.Fatalf("seed %d broke instead of reporting a violation: %v", first.Config.Seed, first.Err)
	}
	t.Logf("CreateEveryActivation caught at seed %d by %s", first.Config.Seed, caughtBy(first))
}
