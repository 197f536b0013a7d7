package wasm_test

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/wasm"
)

// An instance idle for EngineIdle loses its call engine; one invoked more
// often keeps it; a dropped engine is fetched again by the next call, which
// answers from the same instance's state.
func TestIdleInstancesDropTheirCallEngine(t *testing.T) {
	bins := loadGuests(t, false)
	cfg := func(c *wasm.Config) { c.EngineIdle = 5 * time.Second }
	runSim(t, 7, 1, bins, cfg, func(e *simEnv) {
		h := e.hosts[0]
		e.MustInvoke("cold", "counter-c", "inc", nil)
		e.MustInvoke("warm", "counter-c", "inc", nil)
		// warm is called every second, so never idle for EngineIdle.
		for range 12 {
			e.Sleep(time.Second)
			e.MustInvoke("warm", "counter-c", "inc", nil)
		}
		if s := h.Stats(); s.EnginesTrimmed != 1 || s.Instances != 2 {
			t.Fatalf("after 12 s: %+v, want only the idle instance's engine dropped", s)
		}
		if got := e.MustInvoke("cold", "counter-c", "inc", nil); got != "1" {
			t.Fatalf("cold after its engine was dropped: %s, want 1 (the same instance)", got)
		}
		if got := e.MustInvoke("warm", "counter-c", "inc", nil); got != "13" {
			t.Fatalf("warm: %s, want 13", got)
		}
		// Idle long enough, both lose theirs; the trim then stops
		// re-arming (nothing left to drop) and the calls still answer.
		e.Sleep(12 * time.Second)
		if s := h.Stats(); s.EnginesTrimmed != 3 || s.Instances != 2 || s.Instantiated != 2 {
			t.Fatalf("after 12 idle s: %+v, want 3 engines dropped from the same 2 instances", s)
		}
		if got := e.MustInvoke("cold", "counter-c", "inc", nil); got != "2" {
			t.Fatalf("cold: %s, want 2", got)
		}
		if got := e.MustInvoke("warm", "counter-c", "inc", nil); got != "14" {
			t.Fatalf("warm: %s, want 14", got)
		}
	})
}

// The trim races calls: with EngineIdle of a nanosecond it runs on every
// MemoryBytes poll, here from a goroutine polling while the calls run
// (go test -race checks the instance's hand-over). Every answer must
// still be the next count of its actor, from one instance each.
func TestEngineTrimRacesCalls(t *testing.T) {
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.EngineIdle = time.Nanosecond }})
	e.putGuests()
	const actors, calls = 4, 200
	h := e.hosts[0]
	stop := make(chan struct{})
	polled := make(chan struct{})
	go func() {
		defer close(polled)
		for {
			select {
			case <-stop:
				return
			default:
				h.MemoryBytes()
			}
		}
	}()
	var wg sync.WaitGroup
	errs := make(chan error, actors)
	for a := range actors {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("r%d", a)
			for i := range calls {
				got, err := e.invoke(id, "counter-c", "inc", nil)
				if err != nil || got != strconv.Itoa(i) {
					errs <- fmt.Errorf("%s call %d: %q, %v; want %d", id, i, got, err, i)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-polled
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// All idle now: one more poll drops every engine still held.
	time.Sleep(time.Microsecond) // past EngineIdle on any clock
	h.MemoryBytes()
	if s := h.Stats(); s.EnginesTrimmed < actors || s.Instantiated != actors || s.Traps != 0 {
		t.Fatalf("%+v: want every engine dropped at least once, one instance per actor, no traps", s)
	}
}
