package nola_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

// barrier opens once n parties have arrived; a party that arrives waits
// for it (or for its context). onFull runs once, while every party waits.
type barrier struct {
	n      int64
	in     atomic.Int64
	open   chan struct{}
	onFull func()
}

func newBarrier(n int, onFull func()) *barrier {
	return &barrier{n: int64(n), open: make(chan struct{}), onFull: onFull}
}

func (b *barrier) arrive(ctx context.Context) error {
	if b.in.Add(1) == b.n {
		if b.onFull != nil {
			b.onFull()
		}
		close(b.open)
	}
	select {
	case <-b.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// N invocations of one worker type are in flight on one server at once:
// each blocks on a barrier that opens only when all N have entered, which
// could never happen under single activation (the test would fail with a
// timeout instead; see TestWorkerBarrierNeedsConcurrency for the same
// barrier failing when concurrency is capped below N).
func TestWorkerRunsConcurrently(t *testing.T) {
	const n = 16
	var peak int64
	var s0 *nola.Server
	b := newBarrier(n, func() {
		for _, st := range s0.WorkerStats() {
			if st.Type == "wait" {
				peak = st.InFlight
			}
		}
	})
	c := realCluster(t, 2, actors.Types(), func(cfg *nola.ServerConfig) {
		cfg.Workers = map[string]nola.WorkerFunc{
			"wait": func(wx *nola.WorkerContext, op string, p []byte) ([]byte, error) {
				if err := b.arrive(wx); err != nil {
					return nil, err
				}
				return append([]byte("done "), p...), nil
			},
		}
	})
	s0 = c.Server(0)
	ctx := callCtx(t)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			res, err := s0.Client().CallWorker(ctx, ns, "wait", "go", []byte{byte('a' + i)})
			if err == nil && string(res) != "done "+string(rune('a'+i)) {
				err = errors.New("wrong result " + string(res))
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	if peak != n {
		t.Fatalf("in flight when the barrier filled: %d, want %d", peak, n)
	}
	st := s0.WorkerStats()
	if len(st) != 1 || st[0].Calls != n || st[0].Errors != 0 || st[0].InFlight != 0 {
		t.Fatalf("stats %+v, want %d calls, nothing in flight", st, n)
	}
	// Routed by the server that received the call: s1 ran none.
	if st1 := c.Server(1).WorkerStats(); st1[0].Calls != 0 {
		t.Fatalf("s1 ran %d worker calls sent to s0", st1[0].Calls)
	}
}

// The barrier of TestWorkerRunsConcurrently is not vacuous: with the
// concurrency capped below N, the N-th call is refused (overloaded) while
// the others wait on it; the barrier never fills on its own.
func TestWorkerBarrierNeedsConcurrency(t *testing.T) {
	const n = 4
	b := newBarrier(n, nil)
	c := realCluster(t, 1, actors.Types(), func(cfg *nola.ServerConfig) {
		cfg.MaxWorkerInFlight = n - 1
		cfg.Workers = map[string]nola.WorkerFunc{
			"wait": func(wx *nola.WorkerContext, _ string, _ []byte) ([]byte, error) { return nil, b.arrive(wx) },
		}
	})
	s0 := c.Server(0)
	ctx, cancel := context.WithCancel(callCtx(t))
	defer cancel()
	var wg sync.WaitGroup
	var overloaded atomic.Int64
	for range n {
		wg.Go(func() {
			_, err := s0.Client().CallWorker(ctx, ns, "wait", "go", nil)
			if errors.Is(err, nola.ErrOverloaded) {
				overloaded.Add(1)
				cancel() // the barrier cannot fill: release the others
			}
		})
	}
	wg.Wait()
	if overloaded.Load() != 1 {
		t.Fatalf("%d calls overloaded, want exactly 1", overloaded.Load())
	}
	if b.in.Load() != n-1 {
		t.Fatalf("%d calls entered the worker, want %d", b.in.Load(), n-1)
	}
}

// At the limit, one more call is refused with a typed, retryable
// overloaded error that ran nothing, and counted; below it calls run again.
func TestWorkerConcurrencyLimit(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	var ran atomic.Int64
	c := realCluster(t, 1, actors.Types(), func(cfg *nola.ServerConfig) {
		cfg.MaxWorkerInFlight = 2
		cfg.Workers = map[string]nola.WorkerFunc{
			"block": func(wx *nola.WorkerContext, op string, _ []byte) ([]byte, error) {
				ran.Add(1)
				if op == "block" {
					entered <- struct{}{}
					<-release
				}
				return []byte("ok"), nil
			},
		}
	})
	s0 := c.Server(0)
	ctx := callCtx(t)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			if _, err := s0.Client().CallWorker(ctx, ns, "block", "block", nil); err != nil {
				t.Error(err)
			}
		})
	}
	<-entered
	<-entered
	_, err := s0.Client().CallWorker(ctx, ns, "block", "quick", nil)
	wantCode(t, err, nola.CodeOverloaded)
	if !nola.IsRetryable(err) || !errors.Is(err, nola.ErrOverloaded) {
		t.Fatalf("overloaded error %v: want retryable and errors.Is ErrOverloaded", err)
	}
	if ran.Load() != 2 {
		t.Fatalf("the refused call ran: %d runs", ran.Load())
	}
	st := s0.WorkerStats()[0]
	if st.Rejected != 1 || st.InFlight != 2 || st.MaxInFlight != 2 {
		t.Fatalf("stats %+v", st)
	}
	close(release)
	wg.Wait()
	if _, err := s0.Client().CallWorker(ctx, ns, "block", "quick", nil); err != nil {
		t.Fatalf("below the limit again: %v", err)
	}
	if st := s0.WorkerStats()[0]; st.Calls != 3 || st.Rejected != 1 || st.InFlight != 0 {
		t.Fatalf("stats after: %+v", st)
	}
}

