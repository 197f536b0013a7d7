package sim

import (
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/nolaproject/nola/internal/race"
	"github.com/nolaproject/nola/model"
)

// refineSeeds is how many seeds TestRefinement checks (NOLA_REFINE_SEEDS
// overrides it).
func refineSeeds(t *testing.T) int {
	if s := os.Getenv("NOLA_REFINE_SEEDS"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			t.Fatalf("NOLA_REFINE_SEEDS=%q", s)
		}
		return n
	}
	if race.Enabled {
		return 30
	}
	return 300
}

// runSeeds runs the short configurations of seeds from … from+n−1 on
// GOMAXPROCS workers and hands each result to each (one at a time);
// stop(r) true starts no further seed.
func runSeeds(from uint64, n int, opts Options, each func(*Result) (stop bool)) {
	seeds := make(chan uint64)
	results := make(chan *Result)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				results <- Run(RefineConfig(seed, opts))
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		defer close(seeds)
		for i := range n {
			select {
			case seeds <- from + uint64(i):
			case <-done:
				return
			}
		}
	}()
	go func() {
		wg.Wait()
		close(results)
	}()
	stopped := false
	for r := range results {
		if !stopped && each(r) {
			stopped = true
			close(done)
		}
	}
}

// TestRefinement is issue 13's refinement check: hundreds of simulator
// runs of the real engine, each abstracted event by event into steps of
// the protocol model (model.Refiner), and every step must be a transition
// the model allows from the abstract state reached so far. A rejected step
// fails with its seed, its number and the event. The runs must also
// exercise every kind of step (a check that saw no placement or no
// keep-alive would prove little).
func TestRefinement(t *testing.T) {
	n := refineSeeds(t)
	var (
		byKind [32]int64
		steps  int64
		runs   int
	)
	runSeeds(1, n, Options{}, func(r *Result) bool {
		runs++
		steps += r.RefStats.Steps
		for i, k := range r.RefStats.ByKind {
			byKind[i] += k
		}
		if r.Refinement != nil {
			t.Errorf("seed %d: %v\nreplay: go run ./sim/cmd/nolasim -seed %d -refine -v", r.Config.Seed, r.Refinement, r.Config.Seed)
		}
		if r.Err != nil {
			t.Errorf("seed %d: the run broke: %v", r.Config.Seed, r.Err)
		}
		return false
	})
	if runs != n {
		t.Fatalf("%d runs, want %d", runs, n)
	}
	t.Logf("refinement: %d seeds, %d steps checked, every one a model transition", runs, steps)
	for k := model.RefGrant; k <= model.RefCommitted; k++ {
		t.Logf("  %-12s %9d", k, byKind[k])
		if byKind[k] == 0 {
			t.Errorf("no %s step in %d seeds", k, runs)
		}
	}
}

// TestRefinementRejectsMutations is the refinement check's non-vacuity:
// with a protocol rule broken in the engine, some step of some run is not
// a model transition. Each mutation must be rejected within a few seeds
// (today within 2–29 seeds; the bound leaves room).
func TestRefinementRejectsMutations(t *testing.T) {
	for _, name := range []string{"SkipStoreFence", "SkipDeadlineCheck", "IgnoreIncarnation", "TimerIgnoresFence", "BeyondRho"} {
		t.Run(name, func(t *testing.T) {
			opts, err := ParseOptions(name)
			if err != nil {
				t.Fatal(err)
			}
			var first *Result
			const bound = 100
			runSeeds(1, bound, opts, func(r *Result) bool {
				if r.Refinement != nil && (first == nil || r.Config.Seed < first.Config.Seed) {
					first = r
				}
				return first != nil
			})
			if first == nil {
				t.Fatalf("%s: no step rejected in %d seeds: the refinement check cannot see this mutation", name, bound)
			}
			t.Logf("%s: seed %d rejected: %v", name, first.Config.Seed, first.Refinement)
			// The same seed without the mutation passes.
			clean := Run(RefineConfig(first.Config.Seed, Options{}))
			if clean.Refinement != nil {
				t.Fatalf("seed %d fails without the mutation too: %v", first.Config.Seed, clean.Refinement)
			}
		})
	}
}

// TestRefinementKeepsTheTraceHash: the check only observes; a run's trace
// hash is the same with it and without it.
func TestRefinementKeepsTheTraceHash(t *testing.T) {
	for seed := uint64(1); seed <= 3; seed++ {
		on := Run(RefineConfig(seed, Options{}))
		cfg := RefineConfig(seed, Options{})
		cfg.Refine = false
		off := Run(cfg)
		if on.Hash != off.Hash || on.RefStats.Steps == 0 || off.RefStats.Steps != 0 {
			t.Fatalf("seed %d: hash %x with the check (%d steps), %x without (%d steps)", seed, on.Hash, on.RefStats.Steps, off.Hash, off.RefStats.Steps)
		}
	}
}
