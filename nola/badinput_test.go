package nola_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/examples/actors"
	"github.com/nolaproject/nola/internal/simtest"
	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/registry"
	"github.com/nolaproject/nola/registry/memkv"
	"github.com/nolaproject/nola/rt"
)

func TestBadInputIsRejectedWithTypedErrors(t *testing.T) {
	runSim(t, 20, 2, nil, nil, func(e *simtest.Env) {
		cl := e.C.Client()
		long := strings.Repeat("x", 513)
		cases := []struct {
			name            string
			ns, id, typ, op string
			payload         []byte
			code            nola.Code
		}{
			{"empty namespace", "", "a", "counter", "inc", nil, nola.CodeBadRequest},
			{"empty actor ID", ns, "", "counter", "inc", nil, nola.CodeBadRequest},
			{"oversized actor ID", ns, long, "counter", "inc", nil, nola.CodeBadRequest},
			{"oversized namespace", long, "a", "counter", "inc", nil, nola.CodeBadRequest},
			{"invalid UTF-8 ID", ns, "a\xff", "counter", "inc", nil, nola.CodeBadRequest},
			{"empty operation", ns, "a", "counter", "", nil, nola.CodeBadRequest},
			{"unknown actor type", ns, "u", "no-such-type", "inc", nil, nola.CodeBadRequest},
			{"oversized payload", ns, "a", "echo", "echo", make([]byte, 4<<20+1), nola.CodeTooLarge},
		}
		for _, c := range cases {
			ctx, cancel := e.Driver.WithTimeout(e.Ctx, 5*time.Second)
			_, err := cl.Invoke(ctx, c.ns, c.id, c.typ, c.op, c.payload)
			cancel()
			if nola.CodeOf(err) != c.code {
				t.Errorf("%s: got %v, want code %s", c.name, err, c.code)
			}
			if nola.IsRetryable(err) {
				t.Errorf("%s: a bad request must not be retryable", c.name)
			}
		}
		// The same ID with another type is a mismatch, not a new actor.
		e.MustInvoke("typed", "counter", "inc", nil)
		_, err := e.Invoke("typed", "kvcounter", "inc", nil)
		wantCode(t, err, nola.CodeBadRequest)
		if !errors.Is(err, registry.ErrTypeMismatch) {
			t.Errorf("type mismatch error %v does not wrap registry.ErrTypeMismatch", err)
		}
		// An empty type reaches the existing actor whatever its type.
		if got := e.MustInvoke("typed", "", "inc", nil); got != "1" {
			t.Errorf("invoke without a type = %s, want 1", got)
		}
		// An empty type cannot create an actor.
		_, err = e.Invoke("never-created", "", "inc", nil)
		wantCode(t, err, nola.CodeBadRequest)
	})
}

func TestActorErrorAndPanicDiscardWrites(t *testing.T) {
	runSim(t, 21, 2, nil, nil, func(e *simtest.Env) {
		e.MustInvoke("e", "echo", "put", []byte("good"))

		_, err := e.Invoke("e", "echo", "fail", nil)
		wantCode(t, err, nola.CodeActorError)
		if !strings.Contains(err.Error(), "asked to fail") {
			t.Errorf("actor error %q lost the actor's message", err)
		}
		if got := e.MustInvoke("e", "echo", "get", nil); got != "good" {
			t.Fatalf("after a failed call KV holds %q, want the last committed value", got)
		}

		host := e.C.Host(ns, "e")
		_, err = e.Invoke("e", "echo", "panic", nil)
		wantCode(t, err, nola.CodeActorError)
		if !strings.Contains(err.Error(), "asked to panic") {
			t.Errorf("panic error %q lost the panic value", err)
		}
		if e.C.Server(host).Hosts(ns, "e") {
			t.Error("a panicking activation must be dropped: its memory is suspect")
		}
		if got := e.MustInvoke("e", "echo", "get", nil); got != "good" {
			t.Fatalf("after a panic KV holds %q, want the last committed value", got)
		}
		// The server keeps serving other actors and the same one.
		if got := e.MustInvoke("other", "counter", "inc", nil); got != "0" {
			t.Fatalf("other actor after a panic: %s", got)
		}
		if got := e.MustInvoke("e", "echo", "echo", []byte("hi")); got != "hi" {
			t.Fatalf("echo after a panic: %q", got)
		}
	})
}

