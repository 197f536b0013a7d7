package sim

import (
	"runtime"
	"sync"
)

// Sweep runs the generated configurations of seeds from, from+1, …,
// from+count−1 on workers goroutines (each run is its own world, so runs
// are independent and each is as deterministic as alone) and hands every
// result to each, one at a time, in completion order. When each returns
// true no further seed is started; runs in progress finish and are handed
// over too. workers ≤ 0 means GOMAXPROCS.
func Sweep(from uint64, count, workers int, opts Options, each func(*Result) (stop bool)) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	seeds := make(chan uint64)
	results := make(chan *Result)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seed := range seeds {
				results <- Run(Generate(seed, opts))
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	var mu sync.Mutex
	stopped := false
	go func() {
		defer close(seeds)
		for i := range count {
			mu.Lock()
			s := stopped
			mu.Unlock()
			if s {
				return
			}
			seeds <- from + uint64(i)
		}
	}()
	for r := range results {
		if each(r) {
			mu.Lock()
			stopped = true
			mu.Unlock()
		}
	}
}
