package sim

import (
	"testing"
)

// TestLocalitySeeds runs seeds with locality moves on (a quarter of all
// seeds, each with a fault aimed at a round): servers release actors
// towards the servers their calls go to while crashes, pauses, partitions
// and slow store links strike, and every move is a release-then-place
// that the next placement may follow. None may break a checker; and
// moves must actually happen, or the seeds would test nothing.
func TestLocalitySeeds(t *testing.T) {
	runFeatureSeeds(t, "locality", 24, 6,
		func(c Config) bool { return c.Locality.Enabled },
		func(r *Result) int64 { return r.Stats.LocalityMoves })
}
