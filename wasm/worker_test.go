package wasm_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// WASM actors (C and Go guests) call stateless workers through the
// "worker"/"call" host call; a worker's errors reach the guest as waPC
// host errors with their code, and a worker called from a WASM actor can
// call actors in turn.
func TestWASMActorCallsWorker(t *testing.T) {
	e := newEnv(t, envOpts{servers: 2, server: func(cfg *nola.ServerConfig) { cfg.Workers = actors.Workers() }})
	e.putGuests("caller")
	for _, typ := range []string{"caller-c", "caller-go"} {
		e.want("w-"+typ, typ, "worker", []byte("sha256/run/abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
		e.want("w-"+typ, typ, "worker", []byte("echo/run/hi"), "hi")
	}
	// WASM actor → worker → Go actor.
	e.want("w1", "caller-c", "worker", []byte("count/run/ctr"), "0")
	e.want("w2", "caller-go", "worker", []byte("count/run/ctr"), "1")
	e.want("ctr", "counter", "get", nil, "2")
	// An unknown worker type: the guest sees the host error and fails
	// with it.
	_, err := e.invoke("w1", "caller-c", "worker", []byte("nope/run/x"))
	ne := wantCode(t, err, nola.CodeActorError)
	if !strings.Contains(ne.Message, "bad_request") || !strings.Contains(ne.Message, "unknown worker type") {
		t.Fatalf("unknown worker from a guest: %v", err)
	}
}

// A namespace's WASM modules are callable as stateless workers: each
// invocation runs on an instance of its own (pooled), concurrently; a
// module's KV and timer calls fail with the typed no-state error, which
// reaches the guest as a bad_request host error; a WASM actor calls a WASM
// worker; unknown modules are bad requests; the calls are counted per
// namespace and module.
func TestWASMModuleAsWorker(t *testing.T) {
	e := newEnv(t, envOpts{servers: 1})
	e.putGuests("echo")
	cl := e.c.Client()
	call := func(typ, op, payload string) (string, error) {
		b, err := cl.CallWorker(callCtx(t), ns, typ, op, []byte(payload))
		return string(b), err
	}
	for _, typ := range []string{"echo-c", "echo-go"} {
		if got, err := call(typ, "echo", "hi"); err != nil || got != "hi" {
			t.Fatalf("%s: %q, %v", typ, got, err)
		}
	}
	const n = 16
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			want := strconv.Itoa(i)
			got, err := call("echo-c", "echo", want)
			if err == nil && got != want {
				err = fmt.Errorf("call %d answered %q", i, got)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	for typ, op := range map[string][2]string{"echo-c": {"put", "x"}, "kvcounter-c": {"inc", ""}, "ticker-c": {"arm", "250ms"}} {
		_, err := call(typ, op[0], op[1])
		if err == nil || !strings.Contains(err.Error(), "bad_request") || !strings.Contains(err.Error(), "workers are stateless") {
			t.Fatalf("%s %s as a worker: %v, want the no-state error", typ, op[0], err)
		}
	}
	e.want("a1", "caller-c", "worker", []byte("echo-c/echo/from an actor"), "from an actor")
	_, err := call("no-such-module", "echo", "")
	if ne := wantCode(t, err, nola.CodeBadRequest); !strings.Contains(ne.Message, `unknown worker type "no-such-module"`) {
		t.Fatalf("unknown module as a worker: %v", err)
	}
	var st nola.WorkerStats
	for _, s := range e.c.Server(0).WorkerStats() {
		if s.Namespace == ns && s.Type == "echo-c" {
			st = s
		}
	}
	if st.Calls != n+3 || st.Errors != 1 || st.InFlight != 0 {
		t.Fatalf("echo-c worker stats %+v, want %d calls, 1 error", st, n+3)
	}
}

func callCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// Custom host functions serve actors only: the same module run as a
// stateless worker gets a bad_request host error (HostCall names a calling
// actor and hands over its KV, which a worker lacks), and the function
// never runs.
func TestWASMWorkerCannotCallCustomHostFunctions(t *testing.T) {
	var ran atomic.Int64
	e := hostFnEnv(t, []wasm.HostFunction{{Namespace: "test", Operation: "echo",
		Func: func(_ context.Context, c wasm.HostCall) ([]byte, error) {
			ran.Add(1)
			return c.Payload, nil
		}}}, nil)
	e.want("a", "hostfn-c", "calls", hostCalls([3]string{"test", "echo", "hi"}), "hi")
	_, err := e.c.Client().CallWorker(callCtx(t), ns, "hostfn-c", "calls", hostCalls([3]string{"test", "echo", "hi"}))
	wantHostError(t, err, "custom host functions serve actors only")
	if ran.Load() != 1 {
		t.Fatalf("the function ran %d times, want once (for the actor)", ran.Load())
	}
}

// A deleted module stops resolving on a server that has it compiled: no
// worker call runs it and no new actor of its type is created (a review
// found both still served from the host's cache).
func TestDeletedModuleIsNotServedFromCache(t *testing.T) {
	e := newEnv(t, envOpts{servers: 1, host: func(c *wasm.Config) { c.ModuleRecheck = -1 }})
	e.put("echo-c", wasmtest.C(t, "echo"), modules.Options{})
	cl := e.c.Client()
	if _, err := cl.CallWorker(callCtx(t), ns, "echo-c", "echo", []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, err := e.invoke("old", "echo-c", "echo", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := cl.Delete(callCtx(t), ns, "old"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.mods.Delete(e.ctx, ns, "echo-c"); err != nil {
		t.Fatal(err)
	}
	if b, err := cl.CallWorker(callCtx(t), ns, "echo-c", "echo", []byte("after")); err == nil {
		t.Errorf("a worker of the deleted module still ran: %q", b)
	} else {
		wantCode(t, err, nola.CodeBadRequest)
	}
	if got, err := e.invoke("new", "echo-c", "echo", []byte("x")); err == nil {
		t.Errorf("a new actor of the deleted module's type ran: %q", got)
	}
	if _, found, err := cl.Inspector().Actor(callCtx(t), ns, "new"); err != nil || found {
		t.Errorf("an actor record of the deleted type was created: found=%v, %v", found, err)
	}
}

// Idle pooled worker instances are not activation memory: the Host's
// MemoryBytes (what the server reports and sheds by) leaves them out,
// while its Stats (and MemoryLimit) count them; an actor's instance is
// counted in both.
func TestIdleWorkerInstancesAreNotActivationMemory(t *testing.T) {
	e := newEnv(t, envOpts{servers: 1})
	e.putGuests("echo")
	h, srv := e.hosts[0], e.c.Server(0)
	if b, err := e.c.Client().CallWorker(callCtx(t), ns, "echo-c", "echo", []byte("hi")); err != nil || string(b) != "hi" {
		t.Fatalf("worker call: %q, %v", b, err)
	}
	st := h.Stats()
	if st.Instances != 1 || st.IdleWorkerBytes < wasm.InstanceOverhead || st.MemoryBytes != st.IdleWorkerBytes {
		t.Fatalf("after one worker call: %+v, want one pooled instance charged as idle worker memory", st)
	}
	if m := h.MemoryBytes(); m != 0 {
		t.Fatalf("host reports %d bytes of activation memory with only an idle worker instance", m)
	}
	if m := srv.Stats().MemoryBytes; m != 0 {
		t.Fatalf("server reports %d bytes with no activation", m)
	}
	e.want("a", "counter-c", "inc", nil, "0")
	if m, st := h.MemoryBytes(), h.Stats(); m < wasm.InstanceOverhead || st.MemoryBytes != m+st.IdleWorkerBytes {
		t.Fatalf("with one actor: MemoryBytes %d, stats %+v", m, st)
	}
}