// An actor calls a worker, the worker calls an actor; a worker calling
// back into the actor waiting on it fails at once (a cycle), not by
// deadlock; pending KV writes of the actor are committed before the worker
// runs (the output gate).
func TestWorkerCalledFromActorAndCallingActors(t *testing.T) {
	types := actors.Types()
	types["front"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(cx *nola.Context, op string, p []byte) ([]byte, error) {
			if err := cx.Put([]byte("before"), []byte("x")); err != nil {
				return nil, err
			}
			return cx.CallWorker("relay", op, p)
		}), nil
	}
	var committedFirst atomic.Bool
	var reg nola.Inspector // set once the cluster runs
	workers := map[string]nola.WorkerFunc{
		"relay": func(wx *nola.WorkerContext, op string, p []byte) ([]byte, error) {
			switch op {
			case "count": // call an actor
				return wx.Invoke(string(p), "counter", "inc", nil)
			case "back": // call the calling actor: a cycle
				return wx.Invoke(string(p), "", "x", nil)
			case "peek": // the caller's write is visible in the store
				v, found, err := reg.GetKV(wx, ns, string(p), []byte("before"))
				committedFirst.Store(err == nil && found && string(v) == "x")
				return nil, err
			}
			return nil, errors.New("unknown op " + op)
		},
	}
	c := realCluster(t, 2, types, func(cfg *nola.ServerConfig) { cfg.Workers = workers })
	reg = c.Server(0).Inspector()
	ctx := callCtx(t)
	cl := c.Client()
	for i, want := range []string{"0", "1"} {
		res, err := cl.Invoke(ctx, ns, "f1", "front", "count", []byte("ctr"))
		if err != nil || string(res) != want {
			t.Fatalf("call %d: %q, %v; want %q", i, res, err, want)
		}
	}
	_, err := cl.Invoke(ctx, ns, "f2", "front", "back", []byte("f2"))
	wantCode(t, err, nola.CodeActorError)
	if !strings.Contains(err.Error(), "call cycle") {
		t.Fatalf("call back into the caller: %v, want a call cycle error", err)
	}
	if _, err := cl.Invoke(ctx, ns, "f3", "front", "peek", []byte("f3")); err != nil {
		t.Fatal(err)
	}
	if !committedFirst.Load() {
		t.Fatal("the worker did not see the actor's write committed before it ran")
	}
}

