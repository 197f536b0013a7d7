//go:build race

package sim

// raceEnabled: the race detector slows runs down about tenfold; the seed
// sweeps run fewer seeds under it.
const raceEnabled = true
