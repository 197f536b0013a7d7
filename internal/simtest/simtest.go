// Package simtest runs in-process nola clusters on the deterministic runtime
// (rt/simrt) for tests: each server its own node (crash, pause and drift
// apply to it alone), requests as tasks of their target server, and each
// server's store link a faultinject.Store so it can be cut off alone. The
// simulator in sim/ is the full version of this, with a simulated network
// and fault schedules; this is the small harness unit tests share.
package simtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"sync"
	"time"

	"github.com/nolaproject/nola/faultinject"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

// TB is the part of testing.TB the harness uses.
type TB interface {
	Helper()
	Errorf(format string, args ...any)
	Fatalf(format string, args ...any)
}

// Options describe a simulated cluster.
type Options struct {
	Seed    uint64
	Servers int
	Types   map[string]nola.Factory
	// TTL is every server's lease TTL (default 6s).
	TTL time.Duration
	// NS is the namespace of the Env's calls (default "test").
	NS string
	// MaxSteps bounds the run (default 5e6 scheduling steps).
	MaxSteps int64
	// Setup runs before the cluster starts (e.g. to upload modules);
	// Configure adjusts server i's config; Started runs once the cluster
	// is up; Teardown after the body, before the cluster halts.
	Setup     func(e *Env)
	Configure func(e *Env, i int, cfg *nola.ServerConfig)
	// Placement is the Env's client's placement policy (zero: the
	// default).
	Placement registry.PlacementPolicy
	Started   func(e *Env)
	Teardown  func(e *Env)
}

// Env is a running simulated cluster, seen from the body's task.
type Env struct {
	T      TB
	W      *simrt.World
	Ctx    context.Context
	Driver *simrt.Node
	Store  *memkv.Store
	Nodes  []*simrt.Node
	Links  []*faultinject.Store
	C      *nola.Cluster
	NS     string
	TTL    time.Duration
}

