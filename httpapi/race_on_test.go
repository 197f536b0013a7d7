//go:build race

package httpapi

// raceEnabled: under the race detector sync.Pool drops items at random
// (so that races on pooled objects show), which makes allocation counts
// vary from run to run: tests that compare them run without it.
const raceEnabled = true