// A worker has no KV and no timers: each attempt fails with a typed error
// (errors.Is ErrNoState, code bad_request), which keeps its code when the
// worker returns it.
func TestWorkerHasNoState(t *testing.T) {
	attempts := map[string]func(*nola.WorkerContext) error{
		"get":    func(wx *nola.WorkerContext) error { _, _, err := wx.Get([]byte("k")); return err },
		"put":    func(wx *nola.WorkerContext) error { return wx.Put([]byte("k"), []byte("v")) },
		"delete": func(wx *nola.WorkerContext) error { return wx.Delete([]byte("k")) },
		"scan":   func(wx *nola.WorkerContext) error { _, err := wx.Scan(nil, nil, 10); return err },
		"prefix": func(wx *nola.WorkerContext) error { _, err := wx.ScanPrefix(nil, 10); return err },
		"timer": func(wx *nola.WorkerContext) error {
			return wx.SetTimer("t", time.Second, 0, "x", nil)
		},
	}
	c := realCluster(t, 1, actors.Types(), func(cfg *nola.ServerConfig) {
		cfg.Workers = map[string]nola.WorkerFunc{
			"w": func(wx *nola.WorkerContext, op string, _ []byte) ([]byte, error) {
				if wx.CancelTimer("t") {
					return nil, errors.New("CancelTimer reported a timer")
				}
				return nil, attempts[op](wx)
			},
		}
	})
	for op := range attempts {
		_, err := c.Client().CallWorker(callCtx(t), ns, "w", op, nil)
		wantCode(t, err, nola.CodeBadRequest)
		if !errors.Is(err, nola.ErrNoState) || !strings.Contains(err.Error(), "worker w") {
			t.Fatalf("%s: %v: want ErrNoState naming the worker", op, err)
		}
	}
}

// Errors, panics, oversized results, unknown types and bad requests are
// typed, counted, and never take the server down.
func TestWorkerFailures(t *testing.T) {
	c := realCluster(t, 1, actors.Types(), func(cfg *nola.ServerConfig) {
		cfg.Limits.MaxResultBytes = 64
		cfg.Workers = map[string]nola.WorkerFunc{
			"w": func(wx *nola.WorkerContext, op string, _ []byte) ([]byte, error) {
				switch op {
				case "fail":
					return nil, errors.New("refused")
				case "panic":
					panic("boom")
				case "big":
					return bytes.Repeat([]byte("x"), 65), nil
				}
				return []byte(op), nil
			},
		}
	})
	ctx := callCtx(t)
	cl := c.Client()
	_, err := cl.CallWorker(ctx, ns, "w", "fail", nil)
	wantCode(t, err, nola.CodeActorError)
	if !strings.Contains(err.Error(), "worker w: refused") {
		t.Fatalf("worker error: %v", err)
	}
	_, err = cl.CallWorker(ctx, ns, "w", "panic", nil)
	wantCode(t, err, nola.CodeActorError)
	_, err = cl.CallWorker(ctx, ns, "w", "big", nil)
	wantCode(t, err, nola.CodeTooLarge)
	_, err = cl.CallWorker(ctx, ns, "nope", "x", nil)
	wantCode(t, err, nola.CodeBadRequest)
	_, err = cl.CallWorker(ctx, ns, "", "x", nil)
	wantCode(t, err, nola.CodeBadRequest)
	_, err = cl.CallWorker(ctx, ns, "w", "", nil)
	wantCode(t, err, nola.CodeBadRequest)
	_, err = cl.CallWorker(ctx, ns, strings.Repeat("w", 600), "x", nil)
	wantCode(t, err, nola.CodeBadRequest)
	_, err = cl.Do(ctx, nola.Request{Namespace: ns, Worker: "w", ActorID: "a", Operation: "x"})
	wantCode(t, err, nola.CodeBadRequest)
	if res, err := cl.CallWorker(ctx, ns, "w", "fine", nil); err != nil || string(res) != "fine" {
		t.Fatalf("after failures: %q, %v", res, err)
	}
	st := c.Server(0).WorkerStats()[0]
	if st.Calls != 4 || st.Errors != 3 {
		t.Fatalf("stats %+v, want 4 calls (unknown types and bad requests do not run), 3 errors", st)
	}
}

func TestWorkerConfigValidation(t *testing.T) {
	noop := func(*nola.WorkerContext, string, []byte) ([]byte, error) { return nil, nil }
	base := func() nola.ServerConfig {
		r := rt.NewReal()
		return nola.ServerConfig{ID: "s", Addr: "a", Runtime: r, Store: memkv.New(r, memkv.Options{}),
			Transport: nola.NewLocalNetwork(false).Transport(r)}
	}
	for name, mut := range map[string]func(*nola.ServerConfig){
		"nil func":  func(c *nola.ServerConfig) { c.Workers = map[string]nola.WorkerFunc{"w": nil} },
		"empty":     func(c *nola.ServerConfig) { c.Workers = map[string]nola.WorkerFunc{"": noop} },
		"long":      func(c *nola.ServerConfig) { c.Workers = map[string]nola.WorkerFunc{strings.Repeat("w", 513): noop} },
		"neg limit": func(c *nola.ServerConfig) { c.MaxWorkerInFlight = -1 },
	} {
		cfg := base()
		mut(&cfg)
		if _, err := nola.NewServer(cfg); err == nil {
			t.Errorf("%s: NewServer accepted it", name)
		}
	}
	cfg := base()
	cfg.Workers = map[string]nola.WorkerFunc{"w": noop}
	if _, err := nola.NewServer(cfg); err != nil {
		t.Fatalf("valid workers rejected: %v", err)
	}
}

