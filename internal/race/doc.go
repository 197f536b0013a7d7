// Package race reports whether the binary was built with the race
// detector (go test -race), for tests that must do less under it: the
// detector slows code down about tenfold, and it makes sync.Pool drop
// items at random (so that races on pooled objects show), which moves
// allocation counts from run to run.
//
// Use it to shrink a stress loop or a seed sweep, or to skip an
// allocation count; the plain (non-race) run keeps the full check.
package race