// Run builds the cluster on a fresh world seeded with o.Seed, runs body as
// its main task, and returns the world's trace hash. NOLA_SIM_TRACE=1
// prints the trace.
func Run(t TB, o Options, body func(e *Env)) uint64 {
	t.Helper()
	if o.TTL <= 0 {
		o.TTL = 6 * time.Second
	}
	if o.NS == "" {
		o.NS = "test"
	}
	if o.MaxSteps <= 0 {
		o.MaxSteps = 5_000_000
	}
	w := simrt.New(o.Seed)
	if os.Getenv("NOLA_SIM_TRACE") != "" {
		w.SetTraceWriter(os.Stderr)
	}
	w.SetMaxSteps(o.MaxSteps)
	err := w.Run(func() {
		e := &Env{T: t, W: w, Ctx: context.Background(), NS: o.NS, TTL: o.TTL}
		e.Driver = w.Node("driver")
		e.Store = memkv.New(w.Node("store"), memkv.Options{})
		for i := range o.Servers {
			e.Nodes = append(e.Nodes, w.Node(fmt.Sprintf("s%d", i)))
			e.Links = append(e.Links, faultinject.NewStore(e.Store))
		}
		if o.Setup != nil {
			o.Setup(e)
		}
		c, err := nola.NewCluster(e.Ctx, nola.ClusterConfig{
			Servers:       o.Servers,
			Store:         e.Store,
			Runtime:       func(i int) rt.Runtime { return e.Nodes[i] },
			ClientRuntime: e.Driver,
			Async:         true,
			Types:         o.Types,
			Placement:     o.Placement,
			Configure: func(i int, cfg *nola.ServerConfig) {
				cfg.Store = e.Links[i]
				cfg.LeaseTTL = o.TTL
				if o.Configure != nil {
					o.Configure(e, i, cfg)
				}
			},
		})
		if err != nil {
			t.Errorf("start cluster: %v", err)
			return
		}
		e.C = c
		if o.Started != nil {
			o.Started(e)
		}
		body(e)
		if o.Teardown != nil {
			o.Teardown(e)
		}
		c.Halt()
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	return w.Hash()
}

// Sleep sleeps on the driver's clock.
func (e *Env) Sleep(d time.Duration) {
	if err := e.Driver.Sleep(e.Ctx, d); err != nil {
		e.T.Fatalf("sleep: %v", err)
	}
}

// Invoke calls an actor of the Env's namespace through the cluster's
// client, with a 5s deadline.
func (e *Env) Invoke(id, typ, op string, payload []byte) (string, error) {
	ctx, cancel := e.Driver.WithTimeout(e.Ctx, 5*time.Second)
	defer cancel()
	b, err := e.C.Client().Invoke(ctx, e.NS, id, typ, op, payload)
	return string(b), err
}

// MustInvoke is Invoke that fails the test on an error.
func (e *Env) MustInvoke(id, typ, op string, payload []byte) string {
	e.T.Helper()
	v, err := e.Invoke(id, typ, op, payload)
	if err != nil {
		e.T.Fatalf("invoke %s %s.%s: %v", typ, id, op, err)
	}
	return v
}

// InvokeUntil retries an invocation, as a patient client would, until it
// succeeds or limit of virtual time passes; it returns the result and how
// long it took.
func (e *Env) InvokeUntil(limit time.Duration, id, typ, op string) (string, time.Duration, error) {
	start := e.Driver.Mono()
	for {
		v, err := e.Invoke(id, typ, op, nil)
		if err == nil {
			return v, e.Driver.Mono() - start, nil
		}
		if e.Driver.Mono()-start > limit {
			return "", 0, fmt.Errorf("still failing after %v: %w", limit, err)
		}
		e.Sleep(100 * time.Millisecond)
	}
}

// Crash kills server i: the process (node) and its in-flight work.
func (e *Env) Crash(i int) {
	e.C.Crash(i)
	e.Nodes[i].Crash()
}

// Direct sends an invocation to server i, bypassing routing (a client with
// a stale cache).
func (e *Env) Direct(i int, id, typ, op string) (string, error) {
	ctx, cancel := e.Driver.WithTimeout(e.Ctx, 5*time.Second)
	defer cancel()
	tr := e.C.Network().Transport(e.Driver)
	b, err := tr.Invoke(ctx, fmt.Sprintf("local://s%d", i), nola.Request{
		Namespace: e.NS, ActorID: id, ActorType: typ, Operation: op,
	})
	return string(b), err
}

// Call is one invocation of a replay workload.
type Call struct {
	ID, Type, Op string
	Payload      []byte
}

// Replay runs clients concurrent clients (each its own node and Client),
// each issuing perClient calls drawn by pick from the world's PRNG with
// random think times, and crashes one random server at a random point. It
// returns every call's result, in completion order, each also traced into
// the world's hash.
func (e *Env) Replay(clients, perClient int, pick func(r *rand.Rand) Call) []string {
	rng := e.W.Rand()
	done := e.Driver.NewSema(0)
	crashAt := int(rng.Uint64N(uint64(perClient)))
	victim := int(rng.Uint64N(uint64(len(e.Nodes))))
	var (
		mu      sync.Mutex // never contended under simrt; keeps -race quiet
		results []string
	)
	for ci := range clients {
		cn := e.W.Node(fmt.Sprintf("client%d", ci))
		cl, err := nola.NewClient(nola.ClientConfig{Runtime: cn, Store: e.Store, Transport: e.C.Network().Transport(cn)})
		if err != nil {
			e.T.Fatalf("client: %v", err)
		}
		cn.Go("client", func() {
			defer done.Release()
			for i := range perClient {
				if ci == 0 && i == crashAt {
					e.Crash(victim)
					e.W.Trace(fmt.Sprintf("crash s%d", victim))
				}
				c := pick(rng)
				ictx, cancel := cn.WithTimeout(e.Ctx, 2*time.Second)
				b, err := cl.Invoke(ictx, e.NS, c.ID, c.Type, c.Op, c.Payload)
				cancel()
				r := fmt.Sprintf("c%d %s.%s -> %q %v @%v", ci, c.ID, c.Op, b, nola.CodeOf(err), cn.Mono())
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				e.W.Trace(r)
				_ = cn.Sleep(e.Ctx, time.Duration(rng.Uint64N(200))*time.Millisecond)
			}
		})
	}
	for range clients {
		_ = done.Acquire(e.Ctx)
	}
	return results
}
