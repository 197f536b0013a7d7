package simrt

import (
	"maps"
	"math/rand/v2"
)

// buggify decides the fault points of a World (rt.Buggifier). It draws from
// its own PRNG, seeded from the world's seed, so that switching it on
// changes a run only where a point fires: until one fires, the scheduler's
// and the nodes' random numbers are those of the run without it (the code
// under a point that fired may draw from them).
type buggify struct {
	rng *rand.Rand
	// on holds each point's verdict, drawn the first time the point is
	// checked: a point is either on for the whole run or off, so that some
	// runs exercise it often and others not at all (each point's own
	// interplay with the rest of the run gets tried both ways).
	on    map[string]bool
	fired map[string]int
	// pOn is the chance that a point is on in a run; pFire the chance that
	// an enabled point fires at each check.
	pOn, pFire float64
}

// EnableBuggify turns the world's fault points on (see rt.Buggifier): each
// point the code checks is on for the run with probability 1/4 and then
// fires at each check with probability 1/20, as the world's seed decides.
// Call it before Run.
func (w *World) EnableBuggify() {
	w.bug = &buggify{
		rng:   rand.New(rand.NewPCG(w.seed, 0x6275676769667921)), // "buggify!"
		on:    map[string]bool{},
		fired: map[string]int{},
		pOn:   0.25,
		pFire: 0.05,
	}
}

// Buggify implements rt.Buggifier for the node's code: false unless the
// world enabled its fault points and this one is on and fires now. A fault
// point that fires is traced (and so is part of the trace hash).
func (n *Node) Buggify(point string) bool {
	b := n.w.bug
	if b == nil {
		return false
	}
	on, seen := b.on[point]
	if !seen {
		on = b.rng.Float64() < b.pOn
		b.on[point] = on
	}
	if !on || b.rng.Float64() >= b.pFire {
		return false
	}
	b.fired[point]++
	n.Trace("buggify " + point)
	return true
}

// Buggified reports how many times each fault point fired so far (nil
// without EnableBuggify).
func (w *World) Buggified() map[string]int {
	if w.bug == nil {
		return nil
	}
	return maps.Clone(w.bug.fired)
}
