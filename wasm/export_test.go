package wasm

// UncountedEffects breaks the snapshot's effect detector while set (see
// uncountedEffects): the test that proves the detector can fail uses it.
var UncountedEffects = &uncountedEffects