// Typed calls reach workers from a client, an actor and a worker.
func TestWorkerTypedCalls(t *testing.T) {
	type sum struct{ A, B int }
	types := actors.Types()
	types["adder"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(cx *nola.Context, op string, p []byte) ([]byte, error) {
			n, err := nola.CallWorker[sum, int](cx, cx, nola.WorkerRef{Type: "calc"}, "add", sum{2, 3})
			if err != nil {
				return nil, err
			}
			return []byte{byte(n)}, nil
		}), nil
	}
	c := realCluster(t, 1, types, func(cfg *nola.ServerConfig) {
		cfg.Workers = map[string]nola.WorkerFunc{
			"calc": func(wx *nola.WorkerContext, op string, p []byte) ([]byte, error) {
				if op == "twice" { // a worker calling a worker, typed
					n, err := nola.CallWorker[sum, int](wx, wx, nola.WorkerRef{Type: "calc"}, "add", sum{4, 4})
					return []byte{byte(n)}, err
				}
				var s sum
				if err := (nola.JSONCodec{}).Unmarshal(p, &s); err != nil {
					return nil, err
				}
				return (nola.JSONCodec{}).Marshal(s.A + s.B)
			},
		}
	})
	ctx := callCtx(t)
	got, err := nola.CallWorker[sum, int](ctx, c.Client(), nola.WorkerRef{Namespace: ns, Type: "calc"}, "add", sum{1, 2})
	if err != nil || got != 3 {
		t.Fatalf("client: %d, %v", got, err)
	}
	res, err := c.Client().Invoke(ctx, ns, "a1", "adder", "go", nil)
	if err != nil || !bytes.Equal(res, []byte{5}) {
		t.Fatalf("from an actor: %v, %v", res, err)
	}
	res, err = c.Client().CallWorker(ctx, ns, "calc", "twice", nil)
	if err != nil || !bytes.Equal(res, []byte{8}) {
		t.Fatalf("worker to worker: %v, %v", res, err)
	}
	var f nola.CallerFunc = func(context.Context, nola.Ref, string, []byte) ([]byte, error) { return nil, nil }
	_, err = nola.CallWorker[sum, int](ctx, f, nola.WorkerRef{Namespace: ns, Type: "calc"}, "add", sum{})
	wantCode(t, err, nola.CodeBadRequest)
}

// Under the simulator an actor calling a worker that calls an actor is
// deterministic (same seed, same trace hash) and uses no bare goroutines
// (the engine scan checks the code; this runs it). The oracle sees the
// worker's calls as calls of the actor that called it (CallSent).
func TestWorkerUnderSimulation(t *testing.T) {
	types := actors.Types()
	types["front"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(cx *nola.Context, op string, p []byte) ([]byte, error) {
			return cx.CallWorker("relay", op, p)
		}), nil
	}
	relay := func(wx *nola.WorkerContext, op string, p []byte) ([]byte, error) {
		return wx.Invoke(string(p), "counter", "inc", nil)
	}
	run := func() uint64 {
		return simtest.Run(t, simtest.Options{
			Seed: 7, Servers: 3, Types: types, TTL: simTTL, NS: ns, MaxSteps: 2_000_000,
			Configure: func(_ *simtest.Env, _ int, cfg *nola.ServerConfig) {
				cfg.Workers = map[string]nola.WorkerFunc{"relay": relay}
			},
		}, func(e *simtest.Env) {
			for i, want := range []string{"0", "1", "2"} {
				res, err := e.C.Client().Invoke(e.Ctx, ns, "f", "front", "x", []byte("ctr"))
				if err != nil || string(res) != want {
					t.Fatalf("call %d: %q, %v", i, res, err)
				}
				res, err = e.C.Client().CallWorker(e.Ctx, ns, "relay", "x", []byte("ctr2"))
				if err != nil || string(res) != want {
					t.Fatalf("client call %d: %q, %v", i, res, err)
				}
			}
		})
	}
	if h1, h2 := run(), run(); h1 != h2 || h1 == 0 {
		t.Fatalf("trace hashes differ: %x, %x", h1, h2)
	}
}

