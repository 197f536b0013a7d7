package bench

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
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

// wasmCluster starts n in-process servers on memkv with the production
// runtime, each with a WASM host, and uploads the example guests as
// "<name>-c" and "<name>-go" in namespace "bench".
func wasmCluster(b *testing.B, n int, goGuests bool, host func(*wasm.Config)) *nola.Cluster {
	b.Helper()
	ctx := context.Background()
	r := rt.NewReal()
	store := memkv.New(r, memkv.Options{})
	mods := modules.New(store, modules.Config{})
	for _, g := range wasmtest.CGuests {
		if _, err := mods.Put(ctx, "bench", g+"-c", wasmtest.C(b, g), modules.Options{}); err != nil {
			b.Fatal(err)
		}
	}
	if goGuests {
		for _, g := range wasmtest.GoGuests {
			if _, err := mods.Put(ctx, "bench", g+"-go", wasmtest.Go(b, g), modules.Options{}); err != nil {
				b.Fatal(err)
			}
		}
	}
	cache := wazero.NewCompilationCache()
	hosts := make([]*wasm.Host, n)
	c, err := nola.NewCluster(ctx, nola.ClusterConfig{
		Servers: n, Store: store, Types: actors.Types(),
		Runtime:       func(int) rt.Runtime { return r },
		ClientRuntime: r,
		Configure: func(i int, cfg *nola.ServerConfig) {
			hc := wasm.Config{Runtime: r, Modules: mods, CompilationCache: cache}
			if host != nil {
				host(&hc)
			}
			h, err := wasm.New(ctx, hc)
			if err != nil {
				b.Fatal(err)
			}
			hosts[i] = h
			cfg.Resolver = h
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	for i, h := range hosts {
		h.Attach(c.Server(i))
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_ = c.Shutdown(ctx)
		for _, h := range hosts {
			_ = h.Close(ctx)
		}
		_ = cache.Close(ctx)
		_ = store.Close()
	})
	return c
}

// BenchmarkInvokeWASM: a warm WASM counter actor, one caller; the C and Go
// guests, and the C guest with wazero's per-call context interruption for
// comparison (fuel checkpoints enforce deadlines without it).
func BenchmarkInvokeWASM(b *testing.B) {
	for _, c := range []struct {
		name, typ string
		interrupt bool
	}{
		{"C", "counter-c", false},
		{"Go", "counter-go", false},
		{"C-ContextInterrupt", "counter-c", true},
	} {
		b.Run(c.name, func(b *testing.B) {
			cl := wasmCluster(b, 1, c.typ == "counter-go", func(h *wasm.Config) { h.ContextInterrupt = c.interrupt }).Client()
			ctx := context.Background()
			if _, err := cl.Invoke(ctx, "bench", "warm", c.typ, "inc", nil); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := cl.Invoke(ctx, "bench", "warm", c.typ, "inc", nil); err != nil {
					b.Fatal(err)
				}
			}
			opsPerSec(b)
		})
	}
}

// BenchmarkCreateThenInvokeWASM: a new WASM actor every iteration on a
// 3-server cluster — placement, the ownership commit, confirmation,
// instantiation and the first call.
func BenchmarkCreateThenInvokeWASM(b *testing.B) {
	for _, c := range []struct {
		name, typ                   string
		heap, keep, noImage, noSnap bool
		premade                     int // wasm.Config.Premade
	}{
		{"C", "counter-c", false, false, false, false, 0}, {"C-HeapMemory", "counter-c", true, false, false, false, 0},
		// Go-KeepDataSegments: the Go guest's ~30,800 data segments as
		// the compiler wrote them; Go-NoMemoryImage: merged, applied by
		// wazero per instance; Go-NoSnapshot: one memory image per
		// module, mapped copy-on-write, each instance initializing
		// itself; Go: instances started from the module's
		// post-initialization snapshot (mapped copy-on-write too).
		{"Go-KeepDataSegments", "counter-go", false, true, false, true, 0},
		{"Go-NoMemoryImage", "counter-go", false, false, true, true, 0},
		{"Go-NoSnapshot", "counter-go", false, false, false, true, 0},
		{"Go", "counter-go", false, false, false, false, 0},
		{"Go-HeapMemory", "counter-go", true, false, false, false, 0},
		// Go-Premade: 4 instances per module per server made from the
		// snapshot ahead of demand, off the request path (lower latency,
		// the same CPU: the instantiation is still paid).
		{"Go-Premade", "counter-go", false, false, false, false, 4},
	} {
		b.Run(c.name, func(b *testing.B) {
			cl := wasmCluster(b, 3, c.typ == "counter-go", func(h *wasm.Config) {
				h.HeapMemory = c.heap
				h.KeepDataSegments = c.keep
				h.NoMemoryImage = c.noImage
				h.NoSnapshot = c.noSnap
				h.Premade = c.premade
			}).Client()
			ctx := context.Background()
			// Compile the module on every server before timing.
			for i := range 30 {
				if _, err := cl.Invoke(ctx, "bench", "warmup"+strconv.Itoa(i), c.typ, "inc", nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, flt0 := processCPU(), pageFaults()
			_, cyc0 := gcStats()
			i := 0
			for b.Loop() {
				i++
				if _, err := cl.Invoke(ctx, "bench", "new"+strconv.Itoa(i), c.typ, "inc", nil); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(pageFaults()-flt0)/float64(b.N), "faults/op")
			// GC cycles in the loop: every create keeps its instance live
			// (a Go guest's ~2 700 table entries are as many heap
			// objects), so each cycle marks a growing heap. The runtime's
			// GC CPU estimate (gcStats) is not reported: on a loaded
			// machine it exceeded the process's whole CPU per create.
			_, cyc1 := gcStats()
			b.ReportMetric(float64(cyc1-cyc0), "gc-cycles")
			opsPerSec(b)
		})
	}
}

// BenchmarkCreateThenInvokeWASMChurn: BenchmarkCreateThenInvokeWASM's
// create then invoke of a new actor on a 3-server cluster, each actor
// released (deactivated: Server.Release) after its call, so that actors
// come and go as under eviction: the case recycling helps (a deactivated
// Go guest's instance reset to the module's snapshot and taken by the
// next activation, wasm.Config.RecyclePool), where
// BenchmarkCreateThenInvokeWASM, whose actors all stay live, is the case
// it cannot. -NoRecycle closes each instance instead, as before. Reported
// besides the whole iteration's: the create-then-invoke call alone, wall
// (create-ns/op) and process CPU (create-cpu-ns/op); the release, which
// runs the reset, is the rest.
func BenchmarkCreateThenInvokeWASMChurn(b *testing.B) {
	for _, c := range []struct {
		name, typ string
		pool      int
	}{
		{"C", "counter-c", 0},
		{"Go", "counter-go", 0},
		{"Go-NoRecycle", "counter-go", -1},
	} {
		b.Run(c.name, func(b *testing.B) {
			cluster := wasmCluster(b, 3, c.typ == "counter-go", func(h *wasm.Config) { h.RecyclePool = c.pool })
			cl := cluster.Client()
			ctx := context.Background()
			release := func(id string) {
				for i := range 3 {
					if ok, err := cluster.Server(i).Release(ctx, "bench", id); err != nil {
						b.Fatal(err)
					} else if ok {
						return
					}
				}
				b.Fatalf("no server held %s", id)
			}
			// Compile the module on every server, and fill the pools.
			for i := range 30 {
				id := "warmup" + strconv.Itoa(i)
				if _, err := cl.Invoke(ctx, "bench", id, c.typ, "inc", nil); err != nil {
					b.Fatal(err)
				}
				release(id)
			}
			b.ReportAllocs()
			b.ResetTimer()
			cpu0, flt0 := processCPU(), pageFaults()
			var createWall, createCPU time.Duration
			i := 0
			for b.Loop() {
				i++
				id := "new" + strconv.Itoa(i)
				t0, c0 := time.Now(), processCPU()
				if _, err := cl.Invoke(ctx, "bench", id, c.typ, "inc", nil); err != nil {
					b.Fatal(err)
				}
				createWall += time.Since(t0)
				createCPU += processCPU() - c0
				release(id)
			}
			b.ReportMetric(float64(processCPU()-cpu0)/float64(b.N), "cpu-ns/op")
			b.ReportMetric(float64(createWall)/float64(b.N), "create-ns/op")
			b.ReportMetric(float64(createCPU)/float64(b.N), "create-cpu-ns/op")
			b.ReportMetric(float64(pageFaults()-flt0)/float64(b.N), "faults/op")
			opsPerSec(b)
		})
	}
}

// BenchmarkActorToActorWASM: a warm WASM caller calls a warm WASM counter
// (C→C, Go→Go), and across kinds (C guest → Go actor, Go actor → C guest);
// the figure is the whole client→caller→counter round trip.
func BenchmarkActorToActorWASM(b *testing.B) {
	for _, c := range []struct{ name, caller, target string }{
		{"C-C", "caller-c", "counter-c/callee/inc"},
		{"Go-Go", "caller-go", "counter-go/callee/inc"},
		{"C-GoActor", "caller-c", "counter/callee/inc"},
		{"GoActor-C", "caller", "counter-c/callee/inc"},
	} {
		b.Run(c.name, func(b *testing.B) {
			goGuests := strings.HasSuffix(c.caller, "-go") || strings.HasPrefix(c.target, "counter-go")
			cl := wasmCluster(b, 1, goGuests, nil).Client()
			ctx := context.Background()
			payload := []byte(c.target)
			if _, err := cl.Invoke(ctx, "bench", "caller", c.caller, "call", payload); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := cl.Invoke(ctx, "bench", "caller", c.caller, "call", payload); err != nil {
					b.Fatal(err)
				}
			}
			opsPerSec(b)
		})
	}
}

// BenchmarkWASMIdleActorMemory activates a fixed number of counter actors
// (C: 4000, Go: 150) on one server and reports what each idle activation
// holds: Go heap (after GC) and resident memory, per actor, and how many
// such actors fit in 4 GiB by the larger of the two. C guests are measured
// with linear memory in per-instance mappings (the default) and on the Go
// heap. The time per op is meaningless here.
func BenchmarkWASMIdleActorMemory(b *testing.B) {
	for _, c := range []struct {
		name, typ       string
		n               int
		heapMem, noSnap bool
	}{
		{"C", "counter-c", 4000, false, false}, {"C-HeapMemory", "counter-c", 4000, true, false},
		{"Go", "counter-go", 150, false, false}, {"Go-NoSnapshot", "counter-go", 150, false, true},
	} {
		var heap, rss, pss float64
		b.Run(c.name, func(b *testing.B) {
			if heap == 0 {
				heap, rss, pss = idleActorMemory(b, c.typ, c.n, func(h *wasm.Config) {
					h.HeapMemory, h.NoSnapshot = c.heapMem, c.noSnap
				})
			}
			for b.Loop() {
			}
			b.ReportMetric(heap, "heapB/actor")
			b.ReportMetric(rss, "rssB/actor")
			b.ReportMetric(pss, "pssB/actor")
			b.ReportMetric(float64(4<<30)/max(heap, rss), "actors/4GiB")
		})
	}
}

func idleActorMemory(b *testing.B, typ string, n int, host func(*wasm.Config)) (heap, rss, pss float64) {
	cl := wasmCluster(b, 1, typ == "counter-go", host).Client()
	ctx := context.Background()
	// Warm: compile, and grow the engine's tables a first time.
	for i := range 100 {
		if _, err := cl.Invoke(ctx, "bench", fmt.Sprintf("warm%d", i), typ, "inc", nil); err != nil {
			b.Fatal(err)
		}
	}
	h0, r0 := memNow()
	p0 := pssNow()
	for i := range n {
		if _, err := cl.Invoke(ctx, "bench", fmt.Sprintf("idle%d", i), typ, "inc", nil); err != nil {
			b.Fatal(err)
		}
	}
	h1, r1 := memNow()
	p1 := pssNow()
	return float64(h1-h0) / float64(n), float64(r1-r0) / float64(n), float64(p1-p0) / float64(n)
}

// pssNow returns the process's proportional set size: resident pages,
// each shared one divided by the number of mappings that share it. The
// resident set size counts a page of a module's memory image once per
// instance that maps it; PSS counts it once in all.
func pssNow() int64 {
	b, err := os.ReadFile("/proc/self/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "Pss:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// processCPU is the CPU time the process has used (user and system, all
// threads: the garbage collector's included). Per operation it is a
// steadier figure than wall time on a machine other jobs are loading.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pageFaults counts the process's page faults (minor and major): memory
// first touched, or written copy-on-write.
func pageFaults() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Minflt + ru.Majflt
}

// memNow returns the live Go heap after a full GC and the process's
// resident set size.
func memNow() (heap, rss int64) {
	runtime.GC()
	debug.FreeOSMemory() // a GC, then scavenge: free pages leave the RSS
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heap = int64(ms.HeapAlloc)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		if f := strings.Fields(string(b)); len(f) > 1 {
			pages, _ := strconv.ParseInt(f[1], 10, 64)
			rss = pages * int64(os.Getpagesize())
		}
	}
	return heap, rss
}
