package nola_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// realCluster starts n servers on the production runtime (real goroutines,
// real clock) over memkv; configure, if given, adjusts each server.
func realCluster(t *testing.T, n int, types map[string]nola.Factory, configure ...func(*nola.ServerConfig)) *nola.Cluster {
	t.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
		Servers:       n,
		Store:         store,
		Runtime:       func(int) rt.Runtime { return r },
		ClientRuntime: r,
		Types:         types,
		Configure: func(_ int, cfg *nola.ServerConfig) {
			// Long enough that no stall of a loaded machine under
			// -race lets it lapse: a fence resets the in-memory counts
			// the tests check. Tests of expiry set their own.
			cfg.LeaseTTL = 30 * time.Second
			for _, f := range configure {
				f(cfg)
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// No deadline: a shutdown's time is proportional to its
		// activations (tens of thousands, under -race, on a loaded machine
		// take longer than any fixed bound — sorting them alone took over
		// 10 s at a load average of 40), so the shutdown is bounded by its
		// work, and one that hangs ends in the test binary's -timeout with
		// every goroutine's stack.
		if err := c.Shutdown(context.Background()); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		_ = store.Close()
		r.Wait()
	})
	return c
}

// Many goroutines hammer one actor; the actor itself checks that no two
// invocations ever overlap, and the counter's answers must be exactly
// 0..N-1, each once. Run with -race.
func TestConcurrentCallersAreSerialized(t *testing.T) {
	var inFlight, overlaps atomic.Int64
	types := actors.Types()
	types["guarded"] = func(nola.Ref) (nola.Actor, error) {
		n := 0 // deliberately unsynchronized: -race flags any overlap
		return nola.FuncActor(func(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
			if inFlight.Add(1) != 1 {
				overlaps.Add(1)
			}
			defer inFlight.Add(-1)
			v := n
			n++
			if v%16 == 0 {
				// Give other callers a chance to sneak in if they could.
				if err := ctx.Put([]byte("k"), []byte(strconv.Itoa(v))); err != nil {
					return nil, err
				}
			}
			return []byte(strconv.Itoa(v)), nil
		}), nil
	}
	c := realCluster(t, 3, types)
	const workers, each = 8, 200
	results := make([][]int, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			for range each {
				b, err := c.Client().Invoke(ctx, "race", "one", "guarded", "inc", nil)
				if err != nil {
					t.Errorf("worker %d: %v", w, err)
					return
				}
				v, _ := strconv.Atoi(string(b))
				results[w] = append(results[w], v)
			}
		}()
	}
	wg.Wait()
	if overlaps.Load() != 0 {
		t.Fatalf("%d invocations overlapped on one actor", overlaps.Load())
	}
	var all []int
	for w, r := range results {
		if !slices.IsSorted(r) {
			t.Fatalf("worker %d saw values out of order: %v", w, r)
		}
		all = append(all, r...)
	}
	slices.Sort(all)
	for i, v := range all {
		if v != i {
			t.Fatalf("answers are not 0..%d each once: position %d holds %d", workers*each-1, i, v)
		}
	}
}

// The production runtime end to end: three servers, counters and KV
// counters and actor-to-actor calls from parallel clients, then a crash.
func TestRealRuntimeCluster(t *testing.T) {
	c := realCluster(t, 3, actors.Types())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := fmt.Sprintf("a%d", (w*50+i)%20)
				if _, err := c.Client().Invoke(ctx, "real", id, "kvcounter", "inc", nil); err != nil {
					t.Errorf("kvcounter: %v", err)
					return
				}
				if _, err := c.Client().Invoke(ctx, "real", "caller-"+id, "caller", "call", []byte("counter/c-"+id+"/inc")); err != nil {
					t.Errorf("caller: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	total := 0
	for i := range 20 {
		b, err := c.Client().Invoke(ctx, "real", fmt.Sprintf("a%d", i), "kvcounter", "get", nil)
		if err != nil {
			t.Fatal(err)
		}
		n, _ := strconv.Atoi(string(b))
		total += n
	}
	if total != 200 {
		t.Fatalf("KV counters sum to %d, want 200 (no lost or doubled increments)", total)
	}
}
