package wasm_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/faultinject"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/registry/modules"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// simEnv is a cluster with WASM hosts on the deterministic runtime: each
// server is its own node and reaches the store through its own
// faultinject.Store.
type simEnv struct {
	t      *testing.T
	w      *simrt.World
	store  *memkv.Store
	mods   *modules.Store
	links  []*faultinject.Store
	nodes  []*simrt.Node
	hosts  []*wasm.Host
	c      *nola.Cluster
	driver *simrt.Node
	ctx    context.Context
}

const simTTL = 6 * time.Second

// guestBins are the modules the simulations upload, read once per test.
type guestBins map[string][]byte

func loadGuests(t *testing.T, goToo bool) guestBins {
	t.Helper()
	g := guestBins{}
	for _, n := range wasmtest.CGuests {
		g[n+"-c"] = wasmtest.C(t, n)
	}
	if goToo {
		for _, n := range wasmtest.GoGuests {
			g[n+"-go"] = wasmtest.Go(t, n)
		}
	}
	return g
}

func runSim(t *testing.T, seed uint64, n int, bins guestBins, host func(*wasm.Config), body func(e *simEnv)) uint64 {
	t.Helper()
	w := simrt.New(seed)
	if os.Getenv("NOLA_SIM_TRACE") != "" {
		w.SetTraceWriter(os.Stderr)
	}
	w.SetMaxSteps(5_000_000)
	err := w.Run(func() {
		e := &simEnv{t: t, w: w, ctx: context.Background()}
		e.driver = w.Node("driver")
		e.store = memkv.New(w.Node("store"), memkv.Options{})
		e.mods = modules.New(e.store, modules.Config{})
		for _, id := range sortedIDs(bins) {
			if _, err := e.mods.Put(e.ctx, "sim", id, bins[id], modules.Options{}); err != nil {
				t.Errorf("put %s: %v", id, err)
				return
			}
		}
		e.hosts = make([]*wasm.Host, n)
		for i := range n {
			e.nodes = append(e.nodes, w.Node(fmt.Sprintf("s%d", i)))
			e.links = append(e.links, faultinject.NewStore(e.store))
		}
		c, err := nola.NewCluster(e.ctx, nola.ClusterConfig{
			Servers: n, Store: e.store, Async: true, Types: actors.Types(),
			Runtime:       func(i int) rt.Runtime { return e.nodes[i] },
			ClientRuntime: e.driver,
			Configure: func(i int, cfg *nola.ServerConfig) {
				cfg.Store = e.links[i]
				cfg.LeaseTTL = simTTL
				hc := wasm.Config{Runtime: cfg.Runtime, Modules: e.mods, CompilationCache: cache()}
				if host != nil {
					host(&hc)
				}
				h, err := wasm.New(e.ctx, hc)
				if err != nil {
					t.Errorf("wasm host: %v", err)
					return
				}
				e.hosts[i] = h
				cfg.Resolver = h
			},
		})
		if err != nil {
			t.Errorf("start cluster: %v", err)
			return
		}
		e.c = c
		for i, h := range e.hosts {
			h.Attach(c.Server(i))
		}
		body(e)
		c.Halt()
		for _, h := range e.hosts {
			_ = h.Close(e.ctx)
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	return w.Hash()
}

func sortedIDs(b guestBins) []string {
	var ids []string
	for id := range b {
		ids = append(ids, id)
	}
	for i := 1; i < len(ids); i++ {
		for j := i; j > 0 && ids[j] < ids[j-1]; j-- {
			ids[j], ids[j-1] = ids[j-1], ids[j]
		}
	}
	return ids
}

func (e *simEnv) sleep(d time.Duration) {
	if err := e.driver.Sleep(e.ctx, d); err != nil {
		e.t.Fatalf("sleep: %v", err)
	}
}

func (e *simEnv) invoke(id, typ, op string, payload []byte) (string, error) {
	ctx, cancel := e.driver.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	b, err := e.c.Client().Invoke(ctx, "sim", id, typ, op, payload)
	return string(b), err
}

func (e *simEnv) must(id, typ, op string, payload []byte) string {
	e.t.Helper()
	v, err := e.invoke(id, typ, op, payload)
	if err != nil {
		e.t.Fatalf("invoke %s %s.%s: %v", typ, id, op, err)
	}
	return v
}

// replayWASM runs 3 servers on the deterministic runtime with 4 clients
// issuing 160 random invocations that mix WASM actors (C and Go guests:
// in-memory counters, KV counters, callers calling Go and WASM actors) with
// Go actors, and one server crash. It returns the trace hash and the
// clients' results.
func replayWASM(t *testing.T, seed uint64, bins guestBins) (uint64, string) {
	t.Helper()
	var results []string
	hash := runSim(t, seed, 3, bins, nil, func(e *simEnv) {
		rng := e.w.Rand()
		done := e.driver.NewSema(0)
		const clients, perClient = 4, 40
		crashAt := int(rng.Uint64N(perClient))
		victim := int(rng.Uint64N(3))
		for ci := range clients {
			cn := e.w.Node(fmt.Sprintf("client%d", ci))
			cl, err := nola.NewClient(nola.ClientConfig{Runtime: cn, Store: e.store, Transport: e.c.Network().Transport(cn)})
			if err != nil {
				t.Error(err)
				return
			}
			cn.Go("client", func() {
				defer done.Release()
				for i := range perClient {
					if ci == 0 && i == crashAt {
						e.c.Crash(victim)
						e.nodes[victim].Crash()
						e.w.Trace(fmt.Sprintf("crash s%d", victim))
					}
					k := rng.Uint64N(4)
					var id, typ, op string
					var payload []byte
					switch rng.Uint64N(6) {
					case 0:
						id, typ, op = fmt.Sprintf("cc%d", k), "counter-c", "inc"
					case 1:
						id, typ, op = fmt.Sprintf("cg%d", k), "counter-go", "inc"
					case 2:
						id, typ, op = fmt.Sprintf("kc%d", k), "kvcounter-c", "inc"
					case 3:
						id, typ, op = fmt.Sprintf("kg%d", k), "kvcounter-go", "inc"
					case 4:
						// A C guest calls a Go actor.
						id, typ, op = fmt.Sprintf("callc%d", k), "caller-c", "call"
						payload = fmt.Appendf(nil, "counter/g%d/inc", rng.Uint64N(4))
					default:
						// A Go actor calls a WASM actor.
						id, typ, op = fmt.Sprintf("callgo%d", k), "caller", "call"
						payload = fmt.Appendf(nil, "counter-go/cg%d/inc", rng.Uint64N(4))
					}
					ictx, cancel := cn.WithTimeout(e.ctx, 2*time.Second)
					b, err := cl.Invoke(ictx, "sim", id, typ, op, payload)
					cancel()
					r := fmt.Sprintf("c%d %s.%s -> %q %v @%v", ci, id, op, b, nola.CodeOf(err), cn.Mono())
					results = append(results, r)
					e.w.Trace(r)
					_ = cn.Sleep(e.ctx, time.Duration(rng.Uint64N(200))*time.Millisecond)
				}
			})
		}
		for range clients {
			_ = done.Acquire(e.ctx)
		}
	})
	if len(results) != 160 {
		t.Fatalf("seed %d: %d results, want 160", seed, len(results))
	}
	return hash, strings.Join(results, "\n")
}

// WASM actors, C and Go guests, run under the deterministic runtime: the
// same seed replays the same trace; another seed does not.
func TestDeterministicReplayWASM(t *testing.T) {
	bins := loadGuests(t, true)
	h1, r1 := replayWASM(t, 4242, bins)
	h2, r2 := replayWASM(t, 4242, bins)
	if h1 != h2 || r1 != r2 {
		t.Fatalf("seed 4242 replayed differently: hashes %x vs %x\n--- first\n%s\n--- second\n%s", h1, h2, r1, r2)
	}
	h3, r3 := replayWASM(t, 4243, bins)
	if h1 == h3 || r1 == r3 {
		t.Fatalf("seeds 4242 and 4243 gave the same trace %x", h1)
	}
	// The run did real work: every kind of actor answered with numbers
	// (the crash makes some calls fail until the lease expires).
	ok := map[string]int{}
	for _, line := range strings.Split(r1, "\n") {
		i := strings.Index(line, `-> "`)
		if i < 0 {
			continue
		}
		if _, err := strconv.Atoi(strings.SplitN(line[i+4:], `"`, 2)[0]); err == nil {
			id, _, _ := strings.Cut(strings.Fields(line)[1], ".")
			family := strings.TrimRight(id, "0123456789")
			ok[family]++
		}
	}
	for _, f := range []string{"cc", "cg", "kc", "kg", "callc", "callgo"} {
		if ok[f] < 3 {
			t.Fatalf("only %d calls of kind %s returned a number (%v):\n%s", ok[f], f, ok, r1)
		}
	}
}

// A WASM actor's timers fire on virtual time and stop when cancelled.
func TestWASMTimersUnderSimulation(t *testing.T) {
	bins := loadGuests(t, true)
	runSim(t, 7, 1, bins, nil, func(e *simEnv) {
		e.must("t", "echo-go", "timer", []byte("100ms"))
		e.sleep(time.Second + 50*time.Millisecond)
		n, err := strconv.Atoi(e.must("t", "echo-go", "ticks", nil))
		if err != nil || n != 10 {
			t.Fatalf("ticks after 1.05s of 100ms timer: %d (%v), want 10", n, err)
		}
		if got := e.must("t", "echo-go", "untimer", nil); got != "true" {
			t.Fatalf("untimer = %s", got)
		}
		e.sleep(time.Second)
		if got := e.must("t", "echo-go", "ticks", nil); got != "10" {
			t.Fatalf("ticks after cancel = %s, want 10", got)
		}
	})
}

// Under simulation virtual time stands still while a guest computes: fuel
// bounds a runaway guest, deterministically, and the server goes on.
func TestFuelBoundsRunawayGuestUnderSimulation(t *testing.T) {
	bins := loadGuests(t, false)
	cfg := func(c *wasm.Config) { c.MaxFuel = 1 << 24 }
	runSim(t, 3, 1, bins, cfg, func(e *simEnv) {
		e.must("s", "hostile-c", "inc", nil)
		_, err := e.invoke("s", "hostile-c", "spin", nil)
		wantTrap(t, err, wasm.TrapFuel, "checkpoints")
		if got := e.must("s", "hostile-c", "inc", nil); got != "0" {
			t.Fatalf("after the trap: %s, want a fresh instance", got)
		}
		if got := e.must("b", "counter-c", "inc", nil); got != "0" {
			t.Fatalf("bystander: %s", got)
		}
	})
}

// A fenced server drops its activations without deactivating them; the
// host reclaims their instances once it creates new ones.
func TestFencedActivationsInstancesAreReclaimed(t *testing.T) {
	bins := loadGuests(t, false)
	cfg := func(c *wasm.Config) { c.SweepInterval = time.Second }
	runSim(t, 5, 1, bins, cfg, func(e *simEnv) {
		for i := range 3 {
			id := fmt.Sprintf("a%d", i)
			e.must(id, "counter-c", "inc", nil)
			e.must(id, "counter-c", "inc", nil)
		}
		h := e.hosts[0]
		if s := h.Stats(); s.Instances != 3 {
			t.Fatalf("before the fence: %+v", s)
		}
		inc := e.c.Server(0).Incarnation()
		e.links[0].SetMode(faultinject.Down)
		e.sleep(2 * simTTL)
		e.links[0].SetMode(faultinject.Pass)
		for e.c.Server(0).Incarnation() <= inc {
			e.sleep(time.Second)
		}
		if s := h.Stats(); s.Instances != 3 || s.Closed != 0 {
			t.Fatalf("the fence dropped the activations without closing instances: %+v", s)
		}
		for i := range 3 {
			if got := e.must(fmt.Sprintf("a%d", i), "counter-c", "inc", nil); got != "0" {
				t.Fatalf("a%d after the fence: %s, want a fresh activation", i, got)
			}
		}
		if s := h.Stats(); s.Instances != 3 || s.Swept != 3 {
			t.Fatalf("after reactivation: %+v, want the 3 old instances swept", s)
		}
	})
}
