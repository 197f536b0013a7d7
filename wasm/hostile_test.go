package wasm_test

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nolaproject/nola/nola"
	"github.com/nolaproject/nola/wasm"
	"github.com/nolaproject/nola/wasm/modules"
	"github.com/nolaproject/nola/wasm/wasmtest"
)

func wantTrap(t *testing.T, err error, kind wasm.TrapKind, msg string) {
	t.Helper()
	var te *wasm.TrapError
	if !errors.As(err, &te) || te.Kind != kind || !strings.Contains(te.Message, msg) {
		t.Fatalf("got %v, want a %s trap mentioning %q", err, kind, msg)
	}
	wantCode(t, err, nola.CodeActorError)
}

// Hostile guests hit a limit, get a typed error, lose their instance (its
// in-memory count restarts from 0) — and nobody else notices: a bystander
// on the same server keeps counting.
func TestHostileGuests(t *testing.T) {
	logs := &captureHandler{}
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.MaxMemoryPages = 64
		c.MaxResultBytes = 1 << 20
		c.MaxHostCalls = 1000
		c.MaxLogBytes = 1000
		c.MaxFuel = 1 << 26
		c.Logger = logs.logger()
	}})
	e.putGuests()
	e.put("hostile-small", wasmtest.C(t, "hostile"), modules.Options{MaxMemoryPages: 8})
	h := e.hosts[0]
	bystander := 0
	check := func(t *testing.T, id, op string, payload []byte, discarded bool, verify func(res string, err error)) {
		t.Helper()
		e := e.in(t)
		for i := range 3 {
			e.want(id, "hostile-c", "inc", nil, strconv.Itoa(i))
		}
		traps := h.Stats().Traps
		res, err := e.invoke(id, "hostile-c", op, payload)
		verify(res, err)
		want := "3"
		if discarded {
			want = "0"
			if got := h.Stats().Traps; got != traps+1 {
				t.Fatalf("traps %d -> %d, want one more", traps, got)
			}
		}
		e.want(id, "hostile-c", "inc", nil, want)
		// A guest that stalls the whole process (the collector waiting
		// for compiled code, say) lets the server's lease lapse: the
		// server fences itself and every actor on it restarts.
		if st := e.c.Server(0).Stats(); st.Fences != 0 {
			t.Fatalf("the server fenced itself during %s (%v): the guest stalled the process", op, st.KeepAlive.Fences)
		}
		e.want("bystander", "counter-c", "inc", nil, strconv.Itoa(bystander))
		bystander++
	}
	t.Run("infinite loop", func(t *testing.T) {
		check(t, "spin", "spin", nil, true, func(_ string, err error) { wantTrap(t, err, wasm.TrapFuel, "checkpoints") })
	})
	t.Run("stack overflow", func(t *testing.T) {
		// The host's own bound on call depth, long before wazero's
		// ceiling of some 50 MB of stack (wasm.Config.MaxCallDepth).
		check(t, "deep", "deep", nil, true, func(_ string, err error) {
			wantTrap(t, err, wasm.TrapRuntime, "stack overflow: calls nested deeper than the limit of 65536 frames")
		})
		// C's own stack lives in linear memory, below the data (the
		// guests link with --stack-first): overflowing it is an
		// out-of-bounds access.
		check(t, "recurse", "recurse", nil, true, func(_ string, err error) {
			wantTrap(t, err, wasm.TrapRuntime, "out of bounds memory access")
		})
	})
	t.Run("trap", func(t *testing.T) {
		check(t, "trap", "trap", nil, true, func(_ string, err error) { wantTrap(t, err, wasm.TrapRuntime, "unreachable") })
	})
	t.Run("out of bounds", func(t *testing.T) {
		check(t, "oob", "oob", nil, true, func(_ string, err error) {
			wantTrap(t, err, wasm.TrapRuntime, "out of bounds memory access")
		})
	})
	t.Run("memory bomb", func(t *testing.T) {
		// The guest grows its memory as far as it can and touches all of
		// it: it gets exactly the cap, and its instance lives on.
		check(t, "bomb", "bomb", nil, false, func(res string, err error) {
			if err != nil || res != "64" {
				t.Fatalf("bomb = %q, %v; want the cap, 64 pages", res, err)
			}
		})
		// A module's options lower the cap for its actors.
		if got := e.in(t).must("bomb-small", "hostile-small", "bomb", nil); got != "8" {
			t.Fatalf("bomb under an 8-page module cap = %s pages", got)
		}
		// An allocation beyond the cap fails inside the guest.
		_, err := e.invoke("bomb", "hostile-c", "big", []byte(strconv.Itoa(5<<20)))
		ne := wantCode(t, err, nola.CodeActorError)
		if !strings.Contains(ne.Message, "out of memory") {
			t.Fatalf("allocation past the cap: %v", err)
		}
	})
	t.Run("oversized result", func(t *testing.T) {
		check(t, "big", "big", []byte(strconv.Itoa(2<<20)), false, func(_ string, err error) {
			ne := wantCode(t, err, nola.CodeTooLarge)
			if !strings.Contains(ne.Message, "exceeds the limit of 1048576") {
				t.Fatalf("oversized result: %v", err)
			}
		})
		if got := e.in(t).must("big", "hostile-c", "big", []byte("1000")); got != strings.Repeat("x", 1000) {
			t.Fatalf("small result: %d bytes", len(got))
		}
	})
	t.Run("host call flood", func(t *testing.T) {
		check(t, "flood", "flood", nil, true, func(_ string, err error) {
			wantTrap(t, err, wasm.TrapHostCalls, "more than 1000 host calls")
		})
	})
	t.Run("log flood", func(t *testing.T) {
		before := logs.count("msg=flood") + logs.count("flood ns=")
		check(t, "logflood", "logflood", nil, true, func(_ string, err error) {
			wantTrap(t, err, wasm.TrapHostCalls, "more than 1000 host calls")
		})
		// 1000 bytes of log budget: 200 five-byte messages, then drops.
		if n := logs.count("flood ns=") - before; n != 200 {
			t.Fatalf("%d flood messages logged, want 200 (the budget)", n)
		}
		if !logs.has("wasm guest log output dropped") {
			t.Fatal("dropped log output not reported")
		}
	})
}

