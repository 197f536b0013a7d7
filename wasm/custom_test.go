package wasm_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/faultinject"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/abi"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// hostCalls encodes the payload of the hostfn guest's "calls": each call a
// namespace, an operation and a payload.
func hostCalls(calls ...[3]string) []byte {
	var b []byte
	for _, c := range calls {
		for _, f := range c {
			b = abi.AppendStringField(b, f)
		}
	}
	return b
}

// putCalls encodes the payload of "put_calls": key=value, then calls.
func putCalls(key, value string, calls ...[3]string) []byte {
	b := abi.AppendStringField(abi.AppendStringField(nil, key), value)
	return append(b, hostCalls(calls...)...)
}

// hostFnEnv runs the hostfn C guest as type "hostfn-c" with fns.
func hostFnEnv(t *testing.T, fns []wasm.HostFunction, tweak func(*wasm.Config)) *env {
	t.Helper()
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.HostFunctions = fns
		if tweak != nil {
			tweak(c)
		}
	}})
	e.put("hostfn-c", wasmtest.C(t, "hostfn"), modules.Options{})
	return e
}

// wantHostError checks that a hostfn invocation failed with the guest
// passing on the host error msg (the guest answers with it verbatim).
func wantHostError(t *testing.T, err error, msg string) {
	t.Helper()
	ne := wantCode(t, err, nola.CodeActorError)
	if !strings.Contains(ne.Message, msg) {
		t.Fatalf("guest error %q, want it to carry the host error %q", ne.Message, msg)
	}
}

// A registered function answers the guest's host call with its result; it
// sees the calling actor and a copy of the payload.
func TestHostFunctionCalled(t *testing.T) {
	var got wasm.HostCall
	e := hostFnEnv(t, []wasm.HostFunction{{Namespace: "test", Operation: "echo",
		Func: func(_ context.Context, c wasm.HostCall) ([]byte, error) {
			got = c
			return append([]byte("echo:"), c.Payload...), nil
		}}}, nil)
	e.want("a", "hostfn-c", "calls", hostCalls([3]string{"test", "echo", "hi"}), "echo:hi")
	if want := (nola.Ref{Namespace: ns, ID: "a", Type: "hostfn-c"}); got.Ref != want || got.Context.Ref() != want {
		t.Fatalf("the function saw actor %+v (context %+v), want %+v", got.Ref, got.Context.Ref(), want)
	}
	if got.Namespace != "test" || got.Operation != "echo" || string(got.Payload) != "hi" {
		t.Fatalf("the function saw %s/%s(%q)", got.Namespace, got.Operation, got.Payload)
	}
	// Two calls in one invocation, the last one answers.
	e.want("a", "hostfn-c", "calls", hostCalls([3]string{"test", "echo", "1"}, [3]string{"test", "echo", "2"}), "echo:2")
}

// A host call nobody registered, in a free or in a reserved namespace, is
// the guest's bad_request host error; the instance lives on.
func TestHostFunctionUnknown(t *testing.T) {
	e := hostFnEnv(t, []wasm.HostFunction{{Namespace: "test", Operation: "echo",
		Func: func(_ context.Context, c wasm.HostCall) ([]byte, error) { return c.Payload, nil }}}, nil)
	for _, c := range [][3]string{{"test", "nope", ""}, {"other", "echo", ""}, {"kv", "nope", ""}} {
		_, err := e.invoke("u", "hostfn-c", "calls", hostCalls(c))
		wantHostError(t, err, "bad_request: unknown host call "+c[0]+"/"+c[1])
	}
	e.want("u", "hostfn-c", "calls", hostCalls([3]string{"test", "echo", "ok"}), "ok")
	if s := e.hosts[0].Stats(); s.Traps != 0 {
		t.Fatalf("unknown host calls trapped: %+v", s)
	}
}

// A function's error reaches the guest as "<code>: <message>": the code of
// a *nola.Error, nola's classification of any other error, internal for a
// panic (which neither traps the guest nor reaches the caller's stack).
func TestHostFunctionErrors(t *testing.T) {
	e := hostFnEnv(t, []wasm.HostFunction{
		{Namespace: "test", Operation: "typed", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			return nil, &nola.Error{Code: nola.CodeUnavailable, Message: "the backend is down"}
		}},
		{Namespace: "test", Operation: "plain", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			return nil, errors.New("boom")
		}},
		{Namespace: "test", Operation: "ctx", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			return nil, context.DeadlineExceeded
		}},
		{Namespace: "test", Operation: "panic", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			panic("host function bug")
		}},
	}, nil)
	for op, want := range map[string]string{
		"typed": "unavailable: the backend is down",
		"plain": "internal: boom",
		"ctx":   "timeout: context deadline exceeded",
		"panic": "internal: host function test/panic failed (see the server log)",
	} {
		_, err := e.invoke("e", "hostfn-c", "calls", hostCalls([3]string{"test", op, ""}))
		wantHostError(t, err, want)
	}
	if s := e.hosts[0].Stats(); s.Traps != 0 || s.Instantiated != 1 {
		t.Fatalf("failing host functions cost the guest its instance: %+v", s)
	}
}