func TestKVCommitOverStoreLimitsWritesNothing(t *testing.T) {
	types := actors.Types()
	types["writer"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, payload []byte) ([]byte, error) {
			switch op {
			case "many":
				// One more write than a commit may hold.
				for i := range 129 {
					if err := ctx.Put([]byte(fmt.Sprintf("k%03d", i)), []byte("v")); err != nil {
						return nil, err
					}
				}
				return nil, nil
			case "big":
				if err := ctx.Put([]byte("a"), []byte("first")); err != nil {
					return nil, err
				}
				return nil, ctx.Put([]byte("huge"), make([]byte, 600<<10))
			case "bulk":
				// Under the per-value limit, over the commit's byte limit.
				for i := range 4 {
					if err := ctx.Put([]byte(fmt.Sprintf("b%d", i)), make([]byte, 500<<10)); err != nil {
						return nil, err
					}
				}
				return nil, nil
			case "bigkey":
				return nil, ctx.Put(make([]byte, 3<<10), nil)
			case "count":
				kvs, err := ctx.Scan(nil, nil, 0)
				return []byte(fmt.Sprint(len(kvs))), err
			}
			return nil, fmt.Errorf("unknown op")
		}), nil
	}
	runSim(t, 22, 1, types, nil, func(e *simtest.Env) {
		for _, op := range []string{"many", "big", "bulk", "bigkey"} {
			_, err := e.Invoke("w", "writer", op, nil)
			wantCode(t, err, nola.CodeTooLarge)
			if got := e.MustInvoke("w", "writer", "count", nil); got != "0" {
				t.Fatalf("after %s: %s keys written, want none", op, got)
			}
		}
		if st := e.C.Server(0).Stats(); st.FailedCommits != 0 {
			t.Fatalf("limits must be enforced before the store sees the commit; %d commits failed", st.FailedCommits)
		}
	})
}

func TestResultOverLimitIsTooLarge(t *testing.T) {
	configure := func(_ int, cfg *nola.ServerConfig) { cfg.Limits.MaxResultBytes = 10 }
	runSim(t, 23, 1, nil, configure, func(e *simtest.Env) {
		_, err := e.Invoke("e", "echo", "echo", []byte("more than ten bytes"))
		wantCode(t, err, nola.CodeTooLarge)
		if got := e.MustInvoke("e", "echo", "echo", []byte("short")); got != "short" {
			t.Fatalf("got %q", got)
		}
	})
}

// An actor that keeps its Context past the invocation cannot use it for
// effects any more, but may still read it as a context.Context.
func TestContextUsedAfterItsInvocation(t *testing.T) {
	types := actors.Types()
	var kept *nola.Context
	types["keeper"] = func(nola.Ref) (nola.Actor, error) {
		return nola.FuncActor(func(ctx *nola.Context, op string, _ []byte) ([]byte, error) {
			switch op {
			case "keep":
				kept = ctx
				return nil, nil
			case "misuse":
				_ = kept.Err() // still a valid context.Context
				if err := kept.Put([]byte("k"), []byte("v")); err == nil {
					return nil, fmt.Errorf("Put through an old Context succeeded")
				}
				if _, _, err := kept.Get([]byte("k")); err == nil {
					return nil, fmt.Errorf("Get through an old Context succeeded")
				}
				if _, err := kept.Invoke("x", "counter", "inc", nil); err == nil {
					return nil, fmt.Errorf("Invoke through an old Context succeeded")
				}
				if err := kept.SetTimer("t", time.Second, 0, "x", nil); err == nil {
					return nil, fmt.Errorf("SetTimer through an old Context succeeded")
				}
				return []byte("refused"), nil
			}
			return nil, fmt.Errorf("unknown op")
		}), nil
	}
	runSim(t, 24, 1, types, nil, func(e *simtest.Env) {
		e.MustInvoke("k", "keeper", "keep", nil)
		if got := e.MustInvoke("k", "keeper", "misuse", nil); got != "refused" {
			t.Fatalf("got %q", got)
		}
	})
}

func TestServerConfigRejectsNegativeValues(t *testing.T) {
	base := func() nola.ServerConfig {
		r := rt.NewReal()
		return nola.ServerConfig{ID: "s", Addr: "a", Runtime: r, Store: memkv.New(r, memkv.Options{}),
			Transport: nola.NewLocalNetwork(false).Transport(r)}
	}
	for name, mut := range map[string]func(*nola.ServerConfig){
		"lease":    func(c *nola.ServerConfig) { c.LeaseTTL = -time.Second },
		"idle":     func(c *nola.ServerConfig) { c.IdleTimeout = -1 },
		"limit":    func(c *nola.ServerConfig) { c.MaxActivations = -5 },
		"payload":  func(c *nola.ServerConfig) { c.Limits.MaxPayloadBytes = -1 },
		"rho":      func(c *nola.ServerConfig) { c.Rho = 0.7 },
		"margin":   func(c *nola.ServerConfig) { c.LeaseTTL, c.Margin = time.Second, 2*time.Second },
		"no store": func(c *nola.ServerConfig) { c.Store = nil },
	} {
		cfg := base()
		mut(&cfg)
		if _, err := nola.NewServer(cfg); err == nil {
			t.Errorf("%s: NewServer accepted %+v", name, cfg)
		}
	}
	if _, err := nola.NewServer(base()); err != nil {
		t.Fatalf("defaults rejected: %v", err)
	}
}