// A guest that runs past its deadline is interrupted, by the fuel
// checkpoints' clock checks or (with ContextInterrupt) by wazero.
func TestDeadlineInterruptsGuest(t *testing.T) {
	for _, interrupt := range []bool{false, true} {
		t.Run("ContextInterrupt="+strconv.FormatBool(interrupt), func(t *testing.T) {
			e := newEnv(t, envOpts{host: func(c *wasm.Config) {
				c.InvokeTimeout = 100 * time.Millisecond
				c.MaxFuel = 1 << 62
				c.ContextInterrupt = interrupt
			}})
			e.putGuests()
			e.want("s", "hostile-c", "inc", nil, "0")
			_, err := e.invoke("s", "hostile-c", "spin", nil)
			wantTrap(t, err, wasm.TrapDeadline, "")
			e.want("s", "hostile-c", "inc", nil, "0")
		})
	}
}

// The caller's deadline bounds a guest too.
func TestCallerDeadlineInterruptsGuest(t *testing.T) {
	// Neither the host's timeout nor fuel would stop it soon: if the
	// caller's deadline did not, the test would hang.
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.InvokeTimeout = time.Hour
		c.MaxFuel = 1 << 62
	}})
	e.putGuests()
	e.want("s", "hostile-c", "inc", nil, "0")
	ctx, cancel := context.WithTimeout(e.ctx, 200*time.Millisecond)
	defer cancel()
	_, err := e.c.Client().Invoke(ctx, ns, "s", "hostile-c", "spin", nil)
	if err == nil {
		t.Fatal("spin returned")
	}
	var te *wasm.TrapError
	if errors.As(err, &te) && te.Kind != wasm.TrapDeadline {
		t.Fatalf("spin: %v, want a deadline trap", err)
	}
	e.want("s", "hostile-c", "inc", nil, "0")
}