// Config.MaxHostCallBytes bounds the payload (checked before the function
// runs) and the result (after) of a host call.
func TestHostFunctionSizeLimits(t *testing.T) {
	const limit = 64
	var calls atomic.Int64
	e := hostFnEnv(t, []wasm.HostFunction{
		{Namespace: "test", Operation: "echo", Func: func(_ context.Context, c wasm.HostCall) ([]byte, error) {
			calls.Add(1)
			return c.Payload, nil
		}},
		{Namespace: "test", Operation: "big", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			return bytes.Repeat([]byte("x"), limit+1), nil
		}},
	}, func(c *wasm.Config) { c.MaxHostCallBytes = limit })
	full := strings.Repeat("p", limit)
	e.want("s", "hostfn-c", "calls", hostCalls([3]string{"test", "echo", full}), full)
	_, err := e.invoke("s", "hostfn-c", "calls", hostCalls([3]string{"test", "echo", full + "p"}))
	wantHostError(t, err, "too_large: host call test/echo: payload of 65 bytes exceeds this host's limit of 64")
	if n := calls.Load(); n != 1 {
		t.Fatalf("the function ran %d times, want once: an oversized payload must not reach it", n)
	}
	_, err = e.invoke("s", "hostfn-c", "calls", hostCalls([3]string{"test", "big", ""}))
	wantHostError(t, err, "too_large: host call test/big: result of 65 bytes exceeds this host's limit of 64")
}

// The KV the invocation wrote before a host call is durable when the
// function runs (an outside system it talks to may read it), and the
// function can use the actor's KV through HostCall.Context.
func TestHostFunctionSeesCommittedKV(t *testing.T) {
	var e *env
	e = hostFnEnv(t, []wasm.HostFunction{
		{Namespace: "test", Operation: "read", Func: func(ctx context.Context, c wasm.HostCall) ([]byte, error) {
			// The store itself, not the invocation's view of it.
			v, found, err := e.c.Server(0).Inspector().GetKV(ctx, c.Ref.Namespace, c.Ref.ID, c.Payload)
			if err != nil || !found {
				return nil, &nola.Error{Code: nola.CodeBadRequest, Message: "not in the store"}
			}
			return v, nil
		}},
		{Namespace: "test", Operation: "put", Func: func(_ context.Context, c wasm.HostCall) ([]byte, error) {
			return nil, c.Context.Put([]byte("from-host"), c.Payload)
		}},
	}, nil)
	e.want("k", "hostfn-c", "put_calls", putCalls("a", "written by the guest", [3]string{"test", "read", "a"}), "written by the guest")
	e.want("k", "hostfn-c", "calls", hostCalls([3]string{"test", "put", "written by the host"}), "")
	e.want("k", "hostfn-c", "get", []byte("from-host"), "written by the host")
}

// A host call made after the invocation's deadline is refused with a
// timeout, and the function does not run.
func TestHostFunctionPastDeadlineRefused(t *testing.T) {
	var effects atomic.Int64
	e := hostFnEnv(t, []wasm.HostFunction{
		// wait returns when the invocation's deadline has passed.
		{Namespace: "test", Operation: "wait", Func: func(ctx context.Context, _ wasm.HostCall) ([]byte, error) {
			<-ctx.Done()
			return nil, nil
		}},
		{Namespace: "test", Operation: "effect", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			effects.Add(1)
			return nil, nil
		}},
	}, func(c *wasm.Config) { c.InvokeTimeout = 100 * time.Millisecond })
	_, err := e.invoke("d", "hostfn-c", "calls", hostCalls([3]string{"test", "wait", ""}, [3]string{"test", "effect", ""}))
	wantHostError(t, err, "timeout: ")
	if n := effects.Load(); n != 0 {
		t.Fatalf("the effect ran %d times after the deadline", n)
	}
}

