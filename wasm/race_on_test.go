//go:build race

package wasm

// raceEnabled: the race detector slows runs down about tenfold; stress
// tests run fewer rounds under it.
const raceEnabled = true