// While a guest spins, the other actors of its server keep serving; with
// ContextInterrupt, cancelling the spinning call interrupts the guest.
func TestSpinningGuestDoesNotBlockOthers(t *testing.T) {
	e := newEnv(t, envOpts{host: func(c *wasm.Config) {
		c.InvokeTimeout = time.Hour
		c.MaxFuel = 1 << 62
		c.ContextInterrupt = true
	}})
	e.putGuests()
	e.want("s", "hostile-c", "inc", nil, "0")
	ctx, cancel := context.WithCancel(e.ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := e.c.Client().Invoke(ctx, ns, "s", "hostile-c", "spin", nil)
		done <- err
	}()
	for e.hosts[0].Stats().Running == 0 { // until the guest spins
		select {
		case err := <-done:
			t.Fatalf("spin ended before it ran: %v", err)
		default:
			time.Sleep(time.Millisecond)
		}
	}
	for i := range 50 {
		e.want("other", "counter-c", "inc", nil, strconv.Itoa(i))
		e.want("other-go", "counter", "inc", nil, strconv.Itoa(i))
	}
	select {
	case err := <-done:
		t.Fatalf("the spinning call ended on its own: %v", err)
	default:
	}
	cancel()
	err := <-done
	if err == nil {
		t.Fatal("spin returned")
	}
	e.want("s", "hostile-c", "inc", nil, "0")
}

// section encodes one WASM section.
func section(id byte, body ...byte) []byte {
	return append([]byte{id, byte(len(body))}, body...)
}

// spinningStart is a minimal waPC module whose start function loops
// forever: the guest misbehaves before any invocation.
func spinningStart() []byte {
	b := []byte("\x00asm\x01\x00\x00\x00")
	b = append(b, section(1, 3, 0x60, 2, 0x7f, 0x7f, 0, 0x60, 2, 0x7f, 0x7f, 1, 0x7f, 0x60, 0, 0)...)
	imp := []byte{1, 4}
	imp = append(imp, "wapc"...)
	imp = append(imp, 15)
	imp = append(imp, "__guest_request"...)
	b = append(b, section(2, append(imp, 0, 0)...)...)
	b = append(b, section(3, 2, 1, 2)...)
	b = append(b, section(5, 1, 0, 1)...)
	exp := []byte{2, 6}
	exp = append(exp, "memory"...)
	exp = append(exp, 2, 0, 12)
	exp = append(exp, "__guest_call"...)
	b = append(b, section(7, append(exp, 0, 1)...)...)
	b = append(b, section(8, 2)...)
	return append(b, section(10, 2, 4, 0, 0x41, 1, 0x0b, 7, 0, 0x03, 0x40, 0x0c, 0, 0x0b, 0x0b)...)
}

// A guest that spins in its start function is stopped there; the
// activation fails with the trap and the server goes on.
func TestSpinningStartFunction(t *testing.T) {
	e := newEnv(t, envOpts{host: func(c *wasm.Config) { c.MaxFuel = 1 << 24 }})
	e.putGuests()
	e.put("spinstart", spinningStart(), modules.Options{})
	_, err := e.invoke("x", "spinstart", "go", nil)
	wantTrap(t, err, wasm.TrapFuel, "checkpoints")
	var te *wasm.TrapError
	if errors.As(err, &te); te.Op != "instantiate" {
		t.Fatalf("trap during %q, want instantiate", te.Op)
	}
	e.want("b", "counter-c", "inc", nil, "0")
	if s := e.hosts[0].Stats(); s.Instances != 1 {
		t.Fatalf("%d live instances, want only the bystander's", s.Instances)
	}
}