// New refuses host functions that cannot work, with a *HostFunctionError
// saying which and why; CheckHostFunctions agrees.
func TestHostFunctionRegistrationRefused(t *testing.T) {
	f := func(context.Context, wasm.HostCall) ([]byte, error) { return nil, nil }
	long := strings.Repeat("n", wasm.MaxHostNameBytes+1)
	for _, c := range []struct {
		name string
		fns  []wasm.HostFunction
		want string
	}{
		{"empty namespace", []wasm.HostFunction{{Operation: "op", Func: f}}, "must not be empty"},
		{"empty operation", []wasm.HostFunction{{Namespace: "ns", Func: f}}, "must not be empty"},
		{"long namespace", []wasm.HostFunction{{Namespace: long, Operation: "op", Func: f}}, "at most 255 bytes"},
		{"long operation", []wasm.HostFunction{{Namespace: "ns", Operation: long, Func: f}}, "at most 255 bytes"},
		{"reserved kv", []wasm.HostFunction{{Namespace: "kv", Operation: "get2", Func: f}}, `namespace "kv" is reserved`},
		{"reserved actor", []wasm.HostFunction{{Namespace: "actor", Operation: "x", Func: f}}, `namespace "actor" is reserved`},
		{"reserved nola", []wasm.HostFunction{{Namespace: "nola", Operation: "x", Func: f}}, `namespace "nola" is reserved`},
		{"nil func", []wasm.HostFunction{{Namespace: "ns", Operation: "op"}}, "Func is nil"},
		{"duplicate", []wasm.HostFunction{{Namespace: "ns", Operation: "op", Func: f}, {Namespace: "ns", Operation: "op", Func: f}}, "registered twice"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := rt.NewReal()
			store := memkv.New(r, memkv.Options{})
			defer store.Close()
			h, err := wasm.New(context.Background(), wasm.Config{Runtime: r, Modules: modules.New(store, modules.Config{}), HostFunctions: c.fns})
			if err == nil {
				_ = h.Close(context.Background())
				t.Fatal("New accepted it")
			}
			var he *wasm.HostFunctionError
			if !errors.As(err, &he) || !strings.Contains(he.Problem, c.want) {
				t.Fatalf("New: %v, want a HostFunctionError saying %q", err, c.want)
			}
			if err2 := wasm.CheckHostFunctions(c.fns); err2 == nil || err2.Error() != err.Error() {
				t.Fatalf("CheckHostFunctions: %v, want %v", err2, err)
			}
		})
	}
	if err := wasm.CheckHostFunctions([]wasm.HostFunction{{Namespace: "test", Operation: "echo", Func: f}, {Namespace: "test", Operation: "echo2", Func: f}}); err != nil {
		t.Fatalf("good functions refused: %v", err)
	}
}

// Under simulation: a guest whose server loses its lease while one host
// function blocks never gets to run the next one (G1: a fenced activation
// has no effects), whatever that function's context says.
func TestFencedActivationNeverRunsHostFunction(t *testing.T) {
	bins := guestBins{"hostfn-c": wasmtest.C(t, "hostfn")}
	var (
		started, release *rt.Future[struct{}]
		effects          atomic.Int64
		refused          atomic.Pointer[string]
	)
	fns := []wasm.HostFunction{
		// block is an outside call that does not give up: it waits for
		// the test, deaf to its context.
		{Namespace: "test", Operation: "block", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			started.Resolve(struct{}{}, nil)
			_, _ = release.Wait(context.Background())
			return nil, nil
		}},
		{Namespace: "test", Operation: "effect", Func: func(context.Context, wasm.HostCall) ([]byte, error) {
			effects.Add(1)
			return nil, nil
		}},
	}
	cfg := func(c *wasm.Config) {
		c.HostFunctions = fns
		c.InvokeTimeout = 10 * simTTL // not the guard under test
	}
	runSim(t, 21, 1, bins, cfg, func(e *simEnv) {
		started, release = rt.NewFuture[struct{}](e.Driver), rt.NewFuture[struct{}](e.Driver)
		done := rt.NewFuture[struct{}](e.Driver)
		e.MustInvoke("f", "hostfn-c", "get", []byte("k")) // placed on server 0
		e.Driver.Go("caller", func() {
			// Straight to the server, as a caller with a stale route
			// would: a Client would give up once the owner's lease
			// lapsed, and the invocation's context end with it, which
			// refuses the effect for another reason.
			ctx, cancel := e.Driver.WithTimeout(e.Ctx, 10*simTTL)
			defer cancel()
			_, err := e.C.Network().Transport(e.Driver).Invoke(ctx, "local://s0", nola.Request{
				Namespace: "sim", ActorID: "f", ActorType: "hostfn-c", Operation: "calls",
				Payload: hostCalls([3]string{"test", "block", ""}, [3]string{"test", "effect", ""}),
			})
			if err != nil {
				msg := err.Error()
				refused.Store(&msg)
			}
			done.Resolve(struct{}{}, nil)
		})
		if _, err := started.Wait(e.Ctx); err != nil {
			t.Fatal(err)
		}
		inc := e.C.Server(0).Incarnation()
		e.Links[0].SetMode(faultinject.Down)
		e.Sleep(2 * simTTL)
		if l := e.C.Server(0).Lease(); l.Incarnation == inc && l.Valid {
			t.Fatalf("server 0 still holds its lease with the store unreachable for %v", 2*simTTL)
		}
		release.Resolve(struct{}{}, nil)
		if _, err := done.Wait(e.Ctx); err != nil {
			t.Fatal(err)
		}
		// The server answers once the guest's invocation ended.
		if n := effects.Load(); n != 0 {
			t.Fatalf("a fenced activation ran a host function %d times", n)
		}
		// The guest passed the host's refusal on as its error.
		if m := refused.Load(); m == nil || !strings.Contains(*m, "fenced: server s0 lost its lease; effect refused") {
			t.Fatalf("the invocation's error: %v, want the guest's fenced host error", m)
		}
		e.Links[0].SetMode(faultinject.Pass)
	})
}

