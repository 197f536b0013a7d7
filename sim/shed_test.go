package sim

import (
	"testing"
)

// TestSheddingSeeds runs seeds with shedding on (a third of all seeds,
// each with a fault aimed at a shedding round): servers release actors
// while crashes, pauses, partitions and slow store links strike, and every
// move is a release-then-place. None may break a checker; and moves must
// actually happen, or the seeds would test nothing.
func TestSheddingSeeds(t *testing.T) {
	runFeatureSeeds(t, "shedding", 30, 8,
		func(c Config) bool { return c.Shed.Interval > 0 },
		func(r *Result) int64 { return r.Stats.Sheds })
}
