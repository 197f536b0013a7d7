package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
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
// one actor, called by parallel callers (4 per -cpu), in one run. The
// actor serializes every call through its single activation; the worker
// runs them side by side. "local" is a server's own client (the path of
// the HTTP API and of actors: no routing at all); "client" a standalone
// client (picks a live server from the cached registry list, then the
// transport). op "echo" measures the call path, "hash" a SHA-256 of 4 KiB
// (≈ 2-3 µs of CPU) per call.
func BenchmarkWorkerVsActor(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 4<<10)
	for _, op := range []string{"echo", "hash"} {
		c := workerCluster(b)
		local, standalone := c.Server(0).Client(), c.Client()
		ctx := context.Background()
		if _, err := standalone.Invoke(ctx, "bench", "one", "fn", op, payload); err != nil {
			b.Fatal(err)
		}
		calls := map[string]func() ([]byte, error){
			"worker-local":  func() ([]byte, error) { return local.CallWorker(ctx, "bench", "fn", op, payload) },
			"worker-client": func() ([]byte, error) { return standalone.CallWorker(ctx, "bench", "fn", op, payload) },
			"actor-client":  func() ([]byte, error) { return standalone.Invoke(ctx, "bench", "one", "fn", op, payload) },
		}
		for _, name := range []string{"worker-local", "worker-client", "actor-client"} {
			call := calls[name]
			b.Run(op+"/"+name, func(b *testing.B) {
				b.SetParallelism(4)
				b.ReportAllocs()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := call(); err != nil {
							b.Error(err)
							return
						}
					}
				})
				opsPerSec(b)
			})
		}
	}
}
