package wasm_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

const ns = "wasm"

// cache shares compiled machine code between the tests' hosts (and, on
// disk, between test runs): compiling a Go guest takes ~0.8 s.
var cache = sync.OnceValue(wasmtest.CompilationCache)

// env is an in-process cluster on the production runtime with a WASM host
// per server.
type env struct {
	t     testing.TB
	r     *rt.Real
	store *memkv.Store
	mods  *modules.Store
	c     *nola.Cluster
	hosts []*wasm.Host
	ctx   context.Context
}

type envOpts struct {
	servers int
	host    func(*wasm.Config)
	server  func(*nola.ServerConfig)
	types   map[string]nola.Factory
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	if o.servers == 0 {
		o.servers = 1
	}
	if o.types == nil {
		o.types = actors.Types()
	}
	e := &env{t: t, r: rt.NewReal(), ctx: context.Background()}
	e.store = memkv.New(e.r, memkv.Options{})
	e.mods = modules.New(e.store, modules.Config{})
	e.hosts = make([]*wasm.Host, o.servers)
	c, err := nola.NewCluster(e.ctx, nola.ClusterConfig{
		Servers: o.servers, Store: e.store, Types: o.types,
		Runtime:       func(int) rt.Runtime { return e.r },
		ClientRuntime: e.r,
		Configure: func(i int, cfg *nola.ServerConfig) {
			// A lease long enough that no stall of a loaded machine
			// under -race lets it lapse (one of 2 s or more was seen):
			// a fence restarts every actor, and the tests compare
			// in-memory counts. Nothing here waits for an expiry.
			cfg.LeaseTTL = 30 * time.Second
			if o.server != nil {
				o.server(cfg)
			}
			hc := wasm.Config{Runtime: cfg.Runtime, Modules: e.mods, CompilationCache: cache()}
			if o.host != nil {
				o.host(&hc)
			}
			h, err := wasm.New(e.ctx, hc)
			if err != nil {
				t.Fatalf("wasm host: %v", err)
			}
			e.hosts[i] = h
			cfg.Resolver = h
			cfg.WorkerResolver = h
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	for i, h := range e.hosts {
		h.Attach(c.Server(i))
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		for _, h := range e.hosts {
			if err := h.Close(ctx); err != nil {
				t.Errorf("close host: %v", err)
			}
		}
		_ = e.store.Close()
		e.r.Wait()
	})
	return e
}

// restartAll stops every server gracefully, closes their hosts and starts
// fresh servers with fresh hosts.
func (e *env) restartAll() {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 20*time.Second)
	defer cancel()
	if err := e.c.Shutdown(ctx); err != nil {
		e.t.Fatal(err)
	}
	for _, h := range e.hosts {
		if err := h.Close(ctx); err != nil {
			e.t.Fatal(err)
		}
	}
	for i := range e.hosts {
		if err := e.c.Restart(ctx, i); err != nil {
			e.t.Fatal(err)
		}
		e.hosts[i].Attach(e.c.Server(i))
	}
}

// in returns e reporting to t: a subtest's failures must end the subtest,
// not its parent.
func (e *env) in(t testing.TB) *env {
	c := *e
	c.t = t
	return &c
}

// put uploads a module.
func (e *env) put(id string, bin []byte, opts modules.Options) {
	e.t.Helper()
	if _, err := e.mods.Put(e.ctx, ns, id, bin, opts); err != nil {
		e.t.Fatalf("put module %s: %v", id, err)
	}
}

// putGuests uploads the C guests as "<name>-c" and the named Go guests as
// "<name>-go" (validating a Go guest takes a while: tests upload those
// they use).
func (e *env) putGuests(goGuests ...string) {
	e.t.Helper()
	for _, n := range wasmtest.CGuests {
		e.put(n+"-c", wasmtest.C(e.t, n), modules.Options{})
	}
	for _, n := range goGuests {
		e.put(n+"-go", wasmtest.Go(e.t, n), modules.Options{})
	}
}

func (e *env) invoke(id, typ, op string, payload []byte) (string, error) {
	// Two minutes is a failure bound, not a synchronisation: the first
	// call of a Go guest compiles it, which takes tens of seconds under
	// -race on a loaded 2-core machine.
	ctx, cancel := context.WithTimeout(e.ctx, 2*time.Minute)
	defer cancel()
	b, err := e.c.Client().Invoke(ctx, ns, id, typ, op, payload)
	return string(b), err
}

// invokeNoDeadline invokes with no deadline of the caller's, so that only
// the host's limits can end the call. A minute is the failure bound, not a
// synchronisation: a call still running then has no bound at all.
func (e *env) invokeNoDeadline(id, typ, op string, payload []byte) (string, error) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		b, err := e.c.Client().Invoke(ctx, ns, id, typ, op, payload)
		done <- result{b, err}
	}()
	select {
	case r := <-done:
		return string(r.b), r.err
	case <-time.After(time.Minute):
		cancel()
		<-done
		e.t.Fatalf("invoke %s %s.%s: still running after a minute with no caller deadline", typ, id, op)
		return "", nil
	}
}

func (e *env) must(id, typ, op string, payload []byte) string {
	e.t.Helper()
	v, err := e.invoke(id, typ, op, payload)
	if err != nil {
		e.t.Fatalf("invoke %s %s.%s: %v", typ, id, op, err)
	}
	return v
}

func (e *env) want(id, typ, op string, payload []byte, want string) {
	e.t.Helper()
	if got := e.must(id, typ, op, payload); got != want {
		e.t.Fatalf("%s %s.%s = %q, want %q", typ, id, op, got, want)
	}
}

func wantCode(t *testing.T, err error, code nola.Code) *nola.Error {
	t.Helper()
	var ne *nola.Error
	if !errors.As(err, &ne) || ne.Code != code {
		t.Fatalf("got %v (code %s), want code %s", err, nola.CodeOf(err), code)
	}
	return ne
}
