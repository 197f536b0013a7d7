package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// Scale benchmarks: the cost of one warm call when many actors are live,
// against a floor measured in the same binary. A benchmark that calls one
// hot actor keeps that actor's state in the CPU caches and hides what a
// large table costs; these pick the target at random among N live actors.
//
// The sizes are 1k, 100k and 1M. WASM actors stop at 100k unless
// NOLA_BENCH_WASM_1M=1: a C guest's instance holds tens of KB (see
// BenchmarkWASMIdleActorMemory), so a million of them need more memory
// than the project's machines leave to one benchmark.

var scaleSizes = []int{1_000, 100_000, 1_000_000}

// scaleIDs returns n actor IDs and a fixed pseudo-random sequence of
// indexes into them, the same for every sub-benchmark, so that the floor
// and the engine walk the same keys in the same order.
func scaleIDs(n int) (ids []string, order []int32) {
	ids = make([]string, n)
	for i := range ids {
		ids[i] = "live-" + strconv.Itoa(i)
	}
	rng := rand.New(rand.NewPCG(1, uint64(n)))
	order = make([]int32, 1<<20)
	for i := range order {
		order[i] = int32(rng.IntN(n))
	}
	return ids, order
}

// scaleCluster is one in-process server (memkv, production runtime) with
// room for every actor the benchmark makes live: no idle eviction and no
// capacity release during the run. With withWASM it has a WASM host and
// the C guests uploaded as "<name>-c".
func scaleCluster(b *testing.B, withWASM bool) *nola.Cluster {
	b.Helper()
	ctx := context.Background()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	var (
		mods  *modules.Store
		cache wazero.CompilationCache
		host  *wasm.Host
	)
	if withWASM {
		mods = modules.New(store, modules.Config{})
		for _, g := range wasmtest.CGuests {
			if _, err := mods.Put(ctx, "bench", g+"-c", wasmtest.C(b, g), modules.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		cache = wazero.NewCompilationCache()
	}
	c, err := nola.NewCluster(ctx, nola.ClusterConfig{
		Servers: 1, Store: store, Types: actors.Types(),
		Runtime:       func(int) rt.Runtime { return r },
		ClientRuntime: r,
		Configure: func(_ int, cfg *nola.ServerConfig) {
			cfg.IdleTimeout = 24 * time.Hour
			cfg.MaxActivations = 4_000_000
			if withWASM {
				// The budget charges each C actor its whole 64 KiB page and
				// more (a guest may write it all), so the default 4 GiB
				// stops at ~52k actors; what they really use is ~13 KB
				// each (bench/actormem).
				// EngineIdle as long as IdleTimeout: a warm call is what
				// is measured, and on a loaded machine populating 100k
				// actors takes longer than the default 10s, after which
				// the Host's engine trim would drop the first actors'
				// call engines and the loop would measure their refetch.
				h, err := wasm.New(ctx, wasm.Config{Runtime: r, Modules: mods, CompilationCache: cache, MemoryLimit: 256 << 30,
					EngineIdle: 24 * time.Hour})
				if err != nil {
					b.Fatal(err)
				}
				host = h
				cfg.Resolver = h
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	if host != nil {
		host.Attach(c.Server(0))
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		_ = c.Shutdown(ctx)
		if host != nil {
			_ = host.Close(ctx)
			_ = cache.Close(ctx)
		}
		_ = store.Close()
	})
	return c
}

// populate activates every actor of ids (type typ, one inc each) from
// GOMAXPROCS callers and returns the heap and RSS growth per actor.
func populate(b *testing.B, cl *nola.Client, typ string, ids []string) (heapPer, rssPer float64) {
	b.Helper()
	h0, r0 := memNow()
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		fail atomic.Pointer[error]
	)
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			ctx := context.Background()
			for {
				i := next.Add(1) - 1
				if i >= int64(len(ids)) || fail.Load() != nil {
					return
				}
				if _, err := cl.Invoke(ctx, "bench", ids[i], typ, "inc", nil); err != nil {
					err = fmt.Errorf("activating %s: %w", ids[i], err)
					fail.Store(&err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := fail.Load(); err != nil {
		b.Fatal(*err)
	}
	h1, r1 := memNow()
	return float64(h1-h0) / float64(len(ids)), float64(r1-r0) / float64(len(ids))
}

// cpuNow is the CPU time the process used so far, user and system, on
// all threads: the collector's background workers and the servers' own
// tasks included.
func cpuNow() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// cpuPerOp reports the process's CPU time per iteration since cpu0, as
// cpu-ns/op. On a machine shared with other jobs the wall-clock ns/op of
// a single caller mostly measures how often the caller was descheduled;
// CPU time measures the work (the GC's included).
func cpuPerOp(b *testing.B, cpu0 time.Duration) {
	if b.N > 0 {
		b.ReportMetric(float64(cpuNow()-cpu0)/float64(b.N), "cpu-ns/op")
	}
}

// loopProfile, with NOLA_BENCH_LOOPPROFILE=dir, writes a CPU profile of
// the timed loop alone to dir/<benchmark name>.prof (-test.cpuprofile
// would mix in the population of the actors, which dominates it):
//
//	go tool pprof -top bench.test dir/BenchmarkInvokeRandomLive_wasm-c_actors=100000.prof
func loopProfile(b *testing.B) (stop func()) {
	dir := os.Getenv("NOLA_BENCH_LOOPPROFILE")
	if dir == "" {
		return func() {}
	}
	f, err := os.Create(filepath.Join(dir, strings.ReplaceAll(b.Name(), "/", "_")+".prof"))
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		b.Fatal(err)
	}
	// Stopped by the caller after its loop, or at the latest when the
	// sub-benchmark ends (a b.Fatal in the loop would otherwise leave the
	// profiler on, and every later sub-benchmark fail to start its own).
	var once sync.Once
	stop = func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			if err := f.Close(); err != nil {
				b.Error(err)
			}
		})
	}
	b.Cleanup(stop)
	return stop
}

// floorCounter is the floor's actor: a small struct in a map.
type floorCounter struct{ n int64 }

// floorMap is the floor's table of live actors.
func floorMap(ids []string) map[string]*floorCounter {
	m := make(map[string]*floorCounter, len(ids))
	for _, id := range ids {
		m[id] = &floorCounter{}
	}
	return m
}

// BenchmarkInvokeRandomLive: a warm call to an actor drawn at random among
// N live ones, one caller. map-floor is the floor: a random lookup in a Go
// map of N small structs behind a mutex, and an increment, over the same
// key sequence. Compare each go/ and wasm-c/ figure with map-floor at the
// same N, from the same run. cpu-ns/op (see cpuPerOp) is the figure to
// compare on a loaded machine.
func BenchmarkInvokeRandomLive(b *testing.B) {
	for _, n := range scaleSizes {
		ids, order := scaleIDs(n)
		b.Run(fmt.Sprintf("map-floor/actors=%d", n), func(b *testing.B) {
			var mu sync.Mutex
			m := floorMap(ids)
			b.ReportAllocs()
			i := 0
			cpu0 := cpuNow()
			for b.Loop() {
				id := ids[order[i&(len(order)-1)]]
				i++
				mu.Lock()
				m[id].n++
				mu.Unlock()
			}
			cpuPerOp(b, cpu0)
			opsPerSec(b)
		})
		// go-server calls through the server's own client — the path of
		// the HTTP API and of actor-to-actor calls — where an actor the
		// server hosts is found by one lookup in its table; go, through a
		// standalone client (route cache, then the server's table).
		for _, kind := range []struct{ name, typ string }{{"go", "counter"}, {"go-server", "counter"}, {"wasm-c", "counter-c"}} {
			b.Run(fmt.Sprintf("%s/actors=%d", kind.name, n), func(b *testing.B) {
				if kind.name == "wasm-c" && n > 100_000 && os.Getenv("NOLA_BENCH_WASM_1M") != "1" {
					b.Skip("a million WASM instances need tens of GB; set NOLA_BENCH_WASM_1M=1 to run it")
				}
				c := scaleCluster(b, kind.name == "wasm-c")
				cl := c.Client()
				heapPer, rssPer := populate(b, cl, kind.typ, ids)
				if kind.name == "go-server" {
					cl = c.Server(0).Client()
				}
				ctx := context.Background()
				stopProfile := loopProfile(b)
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				cpu0 := cpuNow()
				for b.Loop() {
					id := ids[order[i&(len(order)-1)]]
					i++
					if _, err := cl.Invoke(ctx, "bench", id, kind.typ, "inc", nil); err != nil {
						b.Fatal(err)
					}
				}
				cpuPerOp(b, cpu0)
				stopProfile()
				opsPerSec(b)
				b.ReportMetric(heapPer, "heapB/actor")
				b.ReportMetric(rssPer, "rssB/actor")
			})
		}
	}
}

// BenchmarkCreateThenInvokeAtScale: creating a new actor (placement, the
// ownership commit, confirmation, activation, first call) when N actors
// are live already. map-floor inserts a new small struct into a map of N.
func BenchmarkCreateThenInvokeAtScale(b *testing.B) {
	for _, n := range scaleSizes {
		ids, _ := scaleIDs(n)
		b.Run(fmt.Sprintf("map-floor/actors=%d", n), func(b *testing.B) {
			var mu sync.Mutex
			m := floorMap(ids)
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				id := "new-" + strconv.Itoa(i)
				i++
				mu.Lock()
				c := &floorCounter{}
				m[id] = c
				c.n++
				mu.Unlock()
			}
			opsPerSec(b)
		})
		for _, kind := range []struct{ name, typ string }{{"go", "counter"}, {"wasm-c", "counter-c"}} {
			b.Run(fmt.Sprintf("%s/actors=%d", kind.name, n), func(b *testing.B) {
				if kind.name == "wasm-c" && n > 100_000 && os.Getenv("NOLA_BENCH_WASM_1M") != "1" {
					b.Skip("a million WASM instances need tens of GB; set NOLA_BENCH_WASM_1M=1 to run it")
				}
				cl := scaleCluster(b, kind.name == "wasm-c").Client()
				populate(b, cl, kind.typ, ids)
				ctx := context.Background()
				b.ReportAllocs()
				b.ResetTimer()
				i := 0
				for b.Loop() {
					if _, err := cl.Invoke(ctx, "bench", "new-"+strconv.Itoa(i), kind.typ, "inc", nil); err != nil {
						b.Fatal(err)
					}
					i++
				}
				opsPerSec(b)
			})
		}
	}
}

// BenchmarkGoLiveActorMemory: the memory a live Go actor costs — N=200000
// counters activated through the cluster's client, heap (after a GC) and
// RSS growth per actor. Everything the engine keeps per actor is in it:
// the activation, its table entry, the client's route, and memkv's copy
// of its registry records (the store is in process here; on etcd those
// bytes are etcd's). With NOLA_BENCH_HEAPPROFILE=file it writes the heap
// profile while the actors are live, to see where the bytes go (run with
// -test.memprofilerate=512 for sites that allocate small objects):
//
//	go tool pprof -sample_index=inuse_space -top bench.test file
func BenchmarkGoLiveActorMemory(b *testing.B) {
	const n = 200_000
	for b.Loop() {
		b.StopTimer()
		ids, _ := scaleIDs(n)
		cl := scaleCluster(b, false).Client()
		b.StartTimer()
		heapPer, rssPer := populate(b, cl, "counter", ids)
		b.StopTimer()
		if path := os.Getenv("NOLA_BENCH_HEAPPROFILE"); path != "" {
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			if err := pprof.Lookup("heap").WriteTo(f, 0); err != nil {
				b.Fatal(err)
			}
			f.Close()
		}
		b.ReportMetric(heapPer, "heapB/actor")
		b.ReportMetric(rssPer, "rssB/actor")
		b.StartTimer()
	}
}
