package sim

import (
	"testing"
)

// shedSeeds returns the first n seeds whose configuration turns shedding on.
func shedSeeds(n int, opts Options) []uint64 {
	var seeds []uint64
	for s := uint64(1); len(seeds) < n; s++ {
		if c := Generate(s, opts); c.Shed.Interval > 0 {
			seeds = append(seeds, s)
		}
	}
	return seeds
}

// TestSheddingSeeds runs seeds with shedding on (a third of all seeds,
// each with a fault aimed at a shedding round): servers release actors
// while crashes, pauses, partitions and slow store links strike, and every
// move is a release-then-place. None may break a checker; and moves must
// actually happen, or the seeds would test nothing.
func TestSheddingSeeds(t *testing.T) {
	n := 30
	if testing.Short() || raceEnabled {
		n = 8
	}
	var sheds, refused int64
	for _, seed := range shedSeeds(n, Options{}) {
		r := Run(Generate(seed, Options{}))
		if r.Err != nil {
			t.Fatalf("seed %d: %v", seed, r.Err)
		}
		if r.Failed() || r.Inconclusive() {
			t.Errorf("seed %d: %s\n%s", seed, r.Summary(), caughtBy(r))
		}
		sheds += r.Stats.Sheds
		refused += int64(r.Stats.ReleasesRefused)
	}
	t.Logf("%d shedding seeds: %d activations shed, %d releases refused by their compare", n, sheds, refused)
	if sheds < int64(n) {
		t.Fatalf("only %d activations shed in %d seeds: the shedding seeds hardly move anything", sheds, n)
	}
}