// BenchmarkHostFunction is one invocation of the hostfn C guest making
// n calls of a trivial host function ("calls"), against the same guest's
// KV-free "get" of an absent key as the baseline of one nola host call.
func BenchmarkHostFunction(b *testing.B) {
	e := newEnv(b, envOpts{host: func(c *wasm.Config) {
		c.HostFunctions = []wasm.HostFunction{{Namespace: "test", Operation: "echo",
			Func: func(_ context.Context, c wasm.HostCall) ([]byte, error) { return c.Payload, nil }}}
	}})
	e.put("hostfn-c", wasmtest.C(b, "hostfn"), modules.Options{})
	for _, n := range []int{1, 10} {
		var calls [][3]string
		for range n {
			calls = append(calls, [3]string{"test", "echo", "x"})
		}
		p := hostCalls(calls...)
		b.Run(fmt.Sprintf("calls=%d", n), func(b *testing.B) {
			e.must("bench", "hostfn-c", "calls", p)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.invoke("bench", "hostfn-c", "calls", p); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("baseline-kv-get", func(b *testing.B) {
		e.must("bench", "hostfn-c", "get", []byte("absent"))
		b.ReportAllocs()
		for b.Loop() {
			if _, err := e.invoke("bench", "hostfn-c", "get", []byte("absent")); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// Custom host functions run under the deterministic runtime like nola's
// own: the same seed replays the same trace (with a server crash), another
// seed does not.
func TestHostFunctionsDeterministicUnderSimulation(t *testing.T) {
	bins := guestBins{"hostfn-c": wasmtest.C(t, "hostfn")}
	cfg := func(c *wasm.Config) {
		c.HostFunctions = []wasm.HostFunction{{Namespace: "test", Operation: "read",
			Func: func(_ context.Context, c wasm.HostCall) ([]byte, error) {
				v, _, err := c.Context.Get(c.Payload)
				return fmt.Appendf(v, "@%d", c.Context.Now().UnixNano()), err
			}}}
	}
	replay := func(seed uint64) (uint64, string) {
		var results []string
		hash := runSim(t, seed, 2, bins, cfg, func(e *simEnv) {
			results = e.Replay(3, 20, func(rng *rand.Rand) simtest.Call {
				k := fmt.Sprint(rng.Uint64N(3))
				return simtest.Call{ID: "h" + k, Type: "hostfn-c", Op: "put_calls",
					Payload: putCalls("k", fmt.Sprint(rng.Uint64N(1000)), [3]string{"test", "read", "k"})}
			})
		})
		return hash, strings.Join(results, "\n")
	}
	h1, r1 := replay(31)
	h2, r2 := replay(31)
	if h1 != h2 || r1 != r2 {
		t.Fatalf("seed 31 replayed differently: %x vs %x\n--- first\n%s\n--- second\n%s", h1, h2, r1, r2)
	}
	if h3, _ := replay(32); h3 == h1 {
		t.Fatalf("seeds 31 and 32 gave the same trace %x", h1)
	}
	if n := strings.Count(r1, "@"); n < 20 {
		t.Fatalf("only %d of 60 calls reached the host function:\n%s", n, r1)
	}
}
