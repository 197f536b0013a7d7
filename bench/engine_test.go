// Package bench holds nola's benchmarks. bench/README.md records the figures.
package bench

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// cluster starts n in-process servers on memkv with the production runtime.
func cluster(b *testing.B, n int, configure ...func(int, *nola.ServerConfig)) *nola.Cluster {
	b.Helper()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	cc := nola.ClusterConfig{
		Servers: n, Store: store, Types: actors.Types(),
		Runtime:       func(int) rt.Runtime { return r },
		ClientRuntime: r,
	}
	if len(configure) > 0 {
		cc.Configure = configure[0]
	}
	c, err := nola.NewCluster(context.Background(), cc)
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

func opsPerSec(b *testing.B) {
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
}

// BenchmarkInvoke: a warm in-memory Go actor, one caller.
func BenchmarkInvoke(b *testing.B) {
	warmLoop(b, "warm", "counter", "inc", nil)
}

// warmLoop invokes one actor b.N times from one goroutine, after a first
// (activating) call outside the timer.
func warmLoop(b *testing.B, id, typ, op string, payload []byte, configure ...func(int, *nola.ServerConfig)) {
	c := cluster(b, 1, configure...)
	cl := c.Client()
	ctx := context.Background()
	if _, err := cl.Invoke(ctx, "bench", id, typ, op, payload); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := cl.Invoke(ctx, "bench", id, typ, op, payload); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

// BenchmarkInvokeParallel: warm actors (one per caller goroutine), run with
// -cpu 2 for the parallel figure.
func BenchmarkInvokeParallel(b *testing.B) {
	c := cluster(b, 1)
	cl := c.Client()
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		id := "p" + strconv.FormatInt(next.Add(1), 10)
		if _, err := cl.Invoke(ctx, "bench", id, "counter", "inc", nil); err != nil {
			b.Error(err)
			return
		}
		for pb.Next() {
			if _, err := cl.Invoke(ctx, "bench", id, "counter", "inc", nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	opsPerSec(b)
}

// BenchmarkCreateThenInvoke: a new actor every iteration — placement, the
// ownership commit, confirmation, activation and the first call.
func BenchmarkCreateThenInvoke(b *testing.B) {
	c := cluster(b, 3)
	cl := c.Client()
	ctx := context.Background()
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := cl.Invoke(ctx, "bench", "new"+strconv.Itoa(i), "counter", "inc", nil); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

// BenchmarkCreateThenInvokeWithArgs: a new Creator actor (the greeter)
// every iteration, created with 16 bytes of arguments: the creating
// placement writes them, the first activation reads the creation records
// and commits the hook's write with the end of its "new" state.
func BenchmarkCreateThenInvokeWithArgs(b *testing.B) {
	c := cluster(b, 3)
	cl := c.Client()
	ctx := context.Background()
	args := []byte("sixteen bytes!!!")
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, err := cl.Do(ctx, nola.Request{Namespace: "bench", ActorID: "g" + strconv.Itoa(i), ActorType: "greeter",
			Operation: "hello", CreationArgs: args}); err != nil {
			b.Fatal(err)
		}
	}
	opsPerSec(b)
}

// BenchmarkCreateThenInvokeParallel: the same from parallel callers.
func BenchmarkCreateThenInvokeParallel(b *testing.B) {
	c := cluster(b, 3)
	cl := c.Client()
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := "pnew" + strconv.FormatInt(next.Add(1), 10)
			if _, err := cl.Invoke(ctx, "bench", id, "counter", "inc", nil); err != nil {
				b.Error(err)
				return
			}
		}
	})
	opsPerSec(b)
}

// BenchmarkActorToActor: a warm caller actor calls a warm counter actor;
// the figure is the whole client→caller→counter round trip.
func BenchmarkActorToActor(b *testing.B) {
	warmLoop(b, "caller", "caller", "call", []byte("counter/callee/inc"))
}

// BenchmarkActorToActorLocality is BenchmarkActorToActor with locality
// sampling on (one call in 16 recorded in the edge table): the hot path's
// cost of communication locality.
func BenchmarkActorToActorLocality(b *testing.B) {
	warmLoop(b, "caller", "caller", "call", []byte("counter/callee/inc"), func(_ int, cfg *nola.ServerConfig) {
		cfg.Locality.Enabled = true
	})
}

// BenchmarkActorToActorParallel: one caller/callee pair per goroutine.
func BenchmarkActorToActorParallel(b *testing.B) {
	c := cluster(b, 1)
	cl := c.Client()
	ctx := context.Background()
	var next atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		n := strconv.FormatInt(next.Add(1), 10)
		payload := []byte("counter/callee" + n + "/inc")
		for pb.Next() {
			if _, err := cl.Invoke(ctx, "bench", "caller"+n, "caller", "call", payload); err != nil {
				b.Error(err)
				return
			}
		}
	})
	opsPerSec(b)
}