// A worker called by an actor sends on the actor's behalf: once the
// actor's server has lost its lease (here: halted, as a crash would), the
// worker's call to another actor is refused by the actor's lease gate
// before it is sent, exactly as the actor's own call would be.
func TestWorkerCallsPassTheCallersLeaseGate(t *testing.T) {
	types := actors.Types()
	types["front"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(cx *nola.Context, op string, p []byte) ([]byte, error) {
			return cx.CallWorker("halt-then-call", op, p)
		}), nil
	}
	var srv *nola.Server
	var sent atomic.Bool
	c := realCluster(t, 1, types, func(cfg *nola.ServerConfig) {
		cfg.Workers = map[string]nola.WorkerFunc{
			"halt-then-call": func(wx *nola.WorkerContext, op string, p []byte) ([]byte, error) {
				srv.Halt()
				return wx.Invoke("ctr", "counter", "inc", nil)
			},
		}
		cfg.Observer = callObserver{&sent}
	})
	srv = c.Server(0)
	_, err := c.Client().Invoke(callCtx(t), ns, "f", "front", "x", nil)
	if err == nil || !strings.Contains(err.Error(), "effect refused") {
		t.Fatalf("call after the lease was lost: %v, want the lease gate's refusal", err)
	}
	if sent.Load() {
		t.Fatal("the observer saw the refused call as sent")
	}
}

// callObserver records whether any call passed its gate after the first
// (the actor's call to the worker itself).
type callObserver struct{ sent *atomic.Bool }

func (callObserver) Activated(nola.ActivationEvent)     {}
func (callObserver) Dropped(nola.ActivationEvent)       {}
func (callObserver) ExecStart(nola.ActivationEvent)     {}
func (callObserver) ExecEnd(nola.ActivationEvent, bool) {}
func (callObserver) Committed(nola.ActivationEvent)     {}
func (o callObserver) CallSent(ev nola.ActivationEvent) {
	if ev.Operation == "inc" {
		o.sent.Store(true)
	}
}

// A WorkerRouter dispatches typed operations of a worker; unknown
// operations and undecodable payloads are the caller's bad requests.
func TestWorkerRouter(t *testing.T) {
	type sum struct{ A, B int }
	var calc nola.WorkerRouter
	nola.HandleWorker(&calc, "add", func(_ *nola.WorkerContext, s sum) (int, error) { return s.A + s.B, nil })
	nola.HandleWorker(&calc, "fail", func(_ *nola.WorkerContext, _ struct{}) (int, error) { return 0, errors.New("no") })
	c := realCluster(t, 1, actors.Types(), func(cfg *nola.ServerConfig) {
		cfg.Workers = map[string]nola.WorkerFunc{"calc": calc.Invoke}
	})
	ctx := callCtx(t)
	w := nola.WorkerRef{Namespace: ns, Type: "calc"}
	if got, err := nola.CallWorker[sum, int](ctx, c.Client(), w, "add", sum{40, 2}); err != nil || got != 42 {
		t.Fatalf("add: %d, %v", got, err)
	}
	_, err := nola.CallWorker[sum, int](ctx, c.Client(), w, "mul", sum{})
	var ue *nola.UnknownOpError
	if wantCode(t, err, nola.CodeBadRequest); !errors.As(err, &ue) || !slices.Equal(ue.Known, []string{"add", "fail"}) {
		t.Fatalf("unknown op: %v", err)
	}
	_, err = c.Client().CallWorker(ctx, ns, "calc", "add", []byte("not json"))
	var de *nola.DecodeError
	if wantCode(t, err, nola.CodeBadRequest); !errors.As(err, &de) {
		t.Fatalf("bad payload: %v", err)
	}
	_, err = nola.CallWorker[struct{}, int](ctx, c.Client(), w, "fail", struct{}{})
	wantCode(t, err, nola.CodeActorError)
	for name, f := range map[string]func(){
		"nil":   func() { nola.HandleWorker[sum, int](&calc, "x", nil) },
		"empty": func() { nola.HandleWorker(&calc, "", func(*nola.WorkerContext, sum) (int, error) { return 0, nil }) },
		"dup":   func() { nola.HandleWorker(&calc, "add", func(*nola.WorkerContext, sum) (int, error) { return 0, nil }) },
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: no panic", name)
				}
			}()
			f()
		}()
	}
}
