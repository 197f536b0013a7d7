package wasm

import (
	"runtime"
	"sync"
	"testing"

	"github.com/nolaproject/nola/internal/race"
)

// An idle instance is never refused to a call because the engine trim is
// holding it, however the two interleave: takeIdle must not read the end
// of the trim's hold (back to instIdle, between its failed CAS and its
// look at the state) as "busy or closed". A spurious refusal makes
// actor.run drop the instance and activate a fresh one, losing the actor's
// memory state and leaking the old instance. A stress test: the window is
// a few nanoseconds, and without the fix it fails in about one run of
// three here (both goroutines must run in parallel); it cannot fail with it.
func TestTakeIdleWaitsOutTheTrim(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two Ps for the trim and the call to interleave")
	}
	in := &instance{} // guestCall nil: trimEngine only holds and lets go
	rounds := 100_000_000
	if race.Enabled {
		rounds = 2_000_000
	}
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			for range 1000 {
				in.trimEngine(0)
			}
		}
	}()
	refused := 0
	for range rounds {
		if !in.takeIdle(instBusy) {
			refused++
			continue
		}
		in.state.Store(instIdle)
	}
	close(stop)
	wg.Wait()
	if refused > 0 {
		t.Fatalf("takeIdle refused an idle instance %d times in %d rounds while the trim ran", refused, rounds)
	}
}
