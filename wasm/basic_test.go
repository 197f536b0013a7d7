package wasm_test

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

// Counter guests in C and Go behave exactly like the Go counter: "inc" is
// fetch-and-add from 0, "get" reads; each actor has its own instance.
func TestCounterGuests(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests("counter")
	for _, typ := range []string{"counter-c", "counter-go", "counter"} {
		for i := range 5 {
			e.want("a-"+typ, typ, "inc", nil, strconv.Itoa(i))
		}
		e.want("a-"+typ, typ, "get", nil, "5")
		e.want("b-"+typ, typ, "get", nil, "0")
		e.want("b-"+typ, typ, "inc", nil, "0")
		e.want("a-"+typ, typ, "inc", nil, "5")
	}
}

// KV counter guests keep their count in the actor's durable KV: it survives
// the loss of its activations.
func TestKVCounterGuestsSurviveReactivation(t *testing.T) {
	e := newEnv(t, envOpts{servers: 2})
	e.putGuests("kvcounter")
	for _, typ := range []string{"kvcounter-c", "kvcounter-go"} {
		id := "k-" + typ
		e.want(id, typ, "inc", nil, "1")
		e.want(id, typ, "inc", nil, "2")
		e.want(id, typ, "add", []byte("40"), "42")
		e.want(id, typ, "get", nil, "42")
		_, err := e.invoke(id, typ, "add", []byte("x"))
		ne := wantCode(t, err, nola.CodeActorError)
		if !strings.Contains(ne.Message, "add") {
			t.Fatalf("bad add: %v", err)
		}
	}
	// Lose every activation (graceful stop of the whole cluster, then
	// fresh servers and hosts): in-memory state is gone, KV is not.
	e.restartAll()
	for _, typ := range []string{"kvcounter-c", "kvcounter-go"} {
		e.want("k-"+typ, typ, "get", nil, "42")
		e.want("k-"+typ, typ, "inc", nil, "43")
	}
}

// A failed invocation's KV writes are discarded, whether the guest returns
// an error or traps.
func TestGuestErrorsDiscardKVWrites(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests("echo")
	for _, typ := range []string{"echo-c", "echo-go"} {
		id := "e-" + typ
		e.want(id, typ, "put", []byte("kept"), "")
		_, err := e.invoke(id, typ, "fail", nil)
		ne := wantCode(t, err, nola.CodeActorError)
		if !strings.Contains(ne.Message, "echo: asked to fail") {
			t.Fatalf("%s fail: %v", typ, err)
		}
		var ge *wasm.GuestError
		if !errors.As(err, &ge) || ge.Message != "echo: asked to fail" || ge.Op != "fail" {
			t.Fatalf("%s fail: %v is not the guest's error", typ, err)
		}
		e.want(id, typ, "get", nil, "kept")
	}
	// A Go guest's panic aborts the guest (Go's runtime traps after
	// printing the panic): a trap carrying the message, writes discarded.
	_, err := e.invoke("e-echo-go", "echo-go", "panic", nil)
	var te *wasm.TrapError
	if !errors.As(err, &te) || te.Kind != wasm.TrapRuntime || !strings.Contains(te.Message, "panic: echo: asked to panic") {
		t.Fatalf("panic: %v, want a trap with the panic message", err)
	}
	wantCode(t, err, nola.CodeActorError)
	e.want("e-echo-go", "echo-go", "get", nil, "kept")
}

// Unknown operations and unknown modules are typed errors.
func TestUnknownOperationAndModule(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests("counter")
	for _, typ := range []string{"counter-c", "counter-go"} {
		_, err := e.invoke("u-"+typ, typ, "nope", nil)
		ne := wantCode(t, err, nola.CodeActorError)
		if !strings.Contains(ne.Message, `unknown operation "nope"`) {
			t.Fatalf("%s: %v", typ, err)
		}
		e.want("u-"+typ, typ, "inc", nil, "0") // the instance was kept
	}
	_, err := e.invoke("u", "no-such-module", "inc", nil)
	ne := wantCode(t, err, nola.CodeBadRequest)
	if !strings.Contains(ne.Message, "no-such-module") {
		t.Fatalf("unknown module: %v", err)
	}
	// Uploaded later, the module becomes usable: failures are not cached.
	e.put("no-such-module", wasmtest.C(t, "counter"), modules.Options{})
	e.want("u", "no-such-module", "inc", nil, "0")
}

// A registered Go type wins over a module with the same ID.
func TestGoTypeWinsOverModule(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.put("echo", wasmtest.C(t, "counter"), modules.Options{})
	e.want("x", "echo", "echo", []byte("hi"), "hi") // Go's echo, not the counter
}

