package wasm

// UncountedEffects breaks the snapshot's effect detector while set (see
// uncountedEffects): the test that proves the detector can fail uses it.
var UncountedEffects = &uncountedEffects

// SnapshotStatus exposes snapshotStatus to the tests.
func (h *Host) SnapshotStatus(ns, id string) string { return h.snapshotStatus(ns, id) }
