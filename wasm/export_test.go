package wasm

// UncountedEffects breaks the snapshot's effect detector while set (see
// uncountedEffects): the test that proves the detector can fail uses it.
var UncountedEffects = &uncountedEffects

// SnapshotStatus exposes snapshotStatus to the tests.
func (h *Host) SnapshotStatus(ns, id string) string { return h.snapshotStatus(ns, id) }

// RecycleSkip breaks a step of the recycling reset ("memory", "globals")
// while set: the tests that prove the equivalence check can fail use it.
var RecycleSkip = &recycleSkip

// NoPoolShed keeps idle recycled instances when a reservation does not
// fit, while set: the test that proves the shedding matters uses it.
var NoPoolShed = &noPoolShed