// Go and WASM actors call each other in every direction.
func TestGoAndWASMCallEachOther(t *testing.T) {
	e := newEnv(t, envOpts{servers: 2})
	e.putGuests("counter", "caller")
	// Go → WASM (C and Go guests).
	e.want("g1", "caller", "call", []byte("counter-c/w1/inc"), "0")
	e.want("g1", "caller", "call", []byte("counter-c/w1/inc"), "1")
	e.want("g1", "caller", "call", []byte("counter-go/w2/inc"), "0")
	// WASM → Go.
	e.want("c1", "caller-c", "call", []byte("counter/g2/inc"), "0")
	e.want("c2", "caller-go", "call", []byte("counter/g2/inc"), "1")
	e.want("g2", "counter", "get", nil, "2")
	// WASM → WASM, across guest languages.
	e.want("c1", "caller-c", "call", []byte("counter-go/w2/inc"), "1")
	e.want("c2", "caller-go", "call", []byte("counter-c/w1/inc"), "2")
	e.want("w1", "counter-c", "get", nil, "3")
	// Errors cross the boundary with their message.
	_, err := e.invoke("c1", "caller-c", "call", []byte("counter/g2/bogus"))
	ne := wantCode(t, err, nola.CodeActorError)
	if !strings.Contains(ne.Message, "bogus") {
		t.Fatalf("nested error: %v", err)
	}
	_, err = e.invoke("c2", "caller-go", "call", []byte("counter-c/w1/bogus"))
	ne = wantCode(t, err, nola.CodeActorError)
	if !strings.Contains(ne.Message, `unknown operation \"bogus\"`) && !strings.Contains(ne.Message, `unknown operation "bogus"`) {
		t.Fatalf("nested error: %v", err)
	}
}

// The Go guest SDK's host calls: identity, clock, KV scans, stdout/stderr
// capture and logs.
func TestGoGuestHostCalls(t *testing.T) {
	logs := &captureHandler{}
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.Logger = logs.logger() }})
	e.putGuests("echo")
	e.want("h", "echo-go", "self", nil, ns+"/h/echo-go")
	before := time.Now().UnixNano()
	now, err := strconv.ParseInt(e.must("h", "echo-go", "now", nil), 10, 64)
	if err != nil || now < before || now > time.Now().UnixNano() {
		t.Fatalf("now = %d (%v), want within the call", now, err)
	}
	e.want("h", "echo-go", "put", []byte("v"), "")
	e.want("h", "echo-go", "scan", []byte("la"), "last=v")
	e.want("h", "echo-go", "scan", []byte("zz"), "")
	e.want("h", "echo-go", "print", []byte("hello"), "")
	if !logs.has("out:hello") || !logs.has("err:hello") {
		t.Fatalf("stdout/stderr not captured: %v", logs.all())
	}
	e.want("h", "echo-go", "log", []byte("from the guest"), "")
	if logs.count("from the guest") != 2 {
		t.Fatalf("guest logs: %v", logs.all())
	}
	e.want("hc", "echo-c", "log", []byte("c says hi"), "")
	if !logs.has("c says hi") {
		t.Fatalf("C guest log missing: %v", logs.all())
	}
}

// Deactivation (idle eviction) closes the instance; the next call creates
// a fresh one.
func TestIdleEvictionClosesInstances(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests()
	for i := range 3 {
		e.want("i"+strconv.Itoa(i), "counter-c", "inc", nil, "0")
	}
	h := e.hosts[0]
	if got := h.Stats().Instances; got != 3 {
		t.Fatalf("%d live instances, want 3", got)
	}
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	if err := e.c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if s := h.Stats(); s.Instances != 0 || s.Closed != 3 {
		t.Fatalf("after shutdown: %+v, want every instance closed", s)
	}
}

// captureHandler records log messages and attributes.
type captureHandler struct {
	mu   sync.Mutex
	msgs []string
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *captureHandler) WithGroup(string) slog.Handler            { return h }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		b.WriteString(" " + a.Key + "=" + a.Value.String())
		return true
	})
	h.mu.Lock()
	h.msgs = append(h.msgs, b.String())
	h.mu.Unlock()
	return nil
}

func (h *captureHandler) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.msgs...)
}

func (h *captureHandler) count(s string) int {
	n := 0
	for _, m := range h.all() {
		if strings.Contains(m, s) {
			n++
		}
	}
	return n
}

func (h *captureHandler) has(s string) bool { return h.count(s) > 0 }

func (h *captureHandler) logger() *slog.Logger { return slog.New(h) }

// A Go guest sees no arguments, no environment and no file system.
func TestGoGuestSandbox(t *testing.T) {
	e := newEnv(t, envOpts{})
	e.putGuests("echo")
	got := e.must("sb", "echo-go", "sandbox", []byte("/etc/passwd"))
	if !strings.HasPrefix(got, "args=0 env=0; read: ") || strings.Contains(got, ": ok") {
		t.Fatalf("sandbox probe: %s", got)
	}
	if _, err := os.Stat("/tmp/nola-wasm-escape"); err == nil {
		t.Fatal("the guest wrote a file on the host")
	}
}
