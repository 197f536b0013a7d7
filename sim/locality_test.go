package sim

import (
	"testing"
)

// localitySeeds returns the first n seeds whose configuration turns
// locality moves on.
func localitySeeds(n int, opts Options) []uint64 {
	var seeds []uint64
	for s := uint64(1); len(seeds) < n; s++ {
		if Generate(s, opts).Locality.Enabled {
			seeds = append(seeds, s)
		}
	}
	return seeds
}

// TestLocalitySeeds runs seeds with locality moves on (a quarter of all
// seeds, each with a fault aimed at a round): servers release actors
// towards the servers their calls go to while crashes, pauses, partitions
// and slow store links strike, and every move is a release-then-place
// that the next placement may follow. None may break a checker; and
// moves must actually happen, or the seeds would test nothing.
func TestLocalitySeeds(t *testing.T) {
	n := 24
	if testing.Short() || raceEnabled {
		n = 6
	}
	var moves, refused int64
	for _, seed := range localitySeeds(n, Options{}) {
		r := Run(Generate(seed, Options{}))
		if r.Err != nil {
			t.Fatalf("seed %d: %v", seed, r.Err)
		}
		if r.Failed() || r.Inconclusive() {
			t.Errorf("seed %d: %s\n%s", seed, r.Summary(), caughtBy(r))
		}
		moves += r.Stats.LocalityMoves
		refused += int64(r.Stats.ReleasesRefused)
	}
	t.Logf("%d locality seeds: %d locality moves, %d releases refused by their compare", n, moves, refused)
	if moves < int64(n) {
		t.Fatalf("only %d locality moves in %d seeds: the locality seeds hardly move anything", moves, n)
	}
}
