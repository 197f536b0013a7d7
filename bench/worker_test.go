package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// work is the function both a worker and an actor run: nothing (the call
// path's own cost), or a SHA-256 of the payload (CPU-bound work that
// parallel callers can spread over cores).
func work(op string, p []byte) []byte {
	if op == "hash" {
		sum := sha256.Sum256(p)
		return sum[:]
	}
	return p
}

// workerCluster is cluster(b, 1) plus the "fn" worker and actor type, both
// running work.
func workerCluster(b *testing.B) *nola.Cluster {
	b.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	types := actors.Types()
	types["fn"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(_ *nola.Context, op string, p []byte) ([]byte, error) { return work(op, p), nil }), nil
	}
	c, err := nola.NewCluster(context.Background(), nola.ClusterConfig{
		Servers: 1, Store: store, Types: types,
		Workers: map[string]nola.WorkerFunc{
			"fn": func(_ *nola.WorkerContext, op string, p []byte) ([]byte, error) { return work(op, p), nil },
		},
		Runtime:       func(int) rt.Runtime { return r },
		ClientRuntime: r,
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
		_ = store.Close()
	})
	return c
}

// BenchmarkWorkerVsActor: the same function as a stateless worker and as
// one actor, called by parallel callers (4 per GOMAXPROCS), interleaved in
// one run so that every kind sees the same machine load: each iteration
// runs one batch of each kind (every caller makes 64 calls) and times it.
// The actor serializes every call through its single activation; the
// worker runs them side by side. "worker-local" calls through a server's
// own client (the path of the HTTP API and of actors: no routing at all);
// "worker-client" through a standalone client (a live server picked from
// the cached list, then the transport); "actor" through the standalone
// client to one warm actor; "direct" the function itself, called by the
// same callers without nola (the ceiling). op "echo" measures the call
// path, "hash" a SHA-256 of 4 KiB per call. Reported: median calls/s of each kind over
// the batches, and the median per-batch ratio worker-local / actor.
func BenchmarkWorkerVsActor(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 4<<10)
	c := workerCluster(b)
	local, standalone := c.Server(0).Client(), c.Client()
	ctx := context.Background()
	type kind struct {
		name string
		call func() error
	}
	var kinds []kind
	for _, op := range []string{"echo", "hash"} {
		if _, err := standalone.Invoke(ctx, "bench", "one-"+op, "fn", op, payload); err != nil {
			b.Fatal(err)
		}
		kinds = append(kinds,
			kind{op + "-worker-local", func() error { _, err := local.CallWorker(ctx, "bench", "fn", op, payload); return err }},
			kind{op + "-worker-client", func() error { _, err := standalone.CallWorker(ctx, "bench", "fn", op, payload); return err }},
			kind{op + "-actor", func() error { _, err := standalone.Invoke(ctx, "bench", "one-"+op, "fn", op, payload); return err }},
			kind{op + "-direct", func() error { work(op, payload); return nil }},
		)
	}
	callers := 4 * runtime.GOMAXPROCS(0)
	const perCaller = 64
	rates := make([][]float64, len(kinds))
	var ratios [2][]float64 // echo, hash: worker-local / actor
	for b.Loop() {
		per := make([]float64, len(kinds))
		for i, k := range kinds {
			var wg sync.WaitGroup
			var failed atomic.Value
			t0 := time.Now()
			for range callers {
				wg.Go(func() {
					for range perCaller {
						if err := k.call(); err != nil {
							failed.Store(err)
							return
						}
					}
				})
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
			per[i] = float64(callers*perCaller) / time.Since(t0).Seconds()
			rates[i] = append(rates[i], per[i])
		}
		ratios[0] = append(ratios[0], per[0]/per[2])
		ratios[1] = append(ratios[1], per[4]/per[6])
	}
	median := func(v []float64) float64 { slices.Sort(v); return v[len(v)/2] }
	for i, k := range kinds {
		b.ReportMetric(median(rates[i]), k.name+"-calls/s")
	}
	b.ReportMetric(median(ratios[0]), "echo-worker/actor")
	b.ReportMetric(median(ratios[1]), "hash-worker/actor")
}
