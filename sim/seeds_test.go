package sim

import (
	"testing"

	"github.com/nolaproject/nola/internal/race"
)

// featureSeeds returns the first n seeds whose configuration has a feature
// on (on reports it).
func featureSeeds(n int, opts Options, on func(Config) bool) []uint64 {
	var seeds []uint64
	for s := uint64(1); len(seeds) < n; s++ {
		if on(Generate(s, opts)) {
			seeds = append(seeds, s)
		}
	}
	return seeds
}

// runFeatureSeeds runs the first n seeds with a feature on (n small under
// -short and -race), fails t on any checker's finding, and fails it too
// if the seeds moved fewer than n actors between them (moved counts one
// run's moves): seeds that never exercise the feature would test nothing.
// It logs the moves and the releases refused by their compare.
func runFeatureSeeds(t *testing.T, what string, n, short int, on func(Config) bool, moved func(*Result) int64) {
	t.Helper()
	if testing.Short() || race.Enabled {
		n = short
	}
	var moves, refused int64
	for _, seed := range featureSeeds(n, Options{}, on) {
		r := Run(Generate(seed, Options{}))
		if r.Err != nil {
			t.Fatalf("seed %d: %v", seed, r.Err)
		}
		if r.Failed() || r.Inconclusive() {
			t.Errorf("seed %d: %s\n%s", seed, r.Summary(), caughtBy(r))
		}
		moves += moved(r)
		refused += int64(r.Stats.ReleasesRefused)
	}
	t.Logf("%d %s seeds: %d moves, %d releases refused by their compare", n, what, moves, refused)
	if moves < int64(n) {
		t.Fatalf("only %d moves in %d %s seeds: those seeds hardly move anything", moves, n, what)
	}
}
