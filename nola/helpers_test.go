package nola_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/faultinject"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/rt/simrt"
)

const ns = "test"

// simEnv is an in-process cluster on the deterministic runtime: every server
// is its own node (crash, pause, drift apply to it alone), requests run as
// tasks of the target server, and each server reaches the store through its
// own faultinject.Store so it can be cut off alone.
type simEnv struct {
	t      *testing.T
	w      *simrt.World
	store  *memkv.Store
	links  []*faultinject.Store
	nodes  []*simrt.Node
	c      *nola.Cluster
	driver *simrt.Node
	ctx    context.Context
}

const simTTL = 6 * time.Second

// runSim builds an n-server cluster on a fresh world and runs body as the
// world's main task.
func runSim(t *testing.T, seed uint64, n int, types map[string]nola.Factory, configure func(i int, cfg *nola.ServerConfig), body func(e *simEnv)) {
	t.Helper()
	w := simrt.New(seed)
	if os.Getenv("NOLA_SIM_TRACE") != "" {
		w.SetTraceWriter(os.Stderr)
	}
	w.SetMaxSteps(2_000_000)
	err := w.Run(func() {
		e := &simEnv{t: t, w: w, ctx: context.Background()}
		e.driver = w.Node("driver")
		e.store = memkv.New(w.Node("store"), memkv.Options{})
		for i := range n {
			e.nodes = append(e.nodes, w.Node(fmt.Sprintf("s%d", i)))
			e.links = append(e.links, faultinject.NewStore(e.store))
		}
		if types == nil {
			types = actors.Types()
		}
		c, err := nola.NewCluster(e.ctx, nola.ClusterConfig{
			Servers:       n,
			Store:         e.store,
			Runtime:       func(i int) rt.Runtime { return e.nodes[i] },
			ClientRuntime: e.driver,
			Async:         true,
			Types:         types,
			Configure: func(i int, cfg *nola.ServerConfig) {
				cfg.Store = e.links[i]
				cfg.LeaseTTL = simTTL
				if configure != nil {
					configure(i, cfg)
				}
			},
		})
		if err != nil {
			t.Errorf("start cluster: %v", err)
			return
		}
		e.c = c
		body(e)
		c.Halt()
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (e *simEnv) sleep(d time.Duration) {
	if err := e.driver.Sleep(e.ctx, d); err != nil {
		e.t.Fatalf("sleep: %v", err)
	}
}

func (e *simEnv) invoke(id, typ, op string, payload []byte) (string, error) {
	ctx, cancel := e.driver.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	b, err := e.c.Client().Invoke(ctx, ns, id, typ, op, payload)
	return string(b), err
}

func (e *simEnv) mustInvoke(id, typ, op string, payload []byte) string {
	e.t.Helper()
	v, err := e.invoke(id, typ, op, payload)
	if err != nil {
		e.t.Fatalf("invoke %s %s.%s: %v", typ, id, op, err)
	}
	return v
}

// invokeUntil retries an invocation (as a patient client would) until it
// succeeds or limit of virtual time passes; it returns the result and how
// long it took.
func (e *simEnv) invokeUntil(limit time.Duration, id, typ, op string) (string, time.Duration, error) {
	start := e.driver.Mono()
	for {
		v, err := e.invoke(id, typ, op, nil)
		if err == nil {
			return v, e.driver.Mono() - start, nil
		}
		if e.driver.Mono()-start > limit {
			return "", 0, fmt.Errorf("still failing after %v: %w", limit, err)
		}
		e.sleep(100 * time.Millisecond)
	}
}

// crash kills server i: the process (node) and its in-flight work.
func (e *simEnv) crash(i int) {
	e.c.Crash(i)
	e.nodes[i].Crash()
}

// direct sends an invocation to server i, bypassing routing (a client with
// a stale cache).
func (e *simEnv) direct(i int, id, typ, op string) (string, error) {
	ctx, cancel := e.driver.WithTimeout(e.ctx, 5*time.Second)
	defer cancel()
	tr := e.c.Network().Transport(e.driver)
	b, err := tr.Invoke(ctx, fmt.Sprintf("local://s%d", i), nola.Request{
		Namespace: ns, ActorID: id, ActorType: typ, Operation: op,
	})
	return string(b), err
}

func wantCode(t *testing.T, err error, code nola.Code) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %s", code)
	}
	var ne *nola.Error
	if !errors.As(err, &ne) || ne.Code != code {
		t.Fatalf("got %v (code %s), want code %s", err, nola.CodeOf(err), code)
	}
}
